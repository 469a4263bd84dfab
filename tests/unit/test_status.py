"""labop.status: the LabServer's status and conditions from its children and problems."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from tests.unit.factories import (
    NOW,
    NOW_TEXT,
    a_deployment,
    a_deployment_condition,
    a_labserver,
    a_service,
    controlled_by_a_stranger,
)

from labop import api, reasons
from labop.status import Problem, compute_status, format_time, merge_conditions

LATER = NOW + timedelta(minutes=5)
LATER_TEXT = "2030-01-02T03:09:05Z"


def status_for(
    ls: dict[str, Any] | None = None,
    *,
    deployment: dict[str, Any] | str | None = "built",
    service: dict[str, Any] | str | None = "built",
    problem: Problem | None = None,
    now: datetime = NOW,
    **deployment_status: Any,
) -> dict[str, Any]:
    """compute_status with the children built for `ls` unless given (None: absent)."""
    ls = ls if ls is not None else a_labserver()
    if deployment == "built":
        deployment = a_deployment(ls, **deployment_status)
    if service == "built":
        service = a_service(ls)
    assert not isinstance(deployment, str) and not isinstance(service, str)
    return compute_status(ls, deployment=deployment, service=service, problem=problem, now=now)


def summary(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def condition(status: dict[str, Any], kind: str) -> Any:
    (found,) = [c for c in status["conditions"] if c["type"] == kind]
    return found


def test_a_fully_rolled_out_labserver_is_ready_not_progressing_not_degraded() -> None:
    ls = a_labserver(replicas=3)
    status = status_for(ls)
    assert summary(status) == {
        "Ready": ("True", "Available"),
        "Progressing": ("False", "RolloutComplete"),
        "Degraded": ("False", "AsExpected"),
    }
    assert condition(status, "Ready")["message"] == "3 of 3 replicas available."


def test_the_status_reports_counts_selector_generation_and_endpoints() -> None:
    ls = a_labserver("web", namespace="team-a", generation=7, replicas=2)
    status = status_for(ls, generation=3, observed_generation=3, ready=1, available=1)
    assert {key: value for key, value in status.items() if key != "conditions"} == {
        "observedGeneration": 7,
        "replicas": 2,
        "readyReplicas": 1,
        "selector": "app.kubernetes.io/instance=web,app.kubernetes.io/name=labserver",
        "endpoints": {
            "host": "web.team-a.svc",
            "ports": [{"name": "api", "port": 8080}, {"name": "metrics", "port": 9090}],
        },
    }


def test_every_condition_carries_the_labservers_generation_and_the_time() -> None:
    status = status_for(a_labserver(generation=5))
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Progressing", "Degraded"]
    for c in status["conditions"]:
        assert (c["observedGeneration"], c["lastTransitionTime"]) == (5, NOW_TEXT)
        assert c["reason"] and c["message"]


def test_scaled_to_zero_is_ready_once_no_pod_is_left() -> None:
    ls = a_labserver(replicas=0)
    assert summary(status_for(ls))["Ready"] == ("True", "ScaledToZero")
    assert summary(status_for(ls, replicas=2, updated=0, ready=2, available=2))["Ready"] == (
        "False",
        "RollingOut",
    )


def test_a_deployment_generation_not_yet_observed_is_rolling_out() -> None:
    status = status_for(generation=2, observed_generation=1)
    assert summary(status)["Ready"] == ("False", "RollingOut")
    assert summary(status)["Progressing"] == ("True", "RollingOut")
    assert "observe generation 2" in condition(status, "Ready")["message"]


def test_a_deployment_without_any_observed_generation_is_rolling_out() -> None:
    assert summary(status_for(observed_generation=None))["Ready"] == ("False", "RollingOut")


def test_pods_not_yet_updated_are_rolling_out() -> None:
    status = status_for(a_labserver(replicas=3), updated=1, replicas=4)
    assert summary(status)["Ready"] == ("False", "RollingOut")
    assert condition(status, "Ready")["message"] == "1 of 3 replicas updated."


def test_old_pods_still_running_after_the_update_are_rolling_out() -> None:
    status = status_for(a_labserver(replicas=3), replicas=4, updated=3, ready=4, available=4)
    assert summary(status)["Ready"] == ("False", "RollingOut")
    assert summary(status)["Progressing"] == ("True", "RollingOut")


def test_a_scale_down_is_not_done_while_surplus_pods_run() -> None:
    ls = a_labserver(replicas=2)
    assert summary(status_for(ls, replicas=5, updated=5, ready=5, available=5))["Ready"] == (
        "False",
        "RollingOut",
    )


def test_a_deployment_still_asking_for_the_old_replica_count_is_rolling_out() -> None:
    ls = a_labserver(replicas=3)
    deployment = a_deployment(ls, replicas=2, updated=2, ready=2, available=2)
    deployment["spec"]["replicas"] = 2
    status = status_for(ls, deployment=deployment)
    assert summary(status)["Ready"] == ("False", "RollingOut")


def test_updated_but_unready_pods_are_replicas_unavailable_while_progressing() -> None:
    status = status_for(a_labserver(replicas=3), ready=2, available=2)
    assert summary(status) == {
        "Ready": ("False", "ReplicasUnavailable"),
        "Progressing": ("True", "RollingOut"),
        "Degraded": ("False", "AsExpected"),
    }
    assert condition(status, "Ready")["message"] == "2 of 3 replicas ready, 2 available."


def test_ready_but_not_yet_available_pods_are_not_ready() -> None:
    assert summary(status_for(a_labserver(replicas=2), available=1))["Ready"] == (
        "False",
        "ReplicasUnavailable",
    )


@pytest.mark.parametrize(("deployment", "service"), [(None, "built"), ("built", None), (None, None)])
def test_missing_children_mean_reconciling(deployment: Any, service: Any) -> None:
    status = status_for(deployment=deployment, service=service)
    assert summary(status) == {
        "Ready": ("False", "Reconciling"),
        "Progressing": ("True", "Reconciling"),
        "Degraded": ("False", "AsExpected"),
    }


def test_without_children_the_counts_are_zero_and_there_are_no_endpoints() -> None:
    status = status_for(deployment=None, service=None)
    assert (status["replicas"], status["readyReplicas"], status["endpoints"]) == (0, 0, None)


def test_an_invalid_spec_is_degraded_not_ready_and_not_progressing() -> None:
    problem = Problem(reasons.INVALID_SPEC, "invalid spec: spec.replicas: must be between 0 and 100, got 500")
    status = status_for(problem=problem)
    assert summary(status) == {
        "Ready": ("False", "InvalidSpec"),
        "Progressing": ("False", "InvalidSpec"),
        "Degraded": ("True", "InvalidSpec"),
    }
    assert condition(status, "Degraded")["message"] == problem.message


def test_a_retryable_problem_keeps_progressing_true_while_degraded() -> None:
    problem = Problem(reasons.RECONCILE_ERROR, "apply Deployment: 503 Service Unavailable", retryable=True)
    status = status_for(problem=problem)
    assert summary(status) == {
        "Ready": ("False", "ReconcileError"),
        "Progressing": ("True", "Retrying"),
        "Degraded": ("True", "ReconcileError"),
    }
    assert "503 Service Unavailable" in condition(status, "Progressing")["message"]


def test_a_stalled_rollout_is_degraded_and_no_longer_progressing() -> None:
    stalled = a_deployment_condition(
        "Progressing",
        "False",
        "ProgressDeadlineExceeded",
        'ReplicaSet "hello-5d9" has timed out progressing.',
    )
    status = status_for(a_labserver(replicas=2), ready=1, available=1, conditions=[stalled])
    assert summary(status) == {
        "Ready": ("False", "ReplicasUnavailable"),
        "Progressing": ("False", "ProgressDeadlineExceeded"),
        "Degraded": ("True", "ProgressDeadlineExceeded"),
    }
    assert condition(status, "Degraded")["message"] == stalled["message"]


def test_pods_the_deployment_cannot_create_make_it_degraded_with_the_cause() -> None:
    refused = a_deployment_condition(
        "ReplicaFailure", "True", "FailedCreate", 'pods "hello-5d9-x" is forbidden: violates PodSecurity'
    )
    status = status_for(
        a_labserver(replicas=2), replicas=0, updated=0, ready=0, available=0, conditions=[refused]
    )
    assert summary(status)["Degraded"] == ("True", "ReplicaFailure")
    assert "violates PodSecurity" in condition(status, "Degraded")["message"]
    assert summary(status)["Ready"] == ("False", "RollingOut")


@pytest.mark.parametrize("child", ["deployment", "service"])
def test_a_same_named_child_controlled_by_another_object_is_a_child_conflict(child: str) -> None:
    ls = a_labserver(replicas=2)
    foreign = controlled_by_a_stranger({"deployment": a_deployment, "service": a_service}[child](ls))
    status = status_for(ls, **{child: foreign})  # type: ignore[arg-type]
    assert summary(status) == {
        "Ready": ("False", "ChildConflict"),
        "Progressing": ("False", "ChildConflict"),
        "Degraded": ("True", "ChildConflict"),
    }
    kind = {"deployment": "Deployment", "service": "Service"}[child]
    assert (
        f"{kind} hello exists and is not controlled by this LabServer"
        in condition(status, "Ready")["message"]
    )


@pytest.mark.parametrize("child", ["deployment", "service"])
def test_a_child_left_by_an_earlier_labserver_of_the_same_name_is_waited_for_not_a_conflict(
    child: str,
) -> None:
    ls = a_labserver(replicas=2)
    earlier = {"deployment": a_deployment, "service": a_service}[child](ls, owner_uid="earlier-uid")
    status = status_for(ls, **{child: earlier})  # type: ignore[arg-type]
    assert summary(status) == {
        "Ready": ("False", "WaitingForCleanup"),
        "Progressing": ("True", "WaitingForCleanup"),
        "Degraded": ("False", "AsExpected"),
    }
    assert "garbage collector" in condition(status, "Ready")["message"]


def test_an_earlier_labservers_child_beside_a_strangers_is_still_a_conflict() -> None:
    ls = a_labserver()
    status = status_for(
        ls,
        deployment=a_deployment(ls, owner_uid="earlier-uid"),
        service=controlled_by_a_stranger(a_service(ls)),
    )
    assert summary(status)["Degraded"] == ("True", "ChildConflict")
    assert "Service hello exists" in condition(status, "Ready")["message"]


def test_a_foreign_deployments_numbers_are_not_reported_as_ours() -> None:
    ls = a_labserver(replicas=2)
    status = status_for(ls, deployment=a_deployment(ls, owner_uid="someone-else"))
    assert (status["replicas"], status["readyReplicas"]) == (0, 0)


def test_the_callers_problem_wins_over_a_detected_conflict() -> None:
    ls = a_labserver()
    problem = Problem(reasons.INVALID_SPEC, "bad")
    status = status_for(ls, deployment=a_deployment(ls, owner_uid="x"), problem=problem)
    assert summary(status)["Degraded"] == ("True", "InvalidSpec")


def test_an_unchanged_condition_keeps_its_last_transition_time() -> None:
    ls = a_labserver()
    first = status_for(ls, now=NOW)
    ls["status"] = first
    second = status_for(ls, now=LATER)
    assert [c["lastTransitionTime"] for c in second["conditions"]] == [NOW_TEXT] * 3


def test_a_changed_condition_gets_the_new_time_and_the_others_keep_theirs() -> None:
    ls = a_labserver(replicas=2)
    ls["status"] = status_for(ls, now=NOW)
    ls["metadata"]["generation"] = 2
    ls["spec"]["replicas"] = 3
    later = status_for(ls, now=LATER, generation=2, observed_generation=2, replicas=3, updated=3, ready=2)
    assert summary(later)["Ready"] == ("False", "ReplicasUnavailable")
    assert {c["type"]: c["lastTransitionTime"] for c in later["conditions"]} == {
        "Ready": LATER_TEXT,
        "Progressing": LATER_TEXT,
        "Degraded": NOW_TEXT,
    }
    assert {c["observedGeneration"] for c in later["conditions"]} == {2}


def test_a_reason_change_without_a_status_change_is_not_a_transition() -> None:
    ls = a_labserver(replicas=2)
    ls["status"] = status_for(ls, now=NOW, ready=1, available=1)  # Ready False, ReplicasUnavailable
    later = status_for(ls, now=LATER, generation=2, observed_generation=1)  # Ready False, RollingOut
    assert condition(later, "Ready")["reason"] == "RollingOut"
    assert condition(later, "Ready")["lastTransitionTime"] == NOW_TEXT


def test_merge_conditions_keeps_conditions_of_other_types_after_ours() -> None:
    foreign = {"type": "example.com/Audited", "status": "True", "reason": "Checked", "message": "ok"}
    old = [foreign, {"type": "Ready", "status": "False", "lastTransitionTime": NOW_TEXT}]
    new = [{"type": "Ready", "status": "True", "reason": "Available", "message": "m"}]
    merged = merge_conditions(old, new, LATER)
    assert merged == [{**new[0], "lastTransitionTime": LATER_TEXT}, foreign]


def test_merge_conditions_fills_a_missing_old_time_with_now() -> None:
    old = [{"type": "Ready", "status": "True"}]
    new = [{"type": "Ready", "status": "True", "lastTransitionTime": LATER_TEXT}]
    assert merge_conditions(old, new, NOW)[0]["lastTransitionTime"] == LATER_TEXT
    assert (
        merge_conditions(old, [{"type": "Ready", "status": "True"}], NOW)[0]["lastTransitionTime"] == NOW_TEXT
    )


def test_merge_conditions_does_not_change_its_inputs() -> None:
    old = [{"type": "Ready", "status": "True", "lastTransitionTime": NOW_TEXT}]
    new = [{"type": "Ready", "status": "True", "lastTransitionTime": LATER_TEXT}]
    merge_conditions(old, new, LATER)
    assert new[0]["lastTransitionTime"] == LATER_TEXT
    assert old[0]["lastTransitionTime"] == NOW_TEXT


def test_times_are_rfc3339_utc_seconds() -> None:
    assert format_time(datetime(2030, 1, 2, 4, 4, 5, 999, tzinfo=timezone(timedelta(hours=1)))) == NOW_TEXT
    assert format_time(datetime(2030, 1, 2, 3, 4, 5)) == NOW_TEXT


def test_a_problem_needs_a_camel_case_reason_the_crd_accepts() -> None:
    with pytest.raises(ValueError, match="CamelCase"):
        Problem("invalid spec", "x")


def test_an_empty_problem_message_falls_back_to_the_reason() -> None:
    status = status_for(problem=Problem(reasons.RECONCILE_ERROR, ""))
    assert condition(status, "Ready")["message"] == "ReconcileError"


def test_a_huge_problem_message_is_cut_to_the_crds_limit() -> None:
    status = status_for(problem=Problem(reasons.RECONCILE_ERROR, "x" * 40000))
    assert len(condition(status, "Ready")["message"]) == 32768


SCENARIOS = {
    "ready": {},
    "scaled to zero": {"ls": a_labserver(replicas=0)},
    "rolling out": {"generation": 2, "observed_generation": 1},
    "unavailable": {"ls": a_labserver(replicas=3), "ready": 1, "available": 1},
    "no children": {"deployment": None, "service": None},
    "invalid spec": {"problem": Problem(reasons.INVALID_SPEC, "bad")},
    "retrying": {"problem": Problem(reasons.RECONCILE_ERROR, "timeout", retryable=True)},
    "conflict": {"deployment": a_deployment(a_labserver(), owner_uid="x")},
}


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_every_status_written_is_valid_against_the_crd_status_schema(scenario: dict[str, Any]) -> None:
    status = status_for(**scenario)
    # The model the CRD's status schema is generated from, strict and from JSON as the apiserver reads it.
    api.LabServerStatus.model_validate_json(json.dumps(status_without_nulls(status)), strict=True)
    assert set(status) == {
        "observedGeneration",
        "replicas",
        "readyReplicas",
        "selector",
        "endpoints",
        "conditions",
    }


def status_without_nulls(status: dict[str, Any]) -> dict[str, Any]:
    # A null (endpoints without a Service) is removed by a merge patch / pruned by the apiserver.
    return {key: value for key, value in status.items() if value is not None}

"""Pure computation of a LabServer's `.status` from the object, its children and any problem.

Pure so that every condition can be tested without an API: the inputs are the applied
Deployment and Service and a `Problem` when something went wrong (InvalidSpec, ChildConflict,
a failed API call). Reasons and the table of when each condition is set live in
`labop.reasons`.

The result always has every key; `endpoints` is None while there is no Service of ours. The
reconciler applies it server-side leaving the Nones out, so a field that became None is
removed (we own it and no longer send it).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from labop import naming, reasons
from labop.spec import DEFAULT_REPLICAS

TRUE: Final = "True"
FALSE: Final = "False"

# metav1.Condition's limits, enforced by the CRD as well.
REASON_PATTERN: Final = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
MAX_MESSAGE_LENGTH: Final = 32768


@dataclasses.dataclass(frozen=True)
class Problem:
    """Why the controller could not (fully) reconcile the current generation.

    `reason` is a CamelCase condition reason (see `labop.reasons`: InvalidSpec, ChildConflict,
    ReconcileError, WaitingForCleanup); `retryable` says whether the controller will try again
    by itself, which keeps Progressing True (reason Retrying) instead of False; `waiting` marks
    a wait that needs no one (Progressing True with the reason, Degraded stays False).
    """

    reason: str
    message: str
    retryable: bool = False
    waiting: bool = False

    def __post_init__(self) -> None:
        # A bad reason would make the apiserver refuse the whole status write.
        if not REASON_PATTERN.match(self.reason):
            raise ValueError(f"condition reason must be CamelCase, got {self.reason!r}")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One condition's status, reason and message, before it is stamped with times."""

    status: str
    reason: str
    message: str


def compute_status(
    ls: Mapping[str, Any],
    *,
    deployment: Mapping[str, Any] | None,
    service: Mapping[str, Any] | None,
    problem: Problem | None,
    now: datetime,
) -> dict[str, Any]:
    """The complete `.status` of the LabServer `ls`.

    `deployment` and `service` are the children as read from the API (None if absent).
    A child not controlled by `ls` (judged by `ls`'s uid, so pass the object as read from the
    API) is never reported as ours: its numbers are ignored and, unless the caller already
    passed a problem, it is a ChildConflict.
    """
    deployment, service, problem = _disown_foreign_children(ls, deployment, service, problem)
    generation = _generation(ls)
    verdicts = {
        reasons.READY: ready_verdict(ls, deployment, service, problem),
        reasons.PROGRESSING: progressing_verdict(ls, deployment, service, problem),
        reasons.DEGRADED: degraded_verdict(deployment, problem),
    }
    conditions = [
        _condition(kind, verdict, generation=generation, now=now) for kind, verdict in verdicts.items()
    ]
    deployment_status = _status_of(deployment)
    return {
        "observedGeneration": generation,
        "replicas": _count(deployment_status, "replicas"),
        "readyReplicas": _count(deployment_status, "readyReplicas"),
        "selector": naming.selector_string(naming.child_name(ls)),
        "endpoints": endpoints(service),
        "conditions": merge_conditions(_old_conditions(ls), conditions, now),
    }


def merge_conditions(
    old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """The new conditions, keeping each old `lastTransitionTime` whose status did not change.

    A changed (or new) condition gets the new condition's time, or `now` if it has none. Old
    conditions of types not in `new` are kept after the new ones, as meta.SetStatusCondition
    does, so that conditions written by someone else survive.
    """
    old_by_type = {condition.get("type"): condition for condition in old}
    merged: list[dict[str, Any]] = []
    for condition in new:
        result = dict(condition)
        previous = old_by_type.get(condition["type"])
        if (
            previous is not None
            and previous.get("status") == condition["status"]
            and previous.get("lastTransitionTime")
        ):
            result["lastTransitionTime"] = previous["lastTransitionTime"]
        elif not result.get("lastTransitionTime"):
            result["lastTransitionTime"] = format_time(now)
        merged.append(result)
    new_types = {condition["type"] for condition in new}
    merged.extend(dict(condition) for condition in old if condition.get("type") not in new_types)
    return merged


def ready_verdict(
    ls: Mapping[str, Any],
    deployment: Mapping[str, Any] | None,
    service: Mapping[str, Any] | None,
    problem: Problem | None,
) -> Verdict:
    """Ready: the current generation runs with every replica ready (or none, if scaled to zero).

    Any problem makes it False: the current generation was not (fully) applied.
    """
    if problem is not None:
        return Verdict(FALSE, problem.reason, problem.message)
    if missing := _missing_child(deployment, service):
        return Verdict(FALSE, reasons.RECONCILING, missing)
    assert deployment is not None  # _missing_child checked it
    rollout = assess_rollout(deployment, desired_replicas(ls))
    return Verdict(TRUE if rollout.status == TRUE else FALSE, rollout.reason, rollout.message)


def progressing_verdict(
    ls: Mapping[str, Any],
    deployment: Mapping[str, Any] | None,
    service: Mapping[str, Any] | None,
    problem: Problem | None,
) -> Verdict:
    """Progressing: something is moving towards the spec (a rollout, a scale, a retry)."""
    if problem is not None:
        if problem.waiting:
            return Verdict(TRUE, problem.reason, problem.message)
        if problem.retryable:
            return Verdict(TRUE, reasons.RETRYING, f"Retrying after an error: {problem.message}")
        return Verdict(FALSE, problem.reason, problem.message)
    if missing := _missing_child(deployment, service):
        return Verdict(TRUE, reasons.RECONCILING, missing)
    assert deployment is not None  # _missing_child checked it
    rollout = assess_rollout(deployment, desired_replicas(ls))
    if rollout.status == TRUE:
        return Verdict(FALSE, reasons.ROLLOUT_COMPLETE, "The Deployment is up to date.")
    if stalled := _deployment_condition(deployment, "Progressing", FALSE):
        return Verdict(FALSE, reasons.PROGRESS_DEADLINE_EXCEEDED, _message_of(stalled))
    return Verdict(TRUE, reasons.ROLLING_OUT, rollout.message)


def degraded_verdict(deployment: Mapping[str, Any] | None, problem: Problem | None) -> Verdict:
    """Degraded: something is wrong that will not fix itself soon, or needs a human."""
    if problem is not None and not problem.waiting:
        return Verdict(TRUE, problem.reason, problem.message)
    if deployment is not None:
        # ReplicaFailure first: it names the cause (e.g. Pod Security refusing the pods) of the
        # stalled progress that follows it.
        if failure := _deployment_condition(deployment, "ReplicaFailure", TRUE):
            return Verdict(TRUE, reasons.REPLICA_FAILURE, _message_of(failure))
        if stalled := _deployment_condition(deployment, "Progressing", FALSE):
            return Verdict(TRUE, reasons.PROGRESS_DEADLINE_EXCEEDED, _message_of(stalled))
    return Verdict(FALSE, reasons.AS_EXPECTED, "No problems.")


def assess_rollout(deployment: Mapping[str, Any], desired: int) -> Verdict:
    """Whether the Deployment runs exactly `desired` current, ready and available replicas.

    The checks of `kubectl rollout status` plus readiness, and exact counts (a scale-down is
    not done while surplus pods still run). True with Available, or ScaledToZero for 0 replicas
    (the LabServer is then exactly as asked, so `kubectl wait --for=condition=Ready` returns);
    otherwise False with RollingOut or ReplicasUnavailable.
    """
    generation = (deployment.get("metadata") or {}).get("generation")
    status = _status_of(deployment)
    observed = status.get("observedGeneration")
    if generation is None or observed is None or observed < generation:
        return Verdict(
            FALSE,
            reasons.ROLLING_OUT,
            f"Waiting for the Deployment controller to observe generation {generation}.",
        )
    spec_replicas = (deployment.get("spec") or {}).get("replicas", DEFAULT_REPLICAS)
    if spec_replicas != desired:
        return Verdict(
            FALSE, reasons.ROLLING_OUT, f"The Deployment asks for {spec_replicas} replicas, not {desired}."
        )
    updated, replicas = _count(status, "updatedReplicas"), _count(status, "replicas")
    ready, available = _count(status, "readyReplicas"), _count(status, "availableReplicas")
    if updated < desired:
        return Verdict(FALSE, reasons.ROLLING_OUT, f"{updated} of {desired} replicas updated.")
    if replicas != desired:
        return Verdict(
            FALSE, reasons.ROLLING_OUT, f"{replicas} replicas exist, {desired} wanted: old ones are leaving."
        )
    if ready != desired or available != desired:
        return Verdict(
            FALSE,
            reasons.REPLICAS_UNAVAILABLE,
            f"{ready} of {desired} replicas ready, {available} available.",
        )
    if desired == 0:
        return Verdict(TRUE, reasons.SCALED_TO_ZERO, "Scaled to zero replicas.")
    return Verdict(TRUE, reasons.AVAILABLE, f"{available} of {desired} replicas available.")


def endpoints(service: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Where the LabServer is reachable in the cluster: the Service's DNS name and its ports.

    The host is `NAME.NAMESPACE.svc`, which pods resolve through their DNS search path whatever
    the cluster domain is (it is not always cluster.local).
    """
    if service is None:
        return None
    metadata = service.get("metadata") or {}
    ports = (service.get("spec") or {}).get("ports") or []
    return {
        "host": f"{metadata.get('name')}.{metadata.get('namespace')}.svc",
        "ports": [{"name": port.get("name"), "port": port.get("port")} for port in ports],
    }


def desired_replicas(ls: Mapping[str, Any]) -> int:
    """spec.replicas, defaulted as the CRD does."""
    replicas = (ls.get("spec") or {}).get("replicas")
    if isinstance(replicas, bool) or not isinstance(replicas, int):
        return DEFAULT_REPLICAS
    return replicas


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with seconds, as metav1.Time serialises (naive times are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _disown_foreign_children(
    ls: Mapping[str, Any],
    deployment: Mapping[str, Any] | None,
    service: Mapping[str, Any] | None,
    problem: Problem | None,
) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None, Problem | None]:
    children = (("Deployment", deployment), ("Service", service))
    foreign = [
        (kind, child)
        for kind, child in children
        if child is not None and not naming.is_controlled_by(child, ls)
    ]
    if foreign and problem is None:
        problem = foreign_children_problem(ls, foreign)
    if deployment is not None and not naming.is_controlled_by(deployment, ls):
        deployment = None
    if service is not None and not naming.is_controlled_by(service, ls):
        service = None
    return deployment, service, problem


def foreign_children_problem(
    ls: Mapping[str, Any], foreign: Sequence[tuple[str, Mapping[str, Any]]]
) -> Problem:
    """What same-named children that ``ls`` does not control mean for it.

    All of them left by an earlier LabServer of the same name: a wait for the garbage collector.
    Any other: a ChildConflict that only a human can resolve.
    """
    name = naming.child_name(ls)
    if all(naming.is_previous_incarnation(child, ls) for _, child in foreign):
        kinds = " and ".join(kind for kind, _ in foreign)
        return Problem(
            reasons.WAITING_FOR_CLEANUP,
            f"Waiting for the garbage collector to remove the {kinds} {name!r} of a deleted "
            "LabServer of the same name.",
            waiting=True,
        )
    strangers = ", ".join(
        f"{kind} {name}" for kind, child in foreign if not naming.is_previous_incarnation(child, ls)
    )
    return Problem(
        reasons.CHILD_CONFLICT,
        f"{strangers} exists and is not controlled by this LabServer; delete or rename it",
    )


def _missing_child(deployment: Mapping[str, Any] | None, service: Mapping[str, Any] | None) -> str | None:
    if deployment is None:
        return "The Deployment does not exist yet."
    if service is None:
        return "The Service does not exist yet."
    return None


def _condition(kind: str, verdict: Verdict, *, generation: int, now: datetime) -> dict[str, Any]:
    return {
        "type": kind,
        "status": verdict.status,
        "observedGeneration": generation,
        "lastTransitionTime": format_time(now),
        "reason": verdict.reason,
        # The CRD (like metav1.Condition) requires a message and caps its length.
        "message": (verdict.message or verdict.reason)[:MAX_MESSAGE_LENGTH],
    }


def _deployment_condition(deployment: Mapping[str, Any], kind: str, status: str) -> Mapping[str, Any] | None:
    conditions: Sequence[Mapping[str, Any]] = _status_of(deployment).get("conditions") or []
    for condition in conditions:
        if condition.get("type") == kind and condition.get("status") == status:
            return condition
    return None


def _message_of(condition: Mapping[str, Any]) -> str:
    return str(condition.get("message") or condition.get("reason") or condition.get("type"))


def _status_of(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("status") or {}


def _count(status: Mapping[str, Any], key: str) -> int:
    # The Deployment omits zero counts (omitempty).
    value = status.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _generation(ls: Mapping[str, Any]) -> int:
    generation = (ls.get("metadata") or {}).get("generation")
    return generation if isinstance(generation, int) and not isinstance(generation, bool) else 0


def _old_conditions(ls: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    conditions = ((ls.get("status") or {}).get("conditions")) or []
    return [condition for condition in conditions if isinstance(condition, Mapping)]

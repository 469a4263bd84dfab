"""Who owns a name: the same names deleted and re-created, a stranger holding a name, and
namespaces full of LabServers deleted at once.

Why: ownership is by uid, not by name. A previous incarnation's children still waiting for the
garbage collector are not a conflict (issue #10, point 4: Progressing/WaitingForCleanup, no
Warning); a real stranger is (Degraded/ChildConflict) and is left alone until it goes; and a
namespace being deleted is routine, not an error (point 3).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from kubernetes.client import ApiClient, CoreV1Api
from tests.chaos.conftest import ChaosSettings
from tests.chaos.lab import Lab, Operator, measure
from tests.chaos.oracles import (
    assert_no_labserver_events,
    assert_steady_state,
    measure_convergence,
    wait_converged,
)
from tests.support.cluster import or_none
from tests.support.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.chaos]


def controlled_by_current_incarnation(lab: Lab, names: list[str]) -> bool:
    uids = {ls["metadata"]["name"]: ls["metadata"]["uid"] for ls in lab.labservers()}
    deployments = {d["metadata"]["name"]: d for d in lab.deployments()}
    return all(
        name in deployments
        and any(
            ref.get("uid") == uids.get(name)
            for ref in deployments[name]["metadata"].get("ownerReferences", [])
        )
        for name in names
    )


def test_deleting_and_recreating_the_same_names_converges_without_a_conflict(
    lab: Lab, operator: Operator, chaos: ChaosSettings
) -> None:
    names = [f"churn-{i}" for i in range(4)]
    rounds = chaos.count(6)
    lab.create_many(names)
    for round_ in range(rounds):
        # Each round replaces LabServers whose children exist: the old children are still there
        # for the new incarnation to find, until the garbage collector removes them.
        eventually(
            lambda: controlled_by_current_incarnation(lab, names),
            timeout=120,
            what="a Deployment for every current incarnation",
        )
        for name in names:
            lab.delete(name)
            lab.create(name, {"message": f"incarnation {round_ + 2}"})
    last = time.monotonic()
    measure_convergence(
        lab,
        f"same-name churn ({rounds} rounds x {len(names)} names): last re-create to all Ready",
        since=last,
    )
    assert_no_labserver_events(lab, "ChildConflict")
    assert_steady_state(lab, operator)


def stranger_deployment(name: str) -> dict[str, Any]:
    labels = {"app": "stranger"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "example.com/stranger:1"}]},
            },
        },
    }


def degraded_reason(lab: Lab, name: str) -> str | None:
    ls = lab.get(name) or {}
    for cond in (ls.get("status") or {}).get("conditions") or []:
        if cond["type"] == "Degraded" and cond["status"] == "True":
            return str(cond.get("reason"))
    return None


def test_a_stranger_deployment_is_reported_left_alone_and_forgotten_once_gone(
    lab: Lab, operator: Operator
) -> None:
    lab.create_many(["bystander-a", "bystander-b"])
    lab.apps.create_namespaced_deployment(lab.ns, stranger_deployment("contested"))  # type: ignore[arg-type]  # the client sends a dict body as is; its hints name only the model class
    with operator.book.fault("a stranger Deployment holds the LabServer's name"):
        lab.create("contested")
        eventually(
            lambda: degraded_reason(lab, "contested") == "ChildConflict",
            timeout=120,
            what="contested Degraded/ChildConflict",
        )
        stranger = lab.apps.read_namespaced_deployment("contested", lab.ns)
        meta, spec = stranger.metadata, stranger.spec
        assert meta is not None and spec is not None and spec.template.spec is not None
        assert not meta.owner_references, "the operator adopted the stranger"
        assert spec.template.spec.containers[0].image == "example.com/stranger:1"
        assert meta.generation == 1, "the operator changed the stranger"
        # Events go out from a background sender, about a second after the status says it.
        eventually(
            lambda: lab.labserver_events("ChildConflict"),
            timeout=30,
            what="a ChildConflict Warning Event telling the user",
        )
        lab.delete_deployment("contested")
        measure_convergence(
            lab,
            "stranger Deployment deleted: to its LabServer Ready",
        )
    assert_steady_state(lab, operator)


def test_deleting_namespaces_with_many_labservers_is_routine(
    lab: Lab,
    operator: Operator,
    api: ApiClient,
    other_namespace: str,
    more_namespaces: Callable[[], str],
    chaos: ChaosSettings,
) -> None:
    # Four namespaces deleted at once: the namespace controller deletes the kinds in a random
    # order, and each namespace is another draw of it (children before their LabServers or not).
    doomed = [lab, *(Lab(api, more_namespaces()) for _ in range(3))]
    per_namespace = chaos.count(10)
    for each in doomed:
        each.create_many([f"doomed-{i:02d}" for i in range(per_namespace)])
    bystanders = Lab(api, other_namespace)
    bystanders.create_many(["stays-a", "stays-b", "stays-c"])
    for each in doomed:
        wait_converged(each)
    core = CoreV1Api(api)
    for each in doomed:  # no fault window: deleting a namespace is an everyday operation
        core.delete_namespace(each.ns)
    measure(
        f"{len(doomed)} namespaces with {per_namespace} Ready LabServers each deleted at once: to all gone",
        lambda: all(or_none(partial(core.read_namespace, each.ns)) is None for each in doomed),
        timeout=300,
    )
    assert_steady_state(bystanders, operator)

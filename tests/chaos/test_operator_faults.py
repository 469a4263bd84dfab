"""The operator itself fails: SIGKILLed in the middle of a burst, or down while the world changes.

Why: the operator keeps no state of its own; everything it needs is in the cluster. These
scenarios prove it: whatever happened while it was not looking is found and fixed on start.
"""

from __future__ import annotations

import time

import pytest
from tests.chaos.conftest import ChaosSettings
from tests.chaos.lab import Lab, Operator
from tests.chaos.mutations import initial_spec
from tests.chaos.oracles import (
    assert_steady_state,
    convergence_problems,
    measure_convergence,
    snapshot,
    wait_converged,
)
from tests.support.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.chaos]


def test_the_operator_sigkilled_mid_burst_and_restarted_converges(
    lab: Lab, operator: Operator, chaos: ChaosSettings
) -> None:
    names = [f"burst-{i:03d}" for i in range(chaos.count(40))]
    lab.create_many(names)
    eventually(
        lambda: len(lab.deployments()) >= len(names) // 5,
        timeout=120,
        what="a fifth of the Deployments, so that the kill lands mid-burst",
    )
    pending = len(convergence_problems(lab))
    with operator.book.fault("operator SIGKILL mid-burst"):
        operator.kill()
        restarted = time.monotonic()
        operator.start()
        measure_convergence(
            lab,
            f"operator SIGKILL mid-burst ({pending} of {len(names)} not Ready yet): "
            "new operator's start to all Ready",
            since=restarted,
        )
    assert_steady_state(lab, operator)


def test_spec_changes_and_child_deletions_while_the_operator_is_down_are_all_repaired(
    lab: Lab, operator: Operator, chaos: ChaosSettings
) -> None:
    names = [f"down-{i:02d}" for i in range(chaos.count(12))]
    lab.create_many(names, initial_spec)
    wait_converged(lab)
    before = snapshot(lab, names)

    operator.stop()  # graceful: no fault window, the next operator's log must be clean throughout
    respecced, lost_deployment, lost_service, deleted = (names[k::4] for k in range(4))
    for name in respecced:
        lab.set_spec(
            name,
            {"replicas": 2, "message": "changed while down", "listeners": [{"name": "web", "port": 8000}]},
        )
    for name in lost_deployment:
        lab.delete_deployment(name)
    for name in lost_service:
        lab.delete_service(name)
    for name in deleted:
        lab.delete(name)
    lab.create_many(["born-while-down-a", "born-while-down-b"])

    started = time.monotonic()
    operator.start()
    measure_convergence(
        lab,
        f"operator down during {len(names) - len(deleted)} changes, {len(deleted)} deletions: "
        "start to all Ready",
        since=started,
    )
    assert_steady_state(lab, operator, earlier=before)

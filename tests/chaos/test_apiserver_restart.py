"""The kube-apiserver is SIGKILLed mid-burst and restarted on the same port and data.

Why: every watch and request of the operator breaks at once, and whatever the operator wrote
just before may or may not have landed. It must reconnect by itself, miss no event that
matters, and be as quiet afterwards as before.
"""

from __future__ import annotations

import time

import pytest
from tests.chaos.conftest import ChaosSettings
from tests.chaos.lab import Lab, Operator, record
from tests.chaos.oracles import assert_steady_state, convergence_problems, measure_convergence
from tests.support.cluster import Cluster
from tests.support.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.chaos]


def test_a_killed_and_restarted_apiserver_costs_time_and_nothing_else(
    lab: Lab, operator: Operator, full_cluster: Cluster, chaos: ChaosSettings
) -> None:
    local = full_cluster.local
    if local is None:
        pytest.skip("kills the local cluster's kube-apiserver; USE_EXISTING_CLUSTER has none to kill")
    names = [f"api-{i:02d}" for i in range(chaos.count(20))]
    lab.create_many(names)
    eventually(lambda: lab.deployments(), timeout=120, what="the first Deployment: the burst is under way")
    pending = len(convergence_problems(lab))
    with operator.book.fault("kube-apiserver SIGKILL and restart"):
        killed = time.monotonic()
        local.restart("kube-apiserver")  # SIGKILL, then the same argv: same port, certs and etcd
        back = time.monotonic()
        record("kube-apiserver SIGKILL to /readyz 200 again", back - killed)
        # From the kill: the apiserver serves requests a while before its /readyz says 200.
        measure_convergence(
            lab,
            f"kube-apiserver SIGKILL mid-burst ({pending} of {len(names)} not Ready yet): to all Ready",
            since=killed,
        )
    # The operator's watches came back: a change made now is followed, and logged quietly.
    changed = time.monotonic()
    for name in names:
        lab.patch_spec(name, {"replicas": 2})
    measure_convergence(
        lab,
        f"after the apiserver restart: {len(names)} scaled to 2, to all Ready",
        since=changed,
    )
    assert all(local.health().values()), f"the local cluster is not whole again: {local.health()}"
    assert_steady_state(lab, operator)

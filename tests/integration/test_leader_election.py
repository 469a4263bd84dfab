"""Two and three operator processes on one Lease: one leads, the standbys write nothing, and a
killed or stopped leader is replaced (the hand-over times are printed, never asserted).

Each replica has its own POD_NAME (its identity) and its own field manager, so managedFields
tell who wrote what. Short lease timings (4 s / 3 s / 1 s) keep the module fast.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient, CoordinationV1Api
from tests.support.cluster import Cluster
from tests.support.lab import Lab, a_labserver
from tests.support.operator import OperatorProcess
from tests.support.waiting import NotYet, eventually

pytestmark = pytest.mark.cluster
LEASE = "k8s-lab-operator"
MASTER = "leader_election_master_status"
TIMINGS = {"lease_duration": "4", "renew_deadline": "3", "retry_period": "1"}


def manager_of(pod: str) -> str:
    return f"k8s-lab-{pod}"


@contextmanager
def replicas(cluster: Cluster, namespace: str, count: int) -> Iterator[list[OperatorProcess]]:
    """``count`` operators electing on a Lease in ``namespace``; their log tails shown at the end."""
    with tempfile.TemporaryDirectory(prefix="k8s-lab-ha-") as folder:
        ops: list[OperatorProcess] = []
        try:
            for i in range(count):
                pod = f"op-{i}"
                op = OperatorProcess(
                    cluster.kubeconfig,
                    Path(folder) / f"{pod}.log",
                    leader_elect="true",
                    leader_election_namespace=namespace,
                    field_manager=manager_of(pod),
                    resync_seconds="30",
                    **TIMINGS,
                )
                op.extra_env["POD_NAME"] = pod
                op.start()
                ops.append(op)
            yield ops
        finally:
            for op in ops:
                op.stop()
                print(f"--- {op.extra_env['POD_NAME']} log tail ---\n" + op.log_tail())


def the_leader(ops: list[OperatorProcess]) -> OperatorProcess:
    """The one replica whose metric says 1 while every other living one says 0."""

    def probe() -> OperatorProcess | None:
        alive = [op for op in ops if op.proc is not None]
        values = {op.extra_env["POD_NAME"]: op.metric(MASTER) for op in alive}
        leaders = [op for op in alive if op.metric(MASTER) == 1]
        if len(leaders) != 1 or any(v is None for v in values.values()):
            raise NotYet(f"{MASTER} per replica: {values}")
        return leaders[0]

    return eventually(probe, timeout=60, what="exactly one leader")


def holder(api: ApiClient, namespace: str) -> str:
    spec = CoordinationV1Api(api).read_namespaced_lease(LEASE, namespace).spec
    return str(spec.holder_identity or "") if spec is not None else ""


def managers(obj: Any) -> set[str]:
    fields = obj["metadata"].get("managedFields") if isinstance(obj, dict) else obj.metadata.managed_fields
    return {(f["manager"] if isinstance(f, dict) else f.manager) for f in fields or []}


def test_one_of_two_leads_and_the_standby_writes_nothing(
    full_cluster: Cluster, api: ApiClient, namespace: str
) -> None:
    lab = Lab(api, namespace)
    with replicas(full_cluster, namespace, 2) as ops:
        leader = the_leader(ops)
        pod = leader.extra_env["POD_NAME"]
        assert holder(api, namespace) == pod
        lab.create(a_labserver("one", replicas=1))
        eventually(lambda: lab.is_ready("one"), timeout=120, what="one Ready")
        standby = next(op.extra_env["POD_NAME"] for op in ops if op is not leader)
        written = managers(lab.get("one")) | managers(lab.deployment("one")) | managers(lab.service("one"))
        assert not {m for m in written if m.startswith(manager_of(standby))}, written
        assert manager_of(pod) in written
        assert the_leader(ops) is leader


def test_a_killed_leader_is_replaced_by_a_standby_that_reconciles(
    full_cluster: Cluster, api: ApiClient, namespace: str
) -> None:
    lab = Lab(api, namespace)
    with replicas(full_cluster, namespace, 3) as ops:
        leader = the_leader(ops)
        started = time.monotonic()
        leader.kill()
        successor = the_leader(ops)
        led = time.monotonic() - started
        lab.create(a_labserver("after-kill", replicas=1))
        eventually(lambda: lab.is_ready("after-kill"), timeout=120, what="after-kill Ready")
        ready = time.monotonic() - started
        assert successor is not leader
        assert holder(api, namespace) == successor.extra_env["POD_NAME"]
        print(f"SIGKILL failover: new leader after {led:.1f}s, new LabServer Ready after {ready:.1f}s")


def test_a_stopped_leader_releases_the_lease_for_a_quick_hand_over(
    full_cluster: Cluster, api: ApiClient, namespace: str
) -> None:
    with replicas(full_cluster, namespace, 2) as ops:
        leader = the_leader(ops)
        started = time.monotonic()
        leader.stop()  # SIGTERM: drain, then release
        stopped = time.monotonic() - started
        successor = the_leader(ops)
        led = time.monotonic() - started
        assert successor is not leader
        log = leader.log.read_text()
        assert "lease released" in log, log[-2000:]
        print(f"SIGTERM hand-over: old leader exited after {stopped:.1f}s, new leader after {led:.1f}s")

"""Two and three operator processes on one Lease: one leads, the standbys write nothing, and a
killed or stopped leader is replaced (the hand-over times are printed, never asserted).

Each replica has its own POD_NAME (its identity) and its own field manager, so managedFields
tell who wrote what, and its Events carry its identity as ``reportingInstance``. Short lease
timings (4 s / 3 s / 1 s) keep the module fast. One replica is
cut off from the apiserver by a TCP proxy (``tests.support.tcpproxy``) to show the fence.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient, CoordinationV1Api
from tests.support.cluster import Cluster
from tests.support.lab import Lab, a_labserver
from tests.support.operator import OperatorProcess
from tests.support.tcpproxy import TcpProxy, kubeconfig_through, upstream_of
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
        # Events: each carries the writing replica's identity (reportingInstance). They go out in
        # the background, a moment after the status (labop.recorder).
        eventually(lambda: "Ready" in lab.event_reasons("one"), timeout=30, what="the Ready Event")
        events = lab.core.list_namespaced_event(namespace).items
        reporters = {e.reporting_instance for e in events if e.reporting_component == "k8s-lab"}
        assert reporters == {pod}, reporters
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


def logged_at(log: str, message: str) -> datetime:
    """When the last line with ``message`` was logged (kopf's ``[YYYY-mm-dd HH:MM:SS,mmm]``)."""
    lines = [line for line in log.splitlines() if message in line]
    assert lines, f"no {message!r} in the log"
    return datetime.strptime(lines[-1][1:24], "%Y-%m-%d %H:%M:%S,%f")


def test_a_leader_cut_off_from_the_apiserver_stops_before_a_standby_takes_over(
    full_cluster: Cluster, api: ApiClient, namespace: str, tmp_path: Path
) -> None:
    lab = Lab(api, namespace)
    proxy = TcpProxy(*upstream_of(full_cluster.kubeconfig))
    proxy.start()
    cut_off = OperatorProcess(
        kubeconfig_through(proxy, full_cluster.kubeconfig, tmp_path / "proxied.kubeconfig"),
        tmp_path / "op-0.log",
        leader_elect="true",
        leader_election_namespace=namespace,
        **TIMINGS,
    )
    cut_off.extra_env["POD_NAME"] = "op-0"
    standby = OperatorProcess(
        full_cluster.kubeconfig,
        tmp_path / "op-1.log",
        leader_elect="true",
        leader_election_namespace=namespace,
        **TIMINGS,
    )
    standby.extra_env["POD_NAME"] = "op-1"
    try:
        cut_off.start()
        assert the_leader([cut_off]) is cut_off
        standby.start()
        assert the_leader([cut_off, standby]) is cut_off
        lab.create(a_labserver("before", replicas=1))
        eventually(lambda: lab.is_ready("before"), timeout=120, what="before Ready")
        deployment_uid = lab.deployment("before").metadata.uid
        ready_since = lab.condition("before", "Ready")["lastTransitionTime"]

        started = time.monotonic()
        proxy.pause()
        assert the_leader([standby]) is standby
        led = time.monotonic() - started
        popen = cut_off.proc.popen if cut_off.proc is not None else None
        assert popen is not None
        assert eventually(lambda: popen.poll() is not None, timeout=60, what="op-0 exits")
        assert popen.returncode == 1  # exits non-zero: the kubelet would restart it as a standby
        # The old leader stopped (its workers cut, its fence shut) before the standby led.
        stopped = logged_at(cut_off.log.read_text(), "stopped leading")
        took_over = logged_at(standby.log.read_text(), "became leader")
        assert stopped < took_over, (stopped, took_over)

        lab.create(a_labserver("after", replicas=1))
        eventually(lambda: lab.is_ready("after"), timeout=120, what="after Ready")
        proxy.resume()
        assert lab.deployment("before").metadata.uid == deployment_uid  # no child created twice
        assert lab.condition("before", "Ready")["lastTransitionTime"] == ready_since  # no flip-flop
        assert lab.is_ready("before")
        print(f"cut-off failover: new leader {led:.1f}s after the cut; old leader stopped at {stopped}")
    finally:
        for op in (cut_off, standby):
            op.stop()
            print(f"--- {op.extra_env['POD_NAME']} log tail ---\n" + op.log_tail())
        proxy.stop()

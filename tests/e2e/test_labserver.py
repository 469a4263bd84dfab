"""LabServers end to end on real pods: the operator in-cluster, labhttp containers behind a Service.

Role: the checks kwok cannot make (issue #9): the operator runs in-cluster from its locally built
image as its ServiceAccount under Pod Security ``restricted``; a LabServer's pods run labhttp
and answer through the Service's ClusterIP from this machine (``/`` on each listener, ``/health``,
``/metrics`` as Prometheus text); a message change rolls out with zero failed requests; a port
change reaches the Service and the pods; a SIGKILLed server is restarted; awkward messages come
back byte for byte; stopping the cluster leaves nothing behind. Tests run in file order on one
LabServer; the last one stops the cluster. Requests go only to this cluster's ClusterIPs and pod
IPs, bounded in count and time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from localcluster import node, nodehost
from prometheus_client.parser import text_string_to_metric_families
from tests.e2e.conftest import E2E, OPERATOR_DEPLOYMENT, OPERATOR_NS
from tests.support.lab import Lab, a_labserver
from tests.support.waiting import eventually

# The first test also waits for the session fixture: images (a cold build takes minutes), the cluster.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1800)]

NAME = "web"
MESSAGE = "hello from a real LabServer pod"
LISTENERS: list[dict[str, Any]] = [
    {"name": "http", "port": 8080},
    {"name": "admin", "port": 8081},
    {"name": "metrics", "port": 9090},
]
READY_TIMEOUT = 240.0
LEASE = "k8s-lab-operator"  # LABOP_LEADER_ELECTION_ID in deploy/manager/deployment.yaml
# Messages whose bytes the kubelet's $(VAR) expansion, a shell or an encoding would change.
NASTY = ["héllo 😀 costs $$5", "$(HOME) and $(", 'quote " back\\slash', "two\nlines\n"]


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.fixture(scope="module")
def ns(e2e: E2E) -> Iterator[str]:
    """A namespace enforcing Pod Security ``restricted``, where the LabServers of this module live."""
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    e2e.cluster.kubectl("create", "namespace", name)
    e2e.cluster.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    eventually(
        lambda: e2e.cluster.kubectl("get", "-n", name, "serviceaccount/default", check=False).returncode == 0,
        timeout=60,
        what="the namespace's default ServiceAccount",
    )
    yield name


@pytest.fixture(scope="module")
def lab(e2e: E2E, ns: str) -> Lab:
    return Lab(e2e.api, ns)


def wait_ready(lab: Lab, name: str) -> None:
    eventually(lambda: lab.is_ready(name), timeout=READY_TIMEOUT, interval=1, what=f"LabServer {name} Ready")


def pods(lab: Lab, name: str) -> list[Any]:
    selector = f"app.kubernetes.io/instance={name}"
    return list(lab.core.list_namespaced_pod(lab.ns, label_selector=selector).items)


def cluster_ip(lab: Lab, name: str) -> str:
    return str(lab.service(name).spec.cluster_ip)


def rolled_out(lab: Lab, name: str, replicas: int) -> bool:
    """Ready at the current generation, and only the current ReplicaSet's pods left (none terminating)."""
    if not lab.is_ready(name):
        return False
    current = lab.deployment(name).metadata.annotations.get("deployment.kubernetes.io/revision")
    live = pods(lab, name)
    hashes = {p.metadata.labels.get("pod-template-hash") for p in live}  # live: list[Any]
    replica_sets = lab.apps.list_namespaced_replica_set(
        lab.ns, label_selector=f"app.kubernetes.io/instance={name}"
    )
    items: list[Any] = replica_sets.items  # the client types every field Optional
    current_hash = {
        rs.metadata.labels.get("pod-template-hash")
        for rs in items
        if rs.metadata.annotations.get("deployment.kubernetes.io/revision") == current
    }
    return (
        len(live) == replicas
        and hashes == current_hash
        and all(p.metadata.deletion_timestamp is None for p in live)
    )


def test_operator_runs_in_cluster_as_its_service_account(e2e: E2E) -> None:
    ns = e2e.cluster.kubectl("get", "namespace", OPERATOR_NS, "-o", "jsonpath={.metadata.labels}").stdout
    assert '"pod-security.kubernetes.io/enforce":"restricted"' in ns
    rows = operator_pods(
        e2e, "{.metadata.name} {.spec.serviceAccountName} {.spec.containers[0].image} {.spec.nodeName}"
    )
    pods = {name: rest for name, *rest in rows}
    # deploy/ runs two replicas (leader election): each as the ServiceAccount, from the local image.
    assert list(pods.values()) == [[OPERATOR_DEPLOYMENT, e2e.images.operator, node.NODE_NAME]] * 2
    assert eventually(lambda: lease_holder(e2e), timeout=60, what="a leader on the Lease") in pods


def operator_pods(e2e: E2E, fields: str) -> list[list[str]]:
    """One row per operator pod: the jsonpath ``fields`` of it, split on spaces."""
    rows = e2e.cluster.kubectl(
        "get",
        "pods",
        "-n",
        OPERATOR_NS,
        "-l",
        "app.kubernetes.io/component=operator",
        "-o",
        "jsonpath={range .items[*]}" + fields + "{'\\n'}{end}",
    ).stdout.splitlines()
    return [row.split() for row in rows]


def lease_holder(e2e: E2E) -> str:
    """The Lease's holderIdentity ("" while none: released, or not yet taken)."""
    return e2e.cluster.kubectl(
        "get", "lease", "-n", OPERATOR_NS, LEASE, "-o", "jsonpath={.spec.holderIdentity}", check=False
    ).stdout


def test_labserver_answers_through_its_service(e2e: E2E, lab: Lab) -> None:
    lab.create(a_labserver(NAME, replicas=2, message=MESSAGE, listeners=LISTENERS))
    wait_ready(lab, NAME)
    running = pods(lab, NAME)
    assert len(running) == 2
    for pod in running:  # admitted under "restricted", on the real node, from the local image
        assert pod.spec.node_name == node.NODE_NAME
        assert pod.spec.containers[0].image == e2e.images.labhttp
        assert pod.status.pod_ip.startswith("10.245.0.")
    ip = cluster_ip(lab, NAME)
    # kube-proxy programs the Service shortly after the endpoints turn ready: poll, with a ceiling.
    for listener in LISTENERS:
        port = int(listener["port"])

        def healthy(p: int = port) -> bool:
            return get(f"http://{ip}:{p}/health")[0] == 200

        assert eventually(healthy, timeout=60, what=f"{ip}:{port}")
        if listener["name"] != "metrics":
            assert get(f"http://{ip}:{port}/") == (200, MESSAGE.encode())
    status, body = get(f"http://{ip}:9090/metrics")
    assert status == 200
    families = {f.name for f in text_string_to_metric_families(body.decode())}
    assert families, body[:200]


@dataclass
class RequestLoop:
    """GETs against one URL, one new connection each, paced, until stopped (at most ``ceiling`` seconds)."""

    url: str
    ceiling: float = 300.0
    pace: float = 0.02  # ~50 requests/s at most: load must not be what fails a request on 2 cores
    bodies: dict[bytes, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    count: int = 0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set() and time.monotonic() - start < self.ceiling:
            self.count += 1
            try:
                status, body = get(self.url, timeout=5)
                if status != 200:
                    self.failures.append(f"HTTP {status}: {body[:80]!r}")
                else:
                    self.bodies[body] = self.bodies.get(body, 0) + 1
            except OSError as err:
                self.failures.append(repr(err))
            self._stop.wait(self.pace)
        self.seconds = time.monotonic() - start

    def __enter__(self) -> RequestLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_message_change_rolls_out_without_a_failed_request(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    ip = cluster_ip(lab, NAME)
    new = "the second message"
    with RequestLoop(f"http://{ip}:8080/") as loop:
        eventually(lambda: loop.count > 20, timeout=30, what="the request loop running")
        lab.patch_spec(NAME, {"message": new})
        eventually(lambda: rolled_out(lab, NAME, 2), timeout=READY_TIMEOUT, interval=1, what="rollout done")
        # Old pods are gone: every answer from now on is the new message.
        seen_new = loop.bodies.get(new.encode(), 0)
        eventually(lambda: loop.bodies.get(new.encode(), 0) > seen_new + 20, timeout=30, what="new answers")
    rate = loop.count / loop.seconds if loop.seconds else 0.0
    bodies = {k.decode(): v for k, v in loop.bodies.items()}
    with capsys.disabled():  # in the test output of every run, not only with -s
        print(
            f"\nrollout request loop: requests={loop.count} failed={len(loop.failures)}"
            f" seconds={loop.seconds:.1f} rate={rate:.1f}/s bodies={bodies}"
        )
    assert loop.failures == [], loop.failures[:10]
    assert set(loop.bodies) == {MESSAGE.encode(), new.encode()}
    assert get(f"http://{ip}:8081/") == (200, new.encode())


def test_listener_port_change_reaches_the_service_and_the_pods(lab: Lab) -> None:
    moved = [{"name": "http", "port": 8082}, LISTENERS[1], LISTENERS[2]]
    lab.patch_spec(NAME, {"listeners": moved})
    eventually(lambda: rolled_out(lab, NAME, 2), timeout=READY_TIMEOUT, interval=1, what="rollout done")
    service_ports = sorted(p.port for p in lab.service(NAME).spec.ports)
    assert service_ports == [8081, 8082, 9090]
    for pod in pods(lab, NAME):
        assert sorted(p.container_port for p in pod.spec.containers[0].ports) == [8081, 8082, 9090]
        assert get(f"http://{pod.status.pod_ip}:8082/health")[0] == 200
    ip = cluster_ip(lab, NAME)
    assert eventually(lambda: get(f"http://{ip}:8082/")[0] == 200, timeout=60, what="ClusterIP:8082")


def _host_pid(e2e: E2E, container_id: str) -> int:
    """The host PID of a container's init process (labhttp), as the node's containerd reports it."""
    lay = e2e.local.node_layout
    tasks = subprocess.run(
        node.ctr(lay, "tasks", "ls"), capture_output=True, text=True, env=lay.env(), check=True
    )
    for line in tasks.stdout.splitlines()[1:]:
        task, pid, *_ = line.split()
        if task == container_id:
            return int(pid)
    raise AssertionError(f"no task {container_id} in:\n{tasks.stdout}")


def test_killed_server_is_restarted(e2e: E2E, lab: Lab) -> None:
    victim = pods(lab, NAME)[0]
    status = victim.status.container_statuses[0]
    container_id = status.container_id.split("://", 1)[1]
    pid = _host_pid(e2e, container_id)
    assert b"labhttp" in _cmdline(str(pid))
    os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        pod: Any = lab.core.read_namespaced_pod(victim.metadata.name, lab.ns)
        return bool(pod.status.container_statuses[0].restart_count > status.restart_count)

    eventually(restarted, timeout=120, interval=1, what="the kubelet restarting the container")
    wait_ready(lab, NAME)
    eventually(lambda: rolled_out(lab, NAME, 2), timeout=READY_TIMEOUT, interval=1, what="both pods ready")


def test_messages_come_back_byte_for_byte(lab: Lab) -> None:
    names = [f"nasty-{i}" for i in range(len(NASTY))]
    for name, message in zip(names, NASTY, strict=True):
        lab.create(a_labserver(name, replicas=1, message=message))
    for name, message in zip(names, NASTY, strict=True):
        wait_ready(lab, name)
        ip = cluster_ip(lab, name)

        def answer(i: str = ip) -> tuple[int, bytes]:
            return get(f"http://{i}:8080/")

        got = eventually(answer, timeout=60, what=f"{name} answers")
        assert got == (200, message.encode("utf-8")), name
    for name in names:
        lab.delete(name)


def test_a_rolling_update_of_the_operator_keeps_labservers_reconciled(e2e: E2E, lab: Lab) -> None:
    """The operator's 2-replica Deployment rolled (maxSurge 1, maxUnavailable 0: the leader
    leaves, releases the Lease, a standby or a new pod leads); a spec change made while the
    rollout runs converges, and the new message is served."""
    name = "rolled"
    lab.create(a_labserver(name, replicas=1, message="before the rollout"))
    wait_ready(lab, name)
    deployment = f"deployment/{OPERATOR_DEPLOYMENT}"
    e2e.cluster.kubectl("rollout", "restart", "-n", OPERATOR_NS, deployment)
    lab.patch_spec(name, {"message": "during the rollout"})
    # generation, observedGeneration, updatedReplicas, replicas: the rollout is done only when
    # the new generation is observed and exactly the 2 wanted replicas are all updated.
    state = e2e.cluster.kubectl(
        "get",
        "-n",
        OPERATOR_NS,
        deployment,
        "-o",
        "jsonpath={.metadata.generation} {.status.observedGeneration} {.status.updatedReplicas}"
        " {.status.replicas}",
    ).stdout.split()
    generation, observed, updated, replicas = (*state, "", "", "", "")[:4]
    done = generation == observed and updated == replicas == "2"
    assert not done, f"the change came after the rollout ended: {state}"
    e2e.cluster.kubectl("rollout", "status", "-n", OPERATOR_NS, deployment, "--timeout=300s")
    wait_ready(lab, name)
    ip = cluster_ip(lab, name)

    def serves_the_change() -> bool:
        return get(f"http://{ip}:8080/") == (200, b"during the rollout")

    eventually(serves_the_change, timeout=READY_TIMEOUT, interval=1, what="the change served")

    def a_current_pod_leads() -> str | None:
        # Right after the rollout the old leader has released the Lease (holder empty) and a
        # standby takes it at its next attempt; pods being deleted are not current.
        holder = lease_holder(e2e)
        rows = operator_pods(e2e, "{.metadata.name} {.metadata.deletionTimestamp}")
        current = {row[0] for row in rows if len(row) == 1}
        return holder if holder in current else None

    eventually(a_current_pod_leads, timeout=60, interval=1, what="a current operator pod holding the Lease")


def test_stopping_the_cluster_leaves_nothing(e2e: E2E) -> None:
    """After stopping: no process naming the cluster folder (control plane, kubelet, kube-proxy,
    containerd, shims), no process or cgroup under /k8slab, no mount under the folder, no pod network
    namespace, no bridge k8slab0, no KUBE-*/CNI-*/K8SLAB-* chain in any IPv4 or IPv6 table, no
    kubelet log link, CNI cache file or shim socket, no ownership file or unrestored sysctl snapshot
    (``localcluster.nodehost.leftovers``)."""
    root = e2e.local.layout.root
    e2e.local.stop()
    assert nodehost.leftovers(root) == []
    ours = [p for p in os.listdir("/proc") if p.isdigit() and str(root).encode() in _cmdline(p)]
    assert ours == [], [_cmdline(p) for p in ours]


def _cmdline(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""

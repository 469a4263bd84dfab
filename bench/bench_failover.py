"""``make bench-failover``: leader failover of the operator, after SIGKILL and after SIGTERM.

Role: the figures of BENCHMARKS.md's "Leader election" section (a benchmark, not a test).
Why a cluster of its own: the control plane only (etcd + kube-apiserver, the CRD installed) in a
temp folder, so nothing else reconciles or competes for the Lease.

Two operator replicas (``kopf run operator/main.py -A`` through the integration tests'
``OperatorProcess``, each its own POD_NAME) elect on a Lease with client-go's default timings
(15 s / 10 s / 2 s, as deploy/ runs them). Each trial: the leader is killed (SIGKILL) or
stopped (SIGTERM, which releases the Lease); the clock runs from the signal to the standby's
``leader_election_master_status`` reading 1 (polled every 0.1 s), and, after SIGKILL, on to the
first reconcile of a LabServer created at that moment (its status.observedGeneration). A fresh
replica then replaces the old leader, as the kubelet would. Then the standby's idle RSS and CPU
over 30 s. Progress goes to stderr, markdown to stdout.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # tests.support.operator; labop and localcluster come from the install
    sys.path.insert(0, str(REPO))

import kubernetes  # noqa: E402
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi  # noqa: E402
from localcluster import ClusterSettings, LocalCluster, binaries  # noqa: E402
from tests.support.operator import OperatorProcess  # noqa: E402

MASTER = "leader_election_master_status"
NAMESPACE = "bench"


def log(message: str) -> None:
    print(f"[bench-failover] {message}", file=sys.stderr, flush=True)


@contextmanager
def control_plane(root: Path) -> Iterator[LocalCluster]:
    cluster = LocalCluster(ClusterSettings(root=root, bin_dir=binaries.bin_dir()))
    try:
        cluster.start_control_plane()
        crds = str(REPO / "crds")
        cluster.kubectl("apply", "--server-side", "-f", crds)
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", crds)
        yield cluster
    finally:
        cluster.destroy()


def api_client(kubeconfig: Path) -> ApiClient:
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]  # unannotated
        config_file=str(kubeconfig), client_configuration=config
    )
    return ApiClient(config)


class Replicas:
    """The running replicas, each with its own POD_NAME; ``replace`` starts a fresh one."""

    def __init__(self, kubeconfig: Path, folder: Path) -> None:
        self.kubeconfig, self.folder = kubeconfig, folder
        self.ops: list[OperatorProcess] = []
        self.started = 0

    def add(self) -> OperatorProcess:
        pod = f"op-{self.started}"
        self.started += 1
        op = OperatorProcess(
            self.kubeconfig,
            self.folder / f"{pod}.log",
            leader_elect="true",
            leader_election_namespace=NAMESPACE,
        )
        op.extra_env["POD_NAME"] = pod
        op.start()
        self.ops.append(op)
        return op

    def leader(self, timeout: float = 120.0) -> OperatorProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leaders = [op for op in self.ops if op.proc is not None and op.metric(MASTER) == 1]
            if len(leaders) == 1:
                return leaders[0]
            time.sleep(0.1)
        raise TimeoutError("no single leader")

    def drop(self, op: OperatorProcess) -> None:
        self.ops.remove(op)

    def stop_all(self) -> None:
        for op in self.ops:
            op.stop()


def observed(objects: Any, name: str) -> bool:
    ls = objects.get_namespaced_custom_object("k8slab.dev", "v1alpha1", NAMESPACE, "labservers", name)
    return bool(ls.get("status", {}).get("observedGeneration") == ls["metadata"]["generation"])


def trial(replicas: Replicas, objects: Any, kind: str, index: int) -> tuple[float, float | None]:
    leader = replicas.leader()
    replicas.drop(leader)
    started = time.monotonic()
    if kind == "kill":
        leader.kill()
    else:
        leader.stop()
    replicas.leader()
    led = time.monotonic() - started
    reconciled: float | None = None
    if kind == "kill":
        name = f"after-{kind}-{index}"
        body = {"apiVersion": "k8slab.dev/v1alpha1", "kind": "LabServer", "metadata": {"name": name}}
        objects.create_namespaced_custom_object("k8slab.dev", "v1alpha1", NAMESPACE, "labservers", body)
        while not observed(objects, name):
            time.sleep(0.1)
        reconciled = time.monotonic() - started
    replicas.add()  # the kubelet's restart: a fresh standby
    return led, reconciled


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def standby_idle(replicas: Replicas, seconds: float) -> tuple[float, float]:
    leader = replicas.leader()
    standby = next(op for op in replicas.ops if op is not leader)
    assert standby.proc is not None
    before, started = cpu_seconds(standby.proc.pid), time.monotonic()
    time.sleep(seconds)
    used = cpu_seconds(standby.proc.pid) - before
    return rss_mib(standby.proc.pid), 100 * used / (time.monotonic() - started)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(what: str, values: list[float]) -> str:
    figures = (statistics.median(values), pct(values, 0.95), min(values), max(values))
    return f"| {what} | " + " | ".join(f"{v:.2f} s" for v in figures) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="k8s-lab-bench-failover-") as folder:
        root = Path(folder)
        with control_plane(root / "cluster") as cluster:
            api = api_client(cluster.kubeconfig)
            CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})  # type: ignore[arg-type]
            objects = CustomObjectsApi(api)
            replicas = Replicas(cluster.kubeconfig, root)
            try:
                replicas.add()
                replicas.add()
                results: dict[str, list[tuple[float, float | None]]] = {"kill": [], "term": []}
                for i in range(args.trials):
                    for kind in ("kill", "term"):
                        results[kind].append(trial(replicas, objects, kind, i))
                        log(f"trial {i} {kind}: {results[kind][-1]}")
                rss, cpu = standby_idle(replicas, args.idle_seconds)
            finally:
                replicas.stop_all()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on: nproc {os.cpu_count()}, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"load average {load} (at the end). {args.trials} trials each; lease 15 s, renew 10 s, retry 2 s."
    )
    print()
    print("| from the signal to | p50 | p95 | min | max |")
    print("|---|---:|---:|---:|---:|")
    print(row("SIGKILL: the standby leads", [led for led, _ in results["kill"]]))
    print(row("SIGKILL: a new LabServer reconciled", [r for _, r in results["kill"] if r is not None]))
    print(row("SIGTERM: the standby leads", [led for led, _ in results["term"]]))
    print()
    print(f"Standby idle over {args.idle_seconds:.0f} s: RSS {rss:.1f} MiB, CPU {cpu:.2f} % of one core.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

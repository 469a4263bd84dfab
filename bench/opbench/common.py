"""What every phase of `make bench-operator` shares: clock and logs, /proc, the local cluster
with its client limits raised, the apiserver's request counters, creating LabServers.

Why the limits are raised: with client-go's defaults (qps 20, burst 30 per controller) the
deployment controller, not the operator, paces every round above a few hundred LabServers
(BENCHMARKS.md). kube-controller-manager and kube-scheduler get ``--kube-api-qps=500
--kube-api-burst=1000`` so that the operator is what is measured; the fake nodes take every pod.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi, V1Namespace, V1ObjectMeta
from kubernetes.client.exceptions import ApiException
from localcluster import ClusterSettings, LocalCluster, binaries
from prometheus_client.parser import text_string_to_metric_families

from opbench import rawwatch

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "k8slab.dev", "v1alpha1", "labservers"
NAMESPACE = "bench"
CREATE_THREADS = 16
CLIENT_LIMITS = ["--kube-api-qps=500", "--kube-api-burst=1000"]
RAISED = {"kube-controller-manager": CLIENT_LIMITS, "kube-scheduler": CLIENT_LIMITS}
KWOK_NODES = 10
PODS_PER_NODE = 2_000
OPERATOR_COMPONENT = "k8s-lab"  # the operator's Events' reportingComponent (labop.recorder)
# The writes the operator (or the floor) makes: (verb, resource, subresource) as the apiserver
# counts them; server-side apply is counted under the verb APPLY.
WRITE_KINDS = {
    ("APPLY", "deployments", ""): "apply Deployment",
    ("APPLY", "services", ""): "apply Service",
    ("PATCH", "labservers", "status"): "status writes",
    ("APPLY", "labservers", "status"): "status writes",
    ("PATCH", "deployments", ""): "other child patches",
    ("PATCH", "services", ""): "other child patches",
}
BEGAN = time.monotonic()


# --------------------------------------------------------------------------- clock, logs, /proc


def log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp} +{time.monotonic() - BEGAN:6.0f}s] {message}", file=sys.stderr, flush=True)


def poll_until(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.2) -> T:
    """The first truthy value of ``probe``, polled every ``every`` seconds; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def proc_status_kib(pid: int, field_name: str) -> int:
    """A ``kB`` line of /proc/PID/status, e.g. VmHWM (peak RSS) or VmRSS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    raise KeyError(field_name)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    snapshot = {name: cpu_seconds(pid) for name, pid in pids.items()}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    snapshot["bench"] = usage.ru_utime + usage.ru_stime
    return snapshot


def cpu_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before.get(name, 0.0), 2) for name in after}


# --------------------------------------------------------------------------- the machine


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def pinned_versions() -> dict[str, str]:
    pins = {}
    for line in (REPO / "hack" / "versions.env").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.startswith("#"):
            pins[name.strip()] = value.strip()
    return pins


def git_commit(folder: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    )
    commit = done.stdout.strip() or "unknown"
    return commit + ("+dirty" if dirty.stdout.strip() else "")


def machine() -> dict[str, Any]:
    pins = pinned_versions()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kopf": importlib.metadata.version("kopf"),
        "kubernetes_client": importlib.metadata.version("kubernetes"),
        "kubernetes": pins.get("K8S_VERSION", "?"),
        "etcd": pins.get("ETCD_VERSION", "?"),
        "kwok": pins.get("KWOK_VERSION", "?"),
    }


# --------------------------------------------------------------------------- the cluster


@contextmanager
def fresh_cluster(root: Path, name: str) -> Iterator[LocalCluster]:
    """A new local cluster (client limits raised, KWOK_NODES fake nodes) with the CRD served
    and the namespace ``bench`` ready for pods; destroyed (its folder removed) on the way out."""
    settings = ClusterSettings(
        root=root / name,
        bin_dir=binaries.bin_dir(),
        nodes=KWOK_NODES,
        pods_per_node=PODS_PER_NODE,
        extra_flags=RAISED,
    )
    cluster = LocalCluster(settings)
    started = time.monotonic()
    try:
        cluster.start_control_plane()
        cluster.start_workloads()
        install_crd(cluster)
        with client(cluster.kubeconfig) as api:
            poll_until("the apiserver to serve LabServers", lambda: crd_served(api), 60)
            create_namespace(api, NAMESPACE)
        log(f"{name}: cluster up in {time.monotonic() - started:.1f} s")
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(root / name, ignore_errors=True)
        log(f"{name}: cluster destroyed")


def install_crd(cluster: LocalCluster) -> None:
    crds = str(REPO / "crds")
    cluster.kubectl("apply", "--server-side", "-f", crds)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", crds)


@contextmanager
def client(kubeconfig: Path, pool: int = CREATE_THREADS) -> Iterator[ApiClient]:
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=config)  # type: ignore[no-untyped-call]
    config.connection_pool_maxsize = pool
    api = ApiClient(config)
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


def crd_served(api: ApiClient) -> bool:
    """LabServers can be listed: right after Established the apiserver answers 429 for a moment."""
    try:
        CustomObjectsApi(api).list_cluster_custom_object(GROUP, VERSION, PLURAL, limit=1)
    except ApiException as err:
        if err.status in (404, 429, 503):
            return False
        raise
    return True


def create_namespace(api: ApiClient, name: str) -> None:
    core = CoreV1Api(api)
    core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=name)))

    def has_default_sa() -> bool:  # pods are refused until the controller-manager made it
        try:
            core.read_namespaced_service_account("default", name)
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True

    poll_until(f"ServiceAccount {name}/default", has_default_sa, 60)


def cluster_pids(cluster: LocalCluster) -> dict[str, int]:
    return {proc.name: proc.pid for proc in cluster.procs}


def apiserver_requests(cluster: LocalCluster) -> Counter[tuple[str, str, str, str]]:
    """apiserver_request_total summed by (verb, resource, subresource, code)."""
    status, text = cluster.api.request("GET", "/metrics")
    if status != 200:
        raise RuntimeError(f"apiserver /metrics: {status}")
    wanted = "\n".join(line for line in str(text).splitlines() if line.startswith("apiserver_request_total{"))
    totals: Counter[tuple[str, str, str, str]] = Counter()
    for family in text_string_to_metric_families(wanted):
        for sample in family.samples:
            labels = sample.labels
            key = (
                labels.get("verb", ""),
                labels.get("resource", ""),
                labels.get("subresource", ""),
                labels.get("code", ""),
            )
            totals[key] += int(sample.value)
    return totals


def writes_between(
    before: Counter[tuple[str, str, str, str]], after: Counter[tuple[str, str, str, str]]
) -> tuple[dict[str, int], int]:
    """The writes by kind (WRITE_KINDS) between two snapshots, and how many of them were 409s."""
    delta = after - before
    writes = {label: 0 for label in WRITE_KINDS.values()}
    conflicts = 0
    for (verb, res, sub, code), n in delta.items():
        label = WRITE_KINDS.get((verb, res, sub))
        if label is not None:
            writes[label] += n
            conflicts += n if code == "409" else 0
    return writes, conflicts


def operator_events(api: ApiClient, namespace: str = NAMESPACE) -> int:
    """Events posted by the operator in the namespace (by reportingComponent)."""
    selector = [("fieldSelector", f"reportingComponent={OPERATOR_COMPONENT}")]
    return len(rawwatch.get_json(api, f"/api/v1/namespaces/{namespace}/events", selector)["items"])


# --------------------------------------------------------------------------- load


def a_labserver(name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LabServer",
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
    }


def labserver_name(index: int) -> str:
    return f"ls-{index:05d}"


def create_labservers(api: ApiClient, count: int, replicas: int) -> float:
    """Create ``count`` LabServers from CREATE_THREADS threads; the seconds it took."""
    custom = CustomObjectsApi(api)

    def create(index: int) -> None:
        body = a_labserver(labserver_name(index), replicas)
        custom.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, body, _preload_content=False
        )

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=CREATE_THREADS, thread_name_prefix="create") as pool:
        for done in pool.map(create, range(count)):
            del done  # map re-raises the first failed create here
    return time.monotonic() - started

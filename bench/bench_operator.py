"""End-to-end benchmark of the operator on the local cluster (a benchmark, not a test).

Run: `make bench-operator`, or by hand from the repo root
`.venv/bin/python bench/bench_operator.py` (under 3 minutes on
2 cores; `--keep-logs DIR` keeps the operator's logs). It prints markdown for the "Operator end to
end" section of BENCHMARKS.md on stdout and its progress on stderr.

How: one Docker-free local cluster (`hack/localcluster`: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok with one fake node) in a temp folder, the LabServer
CRD installed and served. Then one round per worker count (1, 2, 4, 8), each with a fresh
namespace and a fresh operator run as users run it (`kopf run operator/main.py -A`, through the
integration tests' `OperatorProcess`, LABOP_WORKERS=N, started and /readyz before the load):

* load: 100 LabServers (replicas 1) created as fast as possible by 16 threads sharing one
  kubernetes-client ApiClient; the clock starts at the first create;
* progress: the namespace's LabServers listed every 0.2 s. "All observed" is the first list in
  which every one has status.observedGeneration == metadata.generation (the operator's first
  pass: children applied, first status written); "all Ready" the first in which every one also
  has Ready=True;
* then, once the operator is idle (queue empty, no worker busy, no new adds for 1 s): its
  /metrics (reconciles by result, queue adds and retries, mean reconcile time and queue wait),
  its peak RSS (VmHWM) and idle RSS (VmRSS) from /proc, the CPU seconds of every process (from
  /proc, split at "all observed"), the API writes the operator made (deltas of the apiserver's
  `apiserver_request_total` for what only the operator does here: apply of Deployments and
  Services, patch of LabServer status; plus the Events whose reportingComponent is the
  operator's), and kube-controller-manager's requests and client-side rate-limiter waits (its
  client-go `rest_client_*` metrics);
* the operator is stopped and the namespace deleted (and waited for, so that the next round
  finds the fake node's 110 pod slots free and its operator has no leftovers to reconcile).

Everything listens on 127.0.0.1. The cluster and the operator are stopped and the temp folder
removed on every exit: normal, error, Ctrl-C or SIGTERM.
The figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import re
import resource
import shutil
import signal
import ssl
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar, cast

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # tests.support.operator; labop and localcluster come from the install
    sys.path.insert(0, str(REPO))

import kubernetes  # noqa: E402
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi, V1Namespace, V1ObjectMeta  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402
from localcluster import ClusterSettings, LocalCluster, binaries  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from tests.support.cluster import or_none  # noqa: E402
from tests.support.operator import OperatorProcess  # noqa: E402

T = TypeVar("T")
GROUP, VERSION, PLURAL = "k8slab.dev", "v1alpha1", "labservers"
WORKER_COUNTS = (1, 2, 4, 8)
LABSERVERS = 100
CREATE_THREADS = 16
POLL = 0.2  # seconds between two looks at the cluster or the operator's /metrics
READY_TIMEOUT = 150.0
IDLE_QUIET_POLLS = 5  # idle = this many polls in a row without a new queue add
OPERATOR_COMPONENT = "k8s-lab"  # the operator's Events' reportingComponent (labop.recorder)
# The writes only the operator makes in this cluster: (verb, resource, subresource) as the
# apiserver counts them; server-side apply is counted under the verb APPLY.
OPERATOR_WRITES = {
    ("APPLY", "deployments", ""): "apply Deployment",
    ("APPLY", "services", ""): "apply Service",
    ("PATCH", "labservers", "status"): "patch status",
    ("APPLY", "labservers", "status"): "apply status",
}


# --------------------------------------------------------------------------- small helpers


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def poll_until(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    """The first truthy value of ``probe``, polled every POLL seconds; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(POLL)


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


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------- the cluster


@contextmanager
def local_cluster(root: Path) -> Iterator[LocalCluster]:
    cluster = LocalCluster(ClusterSettings(root=root, bin_dir=binaries.bin_dir()))
    try:
        started = time.monotonic()
        cluster.start_control_plane()
        cluster.start_workloads()
        install_crd(cluster)
        log(f"cluster up with the CRD in {time.monotonic() - started:.1f} s")
        yield cluster
    finally:
        cluster.destroy()
        log("cluster destroyed")


def install_crd(cluster: LocalCluster) -> None:
    crds = str(REPO / "crds")
    cluster.kubectl("apply", "--server-side", "-f", crds)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", crds)


def api_client(kubeconfig: Path) -> ApiClient:
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]  # unannotated
        config_file=str(kubeconfig), client_configuration=config
    )
    config.connection_pool_maxsize = CREATE_THREADS  # one connection per creating thread
    return ApiClient(config)


def cluster_pids(cluster: LocalCluster) -> dict[str, int]:
    return {proc.name: proc.pid for proc in cluster.procs}


def apiserver_writes(cluster: LocalCluster) -> Counter[tuple[str, str, str, str]]:
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


def controller_manager_client(cluster: LocalCluster) -> tuple[int, float]:
    """kube-controller-manager's API requests so far and the seconds they waited on its client-side
    rate limiters (client-go's rest_client_* metrics, summed over its controllers' clients)."""
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE  # its self-signed serving certificate
    tls.load_cert_chain(str(cluster.layout.pki.admin_cert), str(cluster.layout.pki.admin_key))
    url = f"https://127.0.0.1:{cluster.layout.ports.controller_manager}/metrics"
    with urllib.request.urlopen(url, context=tls, timeout=10) as resp:
        text = resp.read().decode()
    wanted = ("rest_client_requests_total{", "rest_client_rate_limiter_duration_seconds_sum{")
    requests, waited = 0, 0.0
    lines = "\n".join(line for line in text.splitlines() if line.startswith(wanted))
    for family in text_string_to_metric_families(lines):
        for sample in family.samples:
            if sample.name == "rest_client_requests_total":
                requests += int(sample.value)
            else:
                waited += sample.value
    return requests, waited


# --------------------------------------------------------------------------- namespaces and load


def create_namespace(core: CoreV1Api, name: str) -> None:
    core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=name)))
    # Pods are refused until the controller-manager made the namespace's default ServiceAccount.
    poll_until(
        f"ServiceAccount {name}/default",
        lambda: or_none(lambda: core.read_namespaced_service_account("default", name)),
        timeout=60,
    )


def delete_namespace(core: CoreV1Api, name: str) -> None:
    core.delete_namespace(name)
    poll_until(
        f"namespace {name} gone",
        lambda: or_none(lambda: core.read_namespace(name)) is None,
        timeout=120,
    )


def a_labserver(index: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LabServer",
        "metadata": {"name": f"bench-{index:03d}"},
        "spec": {"replicas": 1},
    }


def create_labservers(custom: CustomObjectsApi, namespace: str, count: int) -> None:
    def create(index: int) -> None:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, a_labserver(index))

    with ThreadPoolExecutor(max_workers=CREATE_THREADS, thread_name_prefix="create") as pool:
        for done in pool.map(create, range(count)):
            del done  # map re-raises the first failed create here


def is_ready(ls: dict[str, Any]) -> bool:
    status = ls.get("status") or {}
    if status.get("observedGeneration") != ls["metadata"].get("generation"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def is_observed(ls: dict[str, Any]) -> bool:
    """The operator wrote a status for this generation (its first pass over the object is done)."""
    return bool((ls.get("status") or {}).get("observedGeneration") == ls["metadata"].get("generation"))


def count_progress(custom: CustomObjectsApi, namespace: str) -> tuple[int, int]:
    """(LabServers observed by the operator, LabServers Ready) in the namespace, from one list."""
    listed = cast(dict[str, Any], custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL))
    items = listed["items"]
    return sum(1 for ls in items if is_observed(ls)), sum(1 for ls in items if is_ready(ls))


def crd_served(custom: CustomObjectsApi) -> bool:
    """LabServers can be listed: right after Established the apiserver answers 429 for a moment."""
    try:
        custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    except ApiException as err:
        if err.status == 429:
            return False
        raise
    return True


def operator_events(core: CoreV1Api, namespace: str) -> int:
    events = core.list_namespaced_event(namespace, field_selector=f"reportingComponent={OPERATOR_COMPONENT}")
    return len(events.items)


# --------------------------------------------------------------------------- the operator's figures


@dataclass(frozen=True)
class OperatorMetrics:
    reconciles: dict[str, int]
    adds: int
    retries: int
    depth: int
    active_workers: int
    reconcile_seconds: tuple[float, int]  # (sum, count) of controller_runtime_reconcile_time_seconds
    queue_wait_seconds: tuple[float, int]  # (sum, count) of workqueue_queue_duration_seconds

    @property
    def reconcile_mean(self) -> float:
        total, count = self.reconcile_seconds
        return total / count if count else 0.0

    @property
    def queue_wait_mean(self) -> float:
        total, count = self.queue_wait_seconds
        return total / count if count else 0.0


def scrape(operator: OperatorProcess) -> OperatorMetrics:
    values: dict[str, float] = {}
    reconciles: dict[str, int] = {}
    for family in text_string_to_metric_families(operator.metrics_text()):
        for sample in family.samples:
            if sample.name == "controller_runtime_reconcile_total":
                reconciles[sample.labels["result"]] = int(sample.value)
            else:
                values[sample.name] = sample.value
    return OperatorMetrics(
        reconciles=reconciles,
        adds=int(values["workqueue_adds_total"]),
        retries=int(values["workqueue_retries_total"]),
        depth=int(values["workqueue_depth"]),
        active_workers=int(values["controller_runtime_active_workers"]),
        reconcile_seconds=(
            values["controller_runtime_reconcile_time_seconds_sum"],
            int(values["controller_runtime_reconcile_time_seconds_count"]),
        ),
        queue_wait_seconds=(
            values["workqueue_queue_duration_seconds_sum"],
            int(values["workqueue_queue_duration_seconds_count"]),
        ),
    )


def wait_idle(operator: OperatorProcess, timeout: float = 60.0) -> OperatorMetrics:
    """The operator's metrics once its queue is empty, no worker busy and no key added for a while."""
    quiet = 0
    last: OperatorMetrics | None = None

    def idle() -> OperatorMetrics | None:
        nonlocal quiet, last
        now = scrape(operator)
        calm = now.depth == 0 and now.active_workers == 0 and last is not None and now.adds == last.adds
        quiet = quiet + 1 if calm else 0
        last = now
        return now if quiet >= IDLE_QUIET_POLLS else None

    return poll_until("the operator to go idle", idle, timeout)


def log_summary(path: Path) -> tuple[int, int, list[str]]:
    """(WARNING lines, ERROR/CRITICAL lines, up to 3 distinct such messages) of an operator log."""
    warnings = errors = 0
    samples: list[str] = []
    for line in path.read_text(errors="replace").splitlines():
        level = re.search(r"\[(WARNING|ERROR|CRITICAL)\s*\]", line)
        if level is None:
            continue
        if level.group(1) == "WARNING":
            warnings += 1
        else:
            errors += 1
        message = re.sub(r"key=\S+|\d+", "#", line.split("]", 3)[-1].strip())[:160]
        if message not in samples and len(samples) < 3:
            samples.append(message)
    return warnings, errors, samples


# --------------------------------------------------------------------------- one round


Snapshot = dict[str, float]  # CPU seconds so far, by process name


@dataclass
class Round:
    workers: int
    create_seconds: float = 0.0
    observed_seconds: float = 0.0  # until every LabServer had the operator's first status write
    ready_seconds: float = 0.0
    idle_seconds: float = 0.0
    metrics: OperatorMetrics | None = None
    start_rss_kib: int = 0
    peak_rss_kib: int = 0
    idle_rss_kib: int = 0
    writes: dict[str, int] = field(default_factory=dict)
    conflicts: int = 0
    cpu_first_pass: Snapshot = field(default_factory=dict)  # first create until all observed
    cpu_rest: Snapshot = field(default_factory=dict)  # all observed until the operator is idle
    kcm_requests: int = 0
    kcm_throttled_seconds: float = 0.0
    log_warnings: int = 0
    log_errors: int = 0
    log_samples: list[str] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return LABSERVERS / self.ready_seconds


def cpu_snapshot(pids: dict[str, int]) -> Snapshot:
    snapshot = {name: cpu_seconds(pid) for name, pid in pids.items()}
    snapshot["bench"] = own_cpu_seconds()
    return snapshot


def cpu_between(before: Snapshot, after: Snapshot) -> Snapshot:
    return {name: after[name] - before[name] for name in after}


def wait_ready(
    custom: CustomObjectsApi, namespace: str, started: float, pids: dict[str, int]
) -> tuple[float, float, Snapshot]:
    """Poll until all LabServers are Ready: (seconds until all were observed, until all were
    Ready, the CPU snapshot taken when all were first seen observed)."""
    at_observed: Snapshot = {}
    observed_seconds = 0.0

    def all_ready() -> bool:
        nonlocal observed_seconds
        observed, ready = count_progress(custom, namespace)
        if observed == LABSERVERS and not at_observed:
            observed_seconds = time.monotonic() - started
            at_observed.update(cpu_snapshot(pids))
        return ready == LABSERVERS

    poll_until(f"{LABSERVERS} LabServers Ready", all_ready, READY_TIMEOUT)
    return observed_seconds, time.monotonic() - started, at_observed


def measure(
    cluster: LocalCluster, api: ApiClient, operator: OperatorProcess, namespace: str, r: Round
) -> None:
    """Create the LabServers, wait for Ready and then idle, and fill ``r`` with what was seen."""
    core, custom = CoreV1Api(api), CustomObjectsApi(api)
    assert operator.proc is not None
    pid = operator.proc.pid
    pids = {**cluster_pids(cluster), "operator": pid}
    r.start_rss_kib = proc_status_kib(pid, "VmRSS")
    writes_before, kcm_before, cpu_before = (
        apiserver_writes(cluster),
        controller_manager_client(cluster),
        cpu_snapshot(pids),
    )

    started = time.monotonic()
    create_labservers(custom, namespace, LABSERVERS)
    r.create_seconds = time.monotonic() - started
    r.observed_seconds, r.ready_seconds, cpu_observed = wait_ready(custom, namespace, started, pids)
    log(
        f"workers={r.workers}: all observed after {r.observed_seconds:.1f} s,"
        f" Ready after {r.ready_seconds:.1f} s"
    )
    r.metrics = wait_idle(operator)
    r.idle_seconds = time.monotonic() - started

    cpu_idle, writes_after, kcm_after = (
        cpu_snapshot(pids),
        apiserver_writes(cluster),
        controller_manager_client(cluster),
    )
    r.cpu_first_pass, r.cpu_rest = cpu_between(cpu_before, cpu_observed), cpu_between(cpu_observed, cpu_idle)
    r.peak_rss_kib, r.idle_rss_kib = proc_status_kib(pid, "VmHWM"), proc_status_kib(pid, "VmRSS")
    delta = writes_after - writes_before
    r.writes = {
        label: sum(n for (*kind, _code), n in delta.items() if tuple(kind) == key)
        for key, label in OPERATOR_WRITES.items()
    }
    r.writes["post Event"] = operator_events(core, namespace)
    # Refused by a precondition (409): counted in the writes above, shown apart too.
    r.conflicts = sum(
        n for (*kind, code), n in delta.items() if tuple(kind) in OPERATOR_WRITES and code == "409"
    )
    r.kcm_requests = kcm_after[0] - kcm_before[0]
    r.kcm_throttled_seconds = kcm_after[1] - kcm_before[1]


def run_round(cluster: LocalCluster, api: ApiClient, workers: int, logs: Path, last: bool) -> Round:
    """A fresh namespace and operator; measure; stop the operator; delete the namespace unless last."""
    core = CoreV1Api(api)
    result = Round(workers)
    namespace = f"bench-w{workers}-{uuid.uuid4().hex[:6]}"
    create_namespace(core, namespace)
    operator = OperatorProcess(cluster.kubeconfig, logs / f"operator-w{workers}.log", workers=str(workers))
    try:
        operator.start()
        measure(cluster, api, operator, namespace, result)
    finally:
        operator.stop()
    result.log_warnings, result.log_errors, result.log_samples = log_summary(operator.log)
    log(f"workers={workers}: done, idle after {result.idle_seconds:.1f} s")
    if not last:  # the last namespace goes with the cluster
        delete_namespace(core, namespace)
    return result


# --------------------------------------------------------------------------- report


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def pinned_versions() -> dict[str, str]:
    pins = {}
    for line in (REPO / "hack" / "versions.env").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.startswith("#"):
            pins[name.strip()] = value.strip()
    return pins


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def print_table(header: list[str], rows: list[list[str]], *, numbers: bool = True) -> None:
    """A markdown table; with ``numbers`` every column but the first is right-aligned."""
    print("| " + " | ".join(header) + " |")
    print("|---|" + ("---:|" if numbers else "---|") * (len(header) - 1))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def print_setup(load_before: str, total_seconds: float) -> None:
    pins = pinned_versions()
    kopf, client = importlib.metadata.version("kopf"), importlib.metadata.version("kubernetes")
    rows = [
        ["date", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")],
        ["machine", f"nproc {os.cpu_count()}, {cpu_model()}, Linux {platform.release()}"],
        ["Python", f"{platform.python_version()} ({platform.python_implementation()})"],
        ["kopf / kubernetes client", f"{kopf} / {client}"],
        [
            "cluster",
            f"Kubernetes {pins['K8S_VERSION']}, etcd {pins['ETCD_VERSION']}, kwok {pins['KWOK_VERSION']}"
            " (one fake node), every process on the same cores as the operator",
        ],
        ["operator", "`kopf run operator/main.py -A`, LABOP_WORKERS = the round's workers, else defaults"],
        [
            "load",
            f"{LABSERVERS} LabServers (replicas 1) created at once by {CREATE_THREADS} threads sharing one"
            f" kubernetes-client ApiClient; a fresh namespace and operator per round; progress polled every"
            f" {POLL} s by listing the namespace",
        ],
        ["load average", f"{load_before} before the run, {load_average()} after it"],
        ["whole run", f"{total_seconds:.0f} s"],
    ]
    print_table(["setup", ""], rows, numbers=False)


def print_rounds(rounds: list[Round]) -> None:
    rows = []
    for r in rounds:
        m = r.metrics
        assert m is not None
        rec = m.reconciles
        requeues = rec.get("requeue", 0) + rec.get("requeue_after", 0)
        rows.append(
            [
                str(r.workers),
                f"{r.ready_seconds:.1f} s",
                f"{r.per_second:.1f}",
                f"{r.create_seconds:.1f} s",
                f"{r.observed_seconds:.1f} s",
                f"{rec.get('success', 0)} / {rec.get('error', 0)} / {requeues}",
                str(m.adds),
                str(m.retries),
                f"{m.reconcile_mean * 1000:.0f} ms",
                f"{m.queue_wait_mean * 1000:.0f} ms",
                mib(r.peak_rss_kib),
            ]
        )
    header = [
        "workers",
        "to all Ready",
        "LabServers/s",
        "creates took",
        "all observed",
        "reconciles success / error / requeue",
        "queue adds",
        "retries",
        "mean reconcile",
        "mean queue wait",
        "peak RSS (VmHWM)",
    ]
    print_table(header, rows)


def print_writes(rounds: list[Round]) -> None:
    labels = list(rounds[0].writes)
    rows = [
        [
            str(r.workers),
            *(str(r.writes[label]) for label in labels),
            str(r.conflicts),
            f"{sum(r.writes.values()) / LABSERVERS:.1f}",
        ]
        for r in rounds
    ]
    print_table(["workers", *labels, "of which 409", "per LabServer"], rows)


def print_cpu(rounds: list[Round]) -> None:
    names = list(rounds[0].cpu_first_pass)
    rows = []
    for r in rounds:
        phases = (
            (f"first pass, 0 to {r.observed_seconds:.1f} s", r.observed_seconds, r.cpu_first_pass),
            (f"rest, to idle at {r.idle_seconds:.1f} s", r.idle_seconds - r.observed_seconds, r.cpu_rest),
        )
        for label, wall, cpu in phases:
            total = sum(cpu.values())
            cores = f"{total / wall:.2f}" if wall > 0 else "-"
            rows.append(
                [f"{r.workers}: {label}", *(f"{cpu[name]:.1f}" for name in names), f"{total:.1f}", cores]
            )
    print_table(["workers: phase", *names, "total", "cores busy"], rows)


def print_report(rounds: list[Round], load_before: str, total_seconds: float) -> None:
    print_setup(load_before, total_seconds)
    print_rounds(rounds)
    print(
        "API writes by the operator per round"
        " (apiserver_request_total deltas; Events by reportingComponent):\n"
    )
    print_writes(rounds)
    print("CPU seconds per process (first pass: until every LabServer had its first status write):\n")
    print_cpu(rounds)
    print("kube-controller-manager's API requests per round, and the seconds they spent in total waiting")
    print("on its client-side rate limiters (client-go's token buckets, one per controller's client):\n")
    print_table(
        ["workers", "requests", "waited on rate limiters"],
        [[str(r.workers), str(r.kcm_requests), f"{r.kcm_throttled_seconds:.0f} s"] for r in rounds],
    )
    largest = rounds[-1]
    print(
        f"Operator memory, {largest.workers} workers: {mib(largest.start_rss_kib)} RSS when ready with an"
        f" empty cluster, {mib(largest.idle_rss_kib)} RSS idle with {LABSERVERS} Ready LabServers"
        f" (peak {mib(largest.peak_rss_kib)}).\n"
    )
    for r in rounds:
        found = "; ".join(r.log_samples) or "none"
        print(
            f"Operator log, {r.workers} workers: {r.log_warnings} WARNING,"
            f" {r.log_errors} ERROR lines ({found})."
        )


# --------------------------------------------------------------------------- main


def raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: operator stopped, cluster destroyed


def run_rounds(cluster: LocalCluster, logs: Path) -> list[Round]:
    api = api_client(cluster.kubeconfig)
    try:
        poll_until("the apiserver to serve LabServers", lambda: crd_served(CustomObjectsApi(api)), 60)
        return [run_round(cluster, api, w, logs, last=w == WORKER_COUNTS[-1]) for w in WORKER_COUNTS]
    finally:
        api.close()  # type: ignore[no-untyped-call]  # unannotated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keep-logs", type=Path, help="copy the operator's logs (one per round) into this folder"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    load_before = load_average()
    began = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="k8s-lab-bench-"))
    logs = root / "operator-logs"
    logs.mkdir()
    try:
        with local_cluster(root / "cluster") as cluster:
            rounds = run_rounds(cluster, logs)
    finally:
        if args.keep_logs is not None:
            shutil.copytree(logs, args.keep_logs, dirs_exist_ok=True)
        shutil.rmtree(root, ignore_errors=True)
    print_report(rounds, load_before, time.monotonic() - began)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # everything was stopped and removed on the way out
        sys.exit("interrupted; the cluster and the operator were stopped")

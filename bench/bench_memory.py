"""Memory per LabServer, by owner, and the writes of a restart (a benchmark, not a test).

Run from the repo root: `.venv/bin/python bench/bench_memory.py --count 2000 --out /tmp/mem`
(`--no-trace` skips the tracemalloc runs; `--analyze BASE LOADED N` prints the breakdown of two
snapshots already taken). Results go to bench/memory.md by hand.

How: a local cluster (`hack/localcluster`, controller-manager client limits raised to qps 500 /
burst 1000 so that its rate limits do not pace the Deployments' status), then four operator runs
as users run them (`kopf run operator/main.py -A`, through the tests' `OperatorProcess`):

1. traced (tracemalloc, 12 frames, after the heavy imports; bench/memtrace/sitecustomize.py),
   empty cluster: the baseline snapshot;
2. untraced, empty cluster: the idle RSS; then N LabServers (replicas 0) created by 16 threads,
   all Ready, idle: VmRSS and VmHWM;
3. traced, restarted over the N Ready LabServers: idle, then the loaded snapshot, and the
   operator's writes during the restart (deltas of the apiserver's `apiserver_request_total`:
   apply of Deployments and Services, apply/patch of LabServer status, Event creates);
4. untraced, restarted again: VmRSS idle and VmHWM (the initial LIST's peak) and its writes.

The breakdown attributes each live allocation (loaded minus baseline) to the innermost frame of
a known owner (our cache entries, the reconciler, the runtime, kopf's per-object memory, kopf's
index structures, kopf's watch/list JSON, ...). Strings a later owner keeps alive stay with the
allocator (tracemalloc knows who allocated, not who holds).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from kubernetes.client import CustomObjectsApi  # noqa: E402
from localcluster import ClusterSettings, LocalCluster, binaries  # noqa: E402
from opbench.common import (  # noqa: E402
    GROUP,
    PLURAL,
    VERSION,
    WRITE_KINDS,
    install_crd,
    load_average,
    log,
    proc_status_kib,
)
from opbench.common import apiserver_requests as apiserver_writes  # noqa: E402
from opbench.common import client as api_client  # noqa: E402
from opbench.common import create_namespace as _create_namespace  # noqa: E402
from opbench.tracker import is_ready  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from tests.support.operator import OperatorProcess  # noqa: E402

MEMTRACE = REPO / "bench" / "memtrace"
# The writes a restart must not make: the bench's kinds (opbench.common), plus the Events.
WRITES = {**WRITE_KINDS, ("POST", "events", ""): "create Event"}
# (path fragment of a frame, owner): the innermost frame matching any of these names the owner.
OWNERS = (
    ("labop/cache.py", "labop.cache entries"),
    ("labop/reconciler.py", "labop.reconciler"),
    ("labop/runtime/", "labop.runtime (queue, limiter, metrics)"),
    ("labop/handlers.py", "labop.handlers (index keys)"),
    ("labop/", "labop other"),
    ("kopf/_core/reactor/inventory.py", "kopf per-object memory (ResourceMemory, memo copy)"),
    ("kopf/_core/engines/indexing.py", "kopf index structures"),
    ("kopf/_core/reactor/queueing.py", "kopf per-object streams/workers"),
    ("kopf/_core/reactor/processing.py", "kopf processing"),
    ("kopf/_cogs/clients/", "kopf watch/list JSON (bodies)"),
    ("kopf/", "kopf other"),
    ("prometheus_client/", "prometheus_client"),
    ("kubernetes/", "kubernetes client"),
    ("urllib3/", "urllib3"),
    ("aiohttp/", "aiohttp"),
)


# The operator collects garbage once its queue is idle (labop.memory): a reading that soon after
# idle may come before that.
SETTLE = 15


def owner_of(trace: tracemalloc.Traceback) -> str:
    for frame in reversed(trace):  # innermost first
        for fragment, owner in OWNERS:
            if fragment in frame.filename:
                return owner
    return "other: " + Path(trace[-1].filename).name if len(trace) else "other"


def breakdown(base: tracemalloc.Snapshot, loaded: tracemalloc.Snapshot, count: int) -> str:
    by_owner: Counter[str] = Counter()
    for stat in loaded.compare_to(base, "traceback"):
        by_owner[owner_of(stat.traceback)] += stat.size_diff
    total = sum(by_owner.values())
    lines = [f"| owner | bytes per LabServer (N={count}) |", "|---|---:|"]
    for owner, size in by_owner.most_common():
        if abs(size) / count >= 20:
            lines.append(f"| {owner} | {size / count:,.0f} |")
    lines.append(f"| **total traced** | **{total / count:,.0f}** |")
    top = loaded.compare_to(base, "lineno")[:25]
    lines.append("\nTop allocation sites (loaded - baseline), bytes per LabServer:\n")
    lines += [
        f"    {s.size_diff / count:8,.0f}  {s.traceback[0].filename}:{s.traceback[0].lineno}" for s in top
    ]
    return "\n".join(lines)


def writes_between(before: Counter[Any], after: Counter[Any]) -> dict[str, int]:
    delta = after - before
    return {
        label: n
        for key, label in WRITES.items()
        if (n := sum(v for (*kind, _code), v in delta.items() if tuple(kind) == key))
    }


def metric_sum(op: OperatorProcess, name: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(op.metrics_text()):
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
    return total


def wait_idle(op: OperatorProcess, count: int, timeout: float = 1800.0) -> None:
    """At least ``count`` reconciles done, then none started and no worker busy for 5 polls 1 s
    apart (before its first reconcile an operator still listing looks idle too)."""
    quiet, last, deadline = 0, -1.0, time.monotonic() + timeout
    while quiet < 5:
        if time.monotonic() > deadline:
            raise TimeoutError("operator not idle")
        time.sleep(1)
        try:
            total = metric_sum(op, "controller_runtime_reconcile_total")
            busy = metric_sum(op, "controller_runtime_active_workers")
        except (OSError, AssertionError):  # too busy to answer /metrics (tracemalloc, a loaded machine)
            quiet = 0
            continue
        quiet = quiet + 1 if total >= count and total == last and busy == 0 else 0
        last = total


def poll(what: str, probe: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(2)


def create_labservers(custom: CustomObjectsApi, namespace: str, count: int) -> None:
    def create(index: int) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "LabServer",
            "metadata": {"name": f"mem-{index:05d}"},
            "spec": {"replicas": 0},
        }
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(create, range(count)))


def ready_count(custom: CustomObjectsApi, namespace: str) -> int:
    items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    return sum(1 for ls in items if is_ready(ls))


def operator(cluster: LocalCluster, out: Path, name: str, *, trace: bool) -> OperatorProcess:
    op = OperatorProcess(cluster.kubeconfig, out / f"{name}.log", resync_seconds="0")
    # This checkout's labop, not the editable install's (a copy of another commit measures it).
    op.extra_env = {"PYTHONPATH": str(REPO / "operator")}
    if trace:
        op.extra_env = {
            "PYTHONPATH": f"{MEMTRACE}:{REPO / 'operator'}",
            "MEMTRACE_OUT": str(out / f"{name}.snap"),
        }
    op.start(ready_timeout=900)  # a traced restart over thousands of objects syncs slowly
    return op


def snapshot(op: OperatorProcess, out: Path, name: str) -> tracemalloc.Snapshot:
    assert op.proc is not None
    path = out / f"{name}.snap"
    os.kill(op.proc.pid, signal.SIGUSR2)  # who holds the raw bodies: NAME.snap.refs
    os.kill(op.proc.pid, signal.SIGPWR)  # who iterates the list holding them: NAME.snap.iters
    poll("referrers", (out / f"{name}.snap.refs").exists, 300)
    os.kill(op.proc.pid, signal.SIGUSR1)
    poll("snapshot", path.exists, 300)
    return tracemalloc.Snapshot.load(str(path))


def rss(op: OperatorProcess) -> tuple[int, int]:
    assert op.proc is not None
    return proc_status_kib(op.proc.pid, "VmRSS"), proc_status_kib(op.proc.pid, "VmHWM")


def run(count: int, out: Path, trace: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    log(f"load before: {load_average()}")
    root = Path(tempfile.mkdtemp(prefix="k8s-lab-bench-mem-"))
    flags = {"kube-controller-manager": ["--kube-api-qps=500", "--kube-api-burst=1000"]}
    cluster = LocalCluster(ClusterSettings(root=root, bin_dir=binaries.bin_dir(), extra_flags=flags))
    try:
        cluster.start_control_plane()
        cluster.start_workloads()
        install_crd(cluster)
        api = api_client(cluster.kubeconfig).__enter__()  # closed with the process
        custom = CustomObjectsApi(api)
        if trace:
            op = operator(cluster, out, "base", trace=True)
            time.sleep(10)
            snapshot(op, out, "base")
            op.stop()
        op = operator(cluster, out, "first", trace=False)
        time.sleep(10)
        log(f"idle, empty: VmRSS, VmHWM = {rss(op)} KiB")
        namespace = f"mem-{uuid.uuid4().hex[:6]}"
        _create_namespace(api, namespace)
        started = time.monotonic()
        create_labservers(custom, namespace, count)
        log(f"{count} created in {time.monotonic() - started:.0f} s")
        poll("all Ready", lambda: ready_count(custom, namespace) == count, 3600)
        log(f"all Ready after {time.monotonic() - started:.0f} s")
        wait_idle(op, count)
        log(f"first run, idle with {count}: VmRSS, VmHWM = {rss(op)} KiB")
        time.sleep(SETTLE)
        log(f"first run, {SETTLE} s later: VmRSS, VmHWM = {rss(op)} KiB")
        op.stop()
        for name, traced in (("restart-traced", True), ("restart", False)):
            if traced and not trace:
                continue
            before = apiserver_writes(cluster)
            started = time.monotonic()
            op = operator(cluster, out, name, trace=traced)
            wait_idle(op, count)
            log(f"{name}: idle {time.monotonic() - started:.0f} s after start (5 s quiet included)")
            log(f"{name}: writes {writes_between(before, apiserver_writes(cluster))}")
            log(f"{name}: VmRSS, VmHWM = {rss(op)} KiB")
            time.sleep(SETTLE)
            log(f"{name}, {SETTLE} s later: VmRSS, VmHWM = {rss(op)} KiB")
            if traced:
                loaded = snapshot(op, out, name)
                base = tracemalloc.Snapshot.load(str(out / "base.snap"))
                report = breakdown(base, loaded, count)
                (out / "breakdown.md").write_text(report)
                print(report)
            op.stop()
        log(f"load after: {load_average()}")
    finally:
        cluster.destroy()


def raise_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # the finally blocks stop the operator and the cluster


def main() -> None:
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/k8s-lab-mem"))
    parser.add_argument("--no-trace", action="store_true")
    parser.add_argument("--analyze", nargs=3, metavar=("BASE", "LOADED", "N"))
    args = parser.parse_args()
    if args.analyze:
        base, loaded, n = args.analyze
        print(breakdown(tracemalloc.Snapshot.load(base), tracemalloc.Snapshot.load(loaded), int(n)))
        return
    run(args.count, args.out, not args.no_trace)


if __name__ == "__main__":
    main()

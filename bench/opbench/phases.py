"""The phases of `make bench-operator`, each on a fresh local cluster, each returning a dict
(one entry of the results JSON).

* ``scale``: N LabServers (replicas 1) created at once; ``kind`` "floor" (the plain client of
  ``opbench.floor``) or "operator"; time to all observed / all Ready, writes by kind, CPU, RSS.
* ``restart``: N LabServers (replicas 0) brought to Ready, the operator stopped (SIGTERM) and
  started again: its writes until idle (goal 0), time to idle, RSS, and the latency of one
  LabServer created right after the restarted operator answered /readyz.
* ``memory``: N LabServers (replicas 0) to Ready; RSS at idle; then one resync period: were
  all keys resynced (``controller_resync_*`` counters where the operator has them).
* ``profile``: a scale round of the operator under py-spy, the flame graph kept.

Why a fresh cluster per phase: starting one takes seconds, deleting a namespace of thousands of
objects takes minutes, and no phase then inherits another's leftovers (GC, events, etcd size).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi
from localcluster import LocalCluster, processes

from opbench.common import (
    GROUP,
    NAMESPACE,
    PLURAL,
    REPO,
    VERSION,
    a_labserver,
    apiserver_requests,
    client,
    cluster_pids,
    cpu_between,
    cpu_snapshot,
    create_labservers,
    fresh_cluster,
    log,
    operator_events,
    poll_until,
    proc_status_kib,
    writes_between,
)
from opbench.operatorrun import BenchOperator, Metrics, scrape, wait_idle
from opbench.tracker import Tracker

NEW_NAME = "ls-new"


@dataclass(frozen=True)
class Options:
    root: Path  # temp folder: clusters and logs
    src: Path  # the operator's checkout
    workers: int | None  # None: the operator's default
    profiles: Path  # where --profile keeps its flame graph
    label: str
    profile_format: str = "flamegraph"  # py-spy's --format: flamegraph (SVG), speedscope (JSON) or raw
    floor_threads: int = 8  # the floor's writer threads (concurrent requests)

    def operator(self, cluster: LocalCluster, name: str, **settings: str) -> BenchOperator:
        if self.workers is not None:
            settings.setdefault("workers", str(self.workers))
        return BenchOperator(cluster.kubeconfig, self.root / "logs" / f"{name}.log", self.src, **settings)


# Waits (to Ready, to idle) scale with N: 180 s + 0.6 s per LabServer, times TIMEOUT_FACTOR
# (--timeout-factor: a shared or slow machine needs more; a quiet 2-core machine needs a third).
TIMEOUT_FACTOR = [1.0]


def ready_timeout(n: int) -> float:
    return (180.0 + n * 0.6) * TIMEOUT_FACTOR[0]


def wait_all(
    tracker: Tracker, n: int, started: float, pids: dict[str, int]
) -> tuple[float, float, dict[str, float]]:
    """(seconds to all observed, to all Ready, CPU snapshot at all observed)."""
    at_observed: dict[str, float] = {}
    last_report = [time.monotonic()]

    def all_ready() -> bool:
        observed, ready = tracker.counts()
        if observed >= n and not at_observed:
            at_observed.update(cpu_snapshot(pids))
        if time.monotonic() - last_report[0] > 15:
            last_report[0] = time.monotonic()
            log(f"  {time.monotonic() - started:.0f} s: {observed} observed, {ready} Ready of {n}")
        return ready >= n

    poll_until(f"{n} LabServers Ready", all_ready, ready_timeout(n), every=0.1)
    if not at_observed:
        at_observed.update(cpu_snapshot(pids))
    observed_at = sorted(tracker.observed.values())[n - 1] - started
    ready_at = sorted(tracker.ready.values())[n - 1] - started
    return observed_at, ready_at, at_observed


def metrics_dict(m: Metrics) -> dict[str, Any]:
    return {
        "reconciles": m.reconciles,
        "reconciles_by_result": m.reconciles_by_result,
        "queue_adds": m.adds,
        "retries": m.retries,
        "mean_reconcile_ms": round(1000 * m.reconcile_sum / m.reconcile_count, 1)
        if m.reconcile_count
        else None,
        "mean_queue_wait_ms": round(1000 * m.queue_wait_sum / m.queue_wait_count, 1)
        if m.queue_wait_count
        else None,
    }


def writes_entry(
    api: ApiClient, cluster: LocalCluster, before: Any, n: int, events_before: int = 0
) -> dict[str, Any]:
    writes, conflicts = writes_between(before, apiserver_requests(cluster))
    writes["Events"] = operator_events(api) - events_before
    return {
        "writes": writes,
        "writes_409": conflicts,
        "writes_per_labserver": {k: round(v / n, 2) for k, v in writes.items()} if n else {},
        "writes_total_per_labserver": round(sum(writes.values()) / n, 2) if n else None,
    }


def settle_baseline(operator: BenchOperator) -> int:
    """The operator's RSS (KiB) idle on an empty cluster, started and ready."""
    wait_idle(operator, 60)
    return proc_status_kib(operator.pid, "VmRSS")


# The operator's idle collection (labop.memory: a full collection and malloc_trim) runs within
# about 12 s of the queue going idle (checked every 2 s, at most every 10 s).
SETTLE_SECONDS = 20.0


def settled_rss(operator: BenchOperator) -> int:
    """RSS (KiB) SETTLE_SECONDS after idle: what an idle operator keeps, not its last burst."""
    time.sleep(SETTLE_SECONDS)  # a measurement's definition, not a synchronisation
    return int(proc_status_kib(operator.pid, "VmRSS"))


# --------------------------------------------------------------------------- scale rounds


def start_floor(cluster: LocalCluster, opts: Options, name: str) -> processes.Proc:
    ready_file = opts.root / f"{name}.ready"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "bench"), str(REPO)])}
    argv = [
        sys.executable,
        "-m",
        "opbench.floor",
        "--kubeconfig",
        str(cluster.kubeconfig),
        "--namespace",
        NAMESPACE,
        "--ready-file",
        str(ready_file),
        "--threads",
        str(opts.floor_threads),
    ]
    proc = processes.spawn("floor", argv, opts.root / "logs" / f"{name}.log", detach=False, env=env)
    processes.wait_for("the floor's watches", ready_file.exists, timeout=60, watch=[proc])
    return proc


def scale(opts: Options, kind: str, n: int, *, profile: bool = False) -> dict[str, Any]:
    """One scale round: the floor or the operator, N LabServers (replicas 1) to Ready."""
    name = f"{'profile' if profile else kind}-{n}"
    began = time.monotonic()
    entry: dict[str, Any] = {"phase": "profile" if profile else kind, "n": n, "replicas": 1}
    if kind == "floor":
        entry["floor_threads"] = opts.floor_threads
    with fresh_cluster(opts.root, name) as cluster, client(cluster.kubeconfig) as api:
        operator: BenchOperator | None = None
        floor: processes.Proc | None = None
        spy: subprocess.Popen[bytes] | None = None
        try:
            if kind == "floor":
                floor = start_floor(cluster, opts, name)
                pid = floor.pid
            else:
                operator = opts.operator(cluster, name)
                operator.start()
                pid = operator.pid
                entry["rss_baseline_kib"] = settle_baseline(operator)
            pids = {**cluster_pids(cluster), kind: pid}
            with Tracker(api) as tracker:
                writes_before, cpu_before = apiserver_requests(cluster), cpu_snapshot(pids)
                if profile:
                    spy, svg = start_profiler(opts, pid, n)
                started = time.monotonic()
                entry["create_seconds"] = round(create_labservers(api, n, replicas=1), 2)
                observed, ready, cpu_observed = wait_all(tracker, n, started, pids)
                if spy is not None:
                    entry["profile"] = stop_profiler(spy, svg)
                    spy = None
                log(f"{name}: all observed after {observed:.1f} s, all Ready after {ready:.1f} s")
                if operator is not None:
                    entry.update(metrics_dict(wait_idle(operator, ready_timeout(n))))
                else:
                    time.sleep(1.0)  # nothing of the floor's is left in flight once all are Ready
                entry["idle_seconds"] = round(time.monotonic() - started, 2)
                cpu_idle = cpu_snapshot(pids)
            entry.update(observed_seconds=round(observed, 2), ready_seconds=round(ready, 2))
            entry.update(writes_entry(api, cluster, writes_before, n))
            entry["cpu_first_pass"] = cpu_between(cpu_before, cpu_observed)
            entry["cpu"] = cpu_between(cpu_before, cpu_idle)
            entry["client_cpu_ms_per_labserver"] = round(1000 * entry["cpu"][kind] / n, 1)
            entry["apiserver_cpu"] = entry["cpu"]["kube-apiserver"]
            entry["rss_peak_kib"] = proc_status_kib(pid, "VmHWM")
            entry["rss_end_kib"] = proc_status_kib(pid, "VmRSS")
            if "reconciles" in entry:
                entry["reconciles_per_labserver"] = round(entry["reconciles"] / n, 2)
        finally:
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
            if operator is not None:
                operator.stop()
            if floor is not None:
                processes.stop(floor, timeout=10)
    entry["phase_seconds"] = round(time.monotonic() - began, 1)
    log(f"{name}: done in {entry['phase_seconds']:.0f} s")
    return entry


def start_profiler(opts: Options, pid: int, n: int) -> tuple[subprocess.Popen[bytes], Path]:
    opts.profiles.mkdir(parents=True, exist_ok=True)
    suffix = {"flamegraph": "svg", "speedscope": "speedscope.json", "raw": "txt"}[opts.profile_format]
    svg = opts.profiles / f"{time.strftime('%Y-%m-%d')}-{opts.label}-operator-n{n}.{suffix}"
    spy_bin = Path(sys.executable).parent / "py-spy"
    argv = [
        str(spy_bin),
        "record",
        "-o",
        str(svg),
        "--pid",
        str(pid),
        "--rate",
        "100",
        "--subprocesses",
        "--format",
        opts.profile_format,
    ]
    out = (opts.root / "logs" / "py-spy.log").open("ab")
    spy = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    time.sleep(1.0)  # attached before the load starts
    return spy, svg


def stop_profiler(spy: subprocess.Popen[bytes], svg: Path) -> str:
    spy.send_signal(signal.SIGINT)  # py-spy writes the flame graph when interrupted
    spy.wait(60)
    rel = svg.relative_to(REPO) if svg.is_relative_to(REPO) else svg
    log(f"profile: flame graph in {rel}")
    return str(rel)


# --------------------------------------------------------------------------- restart


def bring_up(
    opts: Options,
    cluster: LocalCluster,
    api: ApiClient,
    operator: BenchOperator,
    tracker: Tracker,
    n: int,
    entry: dict[str, Any],
) -> None:
    """N LabServers, replicas 0, to Ready, then idle; fills bring-up figures into ``entry``."""
    started = time.monotonic()
    entry["create_seconds"] = round(create_labservers(api, n, replicas=0), 2)
    observed, ready, _ = wait_all(tracker, n, started, {"operator": operator.pid})
    log(f"  all observed after {observed:.1f} s, all Ready after {ready:.1f} s")
    wait_idle(operator, ready_timeout(n))
    entry.update(
        bringup_observed_seconds=round(observed, 2),
        bringup_ready_seconds=round(ready, 2),
        bringup_idle_seconds=round(time.monotonic() - started, 2),
    )


def restart(opts: Options, n: int) -> dict[str, Any]:
    name = f"restart-{n}"
    began = time.monotonic()
    entry: dict[str, Any] = {"phase": "restart", "n": n, "replicas": 0}
    with fresh_cluster(opts.root, name) as cluster, client(cluster.kubeconfig) as api:
        first = opts.operator(cluster, f"{name}-first")
        second: BenchOperator | None = None
        try:
            first.start()
            entry["rss_baseline_kib"] = settle_baseline(first)
            with Tracker(api) as tracker:
                bring_up(opts, cluster, api, first, tracker, n, entry)
                entry["rss_before_restart_kib"] = proc_status_kib(first.pid, "VmRSS")
                first.terminate()
                writes_before, events_before = apiserver_requests(cluster), operator_events(api)
                changes_before = tracker.status_changes[NEW_NAME]
                second = opts.operator(cluster, f"{name}-second")
                spawned = time.monotonic()
                second.start(ready_timeout(n))  # returns once /readyz answers 200: caches synced
                created = time.monotonic()
                entry["readyz_seconds"] = round(created - spawned, 2)
                CustomObjectsApi(api).create_namespaced_custom_object(
                    GROUP, VERSION, NAMESPACE, PLURAL, a_labserver(NEW_NAME, 0), _preload_content=False
                )
                poll_until(
                    "the new LabServer Ready", lambda: NEW_NAME in tracker.ready, ready_timeout(n), 0.05
                )
                entry["new_observed_seconds"] = round(tracker.observed[NEW_NAME] - created, 3)
                entry["new_ready_seconds"] = round(tracker.ready[NEW_NAME] - created, 3)
                log(
                    f"  new LabServer: observed {entry['new_observed_seconds']:.2f} s,"
                    f" Ready {entry['new_ready_seconds']:.2f} s after its create"
                )
                idle = wait_idle(second, ready_timeout(n), min_adds=n)
                entry["restart_idle_seconds"] = round(time.monotonic() - spawned, 2)
                entry.update(metrics_dict(idle))
                new_status_writes = tracker.status_changes[NEW_NAME] - changes_before
            writes, conflicts = writes_between(writes_before, apiserver_requests(cluster))
            writes["Events"] = operator_events(api) - events_before
            new_events = len(
                CoreV1Api(api)
                .list_namespaced_event(NAMESPACE, field_selector=f"involvedObject.name={NEW_NAME}")
                .items
            )
            entry["restart_writes"] = writes
            entry["restart_writes_409"] = conflicts
            # What the one new LabServer needed (its two applies, status writes, Events), so that
            # what remains is what the restart itself cost (goal: 0).
            own = {
                "apply Deployment": 1,
                "apply Service": 1,
                "status writes": new_status_writes,
                "Events": new_events,
            }
            entry["restart_writes_new_labserver"] = own
            entry["restart_writes_excluding_new"] = {k: v - own.get(k, 0) for k, v in writes.items()}
            entry["rss_idle_kib"] = proc_status_kib(second.pid, "VmRSS")
            entry["rss_settled_kib"] = settled_rss(second)
            entry["rss_peak_kib"] = proc_status_kib(second.pid, "VmHWM")
        finally:
            first.stop()
            if second is not None:
                second.stop()
    entry["per_labserver_kib"] = round((entry["rss_idle_kib"] - entry["rss_baseline_kib"]) / n, 2)
    entry["per_labserver_settled_kib"] = round((entry["rss_settled_kib"] - entry["rss_baseline_kib"]) / n, 2)
    entry["phase_seconds"] = round(time.monotonic() - began, 1)
    log(f"{name}: done in {entry['phase_seconds']:.0f} s")
    return entry


# --------------------------------------------------------------------------- memory and resync


def memory(opts: Options, n: int, resync_seconds: float) -> dict[str, Any]:
    """RSS with N LabServers from an operator with default settings; then the resync check from a
    second operator with LABOP_RESYNC_SECONDS=``resync_seconds`` (so that no short period
    burdens the bring-up, and the first is measured as users run it)."""
    name = f"memory-{n}"
    began = time.monotonic()
    entry: dict[str, Any] = {"phase": "memory", "n": n, "replicas": 0, "resync_seconds": resync_seconds}
    with fresh_cluster(opts.root, name) as cluster, client(cluster.kubeconfig) as api:
        operator = opts.operator(cluster, name)
        resyncing: BenchOperator | None = None
        try:
            operator.start()
            entry["rss_baseline_kib"] = settle_baseline(operator)
            with Tracker(api) as tracker:
                bring_up(opts, cluster, api, operator, tracker, n, entry)
            entry["rss_idle_kib"] = proc_status_kib(operator.pid, "VmRSS")
            entry["rss_settled_kib"] = settled_rss(operator)
            entry["rss_peak_kib"] = proc_status_kib(operator.pid, "VmHWM")
            entry["per_labserver_kib"] = round((entry["rss_idle_kib"] - entry["rss_baseline_kib"]) / n, 2)
            settled = (entry["rss_settled_kib"] - entry["rss_baseline_kib"]) / n
            entry["per_labserver_settled_kib"] = round(settled, 2)
            log(
                f"  RSS idle {entry['rss_idle_kib'] / 1024:.0f} MiB,"
                f" {entry['per_labserver_kib']:.1f} KiB per LabServer;"
                f" {SETTLE_SECONDS:.0f} s later {entry['rss_settled_kib'] / 1024:.0f} MiB,"
                f" {entry['per_labserver_settled_kib']:.1f} KiB per LabServer"
            )
            operator.terminate()
            resyncing = opts.operator(cluster, f"{name}-resync", resync_seconds=str(resync_seconds))
            resyncing.start()
            wait_idle(resyncing, ready_timeout(n), min_adds=n)  # its initial relist done
            entry["resync"] = one_resync(resyncing, n, resync_seconds)
        finally:
            operator.stop()
            if resyncing is not None:
                resyncing.stop()
    entry["phase_seconds"] = round(time.monotonic() - began, 1)
    log(f"{name}: done in {entry['phase_seconds']:.0f} s")
    return entry


def one_resync(operator: BenchOperator, n: int, period: float) -> dict[str, Any]:
    """From idle: wait for the next resync to start (queue adds grow), then for idle again, but
    no longer than one period (a pass slower than its period never idles: said so, not hung)."""
    before = scrape(operator)
    log(f"  waiting for the next resync (period {period:.0f} s)")
    poll_until("a resync to start", lambda: scrape(operator).adds > before.adds, period + 120, every=0.5)
    started = time.monotonic()
    try:
        after = wait_idle(operator, period)
        idle = True
    except TimeoutError:
        after = scrape(operator)
        idle = False
    took = time.monotonic() - started
    # The pass may end before idle: a resync counter of newer code says how many keys it reached.
    keys = (
        None
        if after.resync_keys is None or before.resync_keys is None
        else after.resync_keys - before.resync_keys
    )
    passes = (
        None
        if after.resync_passes is None or before.resync_passes is None
        else after.resync_passes - before.resync_passes
    )
    reconciles = after.reconciles - before.reconciles
    result = {
        "reconciles": reconciles,
        "queue_adds": after.adds - before.adds,
        "resync_keys": keys,
        "resync_passes": passes,
        "idle_within_period": idle,
        "seconds": round(took, 1),
        "every_key": (keys >= n) if keys is not None else (reconciles >= n),
        "judged_by": "controller_resync_keys_total"
        if keys is not None
        else "controller_runtime_reconcile_total",
    }
    log(f"  resync: {json.dumps(result)}")
    return result

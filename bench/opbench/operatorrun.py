"""The operator as users run it (``kopf run DIR/operator/main.py -A``), from this checkout or
from another one (``--operator-src DIR``, e.g. a worktree of an older commit), and its figures.

Why another checkout works: ``kopf run`` puts the file's folder (DIR/operator) first on
sys.path, so ``labop`` comes from there; ``labkit`` would still come from this checkout's
editable install, so DIR/shared goes first on PYTHONPATH. kopf and every other dependency come
from this venv (the lock is the same on both sides of issue 13, bar the bench's own extras).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from localcluster import processes
from prometheus_client.parser import text_string_to_metric_families
from tests.support.operator import OperatorProcess

from opbench.common import REPO, log, poll_until

IDLE_QUIET_POLLS = 5  # idle = this many polls (0.2 s apart) in a row with no new queue add


class BenchOperator(OperatorProcess):
    """OperatorProcess with a source folder of its choice; the rest (ports, /readyz, stop) is the tests'."""

    def __init__(self, kubeconfig: Path, log_file: Path, src: Path, **settings: str) -> None:
        super().__init__(kubeconfig, log_file, **settings)
        self.src = src
        self.started_at = 0.0

    def start(self, ready_timeout: float = 120) -> None:
        """Start it and wait for /readyz (a restarted operator is ready once its caches are synced:
        at thousands of LabServers that is a relist, hence ``ready_timeout``)."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE_")}
        path = [str(self.src / "shared"), str(self.src / "operator")]
        if inherited.get("PYTHONPATH"):
            path.append(inherited["PYTHONPATH"])
        env = {
            **inherited,
            "PYTHONPATH": os.pathsep.join(path),
            "KUBECONFIG": str(self.kubeconfig),
            "LABOP_METRICS_PORT": str(self.metrics_port),
            "LABOP_HEALTH_PORT": str(self.health_port),
            "LABOP_BIND_ADDRESS": "127.0.0.1",
            **{f"LABOP_{k.upper()}": v for k, v in self.settings.items()},
            **self.extra_env,
        }
        argv = [sys.executable, "-m", "kopf", "run", str(self.src / "operator" / "main.py"), "-A"]
        self.proc = processes.spawn("operator", argv, self.log, detach=False, env=env)
        processes.wait_for("the operator's /readyz", self.ready, timeout=ready_timeout, watch=[self.proc])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def terminate(self) -> None:
        """SIGTERM and wait, as a Deployment's rollout does (stop() escalates after 40 s)."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGTERM)
        self.stop()


def check_sources(src: Path) -> str:
    """Where labop and labkit come from with ``src``'s paths (a fail-fast check); the commit."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src / "shared"), str(src / "operator")])}
    code = "import labop, labkit; print(labop.__file__); print(labkit.__file__)"
    found = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    for line in found.stdout.split():
        if not Path(line).resolve().is_relative_to(src.resolve()):
            raise SystemExit(f"--operator-src {src}: {line} is not under it")
    from opbench.common import git_commit

    return git_commit(src)


# --------------------------------------------------------------------------- /metrics


@dataclass(frozen=True)
class Metrics:
    reconciles: int
    reconciles_by_result: dict[str, int]
    adds: int
    retries: int
    depth: int
    active_workers: int
    reconcile_sum: float
    reconcile_count: int
    queue_wait_sum: float
    queue_wait_count: int
    resync_keys: int | None  # controller_resync_keys_total (newer code only)
    resync_passes: int | None  # controller_resync_passes_total (newer code only)


def scrape(operator: OperatorProcess) -> Metrics:
    sums: dict[str, float] = {}
    by_result: dict[str, int] = {}
    for family in text_string_to_metric_families(operator.metrics_text()):
        for sample in family.samples:
            if sample.name == "controller_runtime_reconcile_total":
                result = sample.labels.get("result", "")
                by_result[result] = by_result.get(result, 0) + int(sample.value)
            else:  # summed over labels (priority, controller, ...)
                sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return Metrics(
        reconciles=sum(by_result.values()),
        reconciles_by_result=by_result,
        adds=int(sums.get("workqueue_adds_total", 0)),
        retries=int(sums.get("workqueue_retries_total", 0)),
        depth=int(sums.get("workqueue_depth", 0)),
        active_workers=int(sums.get("controller_runtime_active_workers", 0)),
        reconcile_sum=sums.get("controller_runtime_reconcile_time_seconds_sum", 0.0),
        reconcile_count=int(sums.get("controller_runtime_reconcile_time_seconds_count", 0)),
        queue_wait_sum=sums.get("workqueue_queue_duration_seconds_sum", 0.0),
        queue_wait_count=int(sums.get("workqueue_queue_duration_seconds_count", 0)),
        resync_keys=int(sums["controller_resync_keys_total"])
        if "controller_resync_keys_total" in sums
        else None,
        resync_passes=(
            int(sums["controller_resync_passes_total"]) if "controller_resync_passes_total" in sums else None
        ),
    )


def wait_idle(operator: OperatorProcess, timeout: float, min_adds: int = 0) -> Metrics:
    """The operator's metrics once its queue is empty, no worker busy and no key added for
    IDLE_QUIET_POLLS polls, and at least ``min_adds`` keys added so far (a restarted operator
    is not idle before its relist reached the queue) unless it stayed calm for 10 s."""
    quiet = 0
    last: Metrics | None = None

    def idle() -> Metrics | None:
        nonlocal quiet, last
        now = scrape(operator)
        calm = now.depth == 0 and now.active_workers == 0 and last is not None and now.adds == last.adds
        quiet = quiet + 1 if calm else 0
        last = now
        enough = now.adds >= min_adds or quiet >= 50
        return now if quiet >= IDLE_QUIET_POLLS and enough else None

    started = time.monotonic()
    result = poll_until("the operator to go idle", idle, timeout)
    log(f"operator idle after {time.monotonic() - started:.1f} s of waiting")
    return result


def default_src() -> Path:
    return REPO

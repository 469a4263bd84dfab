"""Where an operator's RSS sits after a first pass over N new LabServers (a benchmark, not a test).

Run from the repo root: `.venv/bin/python bench/first_pass_memory.py 3000 /tmp/fp`
(`--operator-src DIR` runs another checkout's operator, e.g. a commit before a change).

How: a fresh local cluster (as `bench_operator.py`'s memory phase: client limits raised, kwok
nodes), the operator started as users run it with `bench/memtrace` on its PYTHONPATH and
MEMSTATS_OUT set; idle RSS; N LabServers (replicas 0) created by 16 threads, all Ready, idle,
RSS 20 s later; then SIGUSR1 makes the operator write its allocators' state (see
`bench/memtrace/sitecustomize.py`): glibc's heap, CPython's arenas and the bytes free inside
them, the object types it tracks. Once on the empty cluster (OUT/baseline.txt) and once loaded
(OUT/loaded.txt); the figures in OUT/summary.txt. Results go to BENCHMARKS.md by hand.
Why this and not tracemalloc: tracing slows the operator several times, which changes the
bursts, and the bursts are what leaves memory behind.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from opbench import phases  # noqa: E402
from opbench.common import client, fresh_cluster, log, poll_until, proc_status_kib  # noqa: E402
from opbench.tracker import Tracker  # noqa: E402


def dump(pid: int, stats: Path, keep_as: Path) -> None:
    """SIGUSR1, then wait for the file the operator writes (in its signal handler)."""
    stats.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    poll_until("the operator's allocator stats", stats.exists, 60)
    stats.replace(keep_as)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int)
    parser.add_argument("out", type=Path)
    parser.add_argument("--operator-src", type=Path, default=REPO)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="first-pass-"))
    opts = phases.Options(root=root, src=args.operator_src.resolve(), workers=None, profiles=root, label="fp")
    stats = args.out / "stats.txt"
    with fresh_cluster(root, f"first-pass-{args.n}") as cluster, client(cluster.kubeconfig) as api:
        operator = opts.operator(cluster, "operator")
        # The operator's PYTHONPATH ends with ours (BenchOperator); sitecustomize acts only where
        # MEMSTATS_OUT is set, i.e. in the operator, not here.
        path = [str(REPO / "bench" / "memtrace"), os.environ.get("PYTHONPATH", "")]
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
        operator.extra_env["MEMSTATS_OUT"] = str(stats)
        try:
            operator.start()
            baseline = phases.settle_baseline(operator)
            dump(operator.pid, stats, args.out / "baseline.txt")
            entry: dict[str, object] = {"n": args.n, "rss_baseline_kib": baseline}
            with Tracker(api) as tracker:
                phases.bring_up(opts, cluster, api, operator, tracker, args.n, entry)
            settled = phases.settled_rss(operator)
            entry.update(
                rss_settled_kib=settled,
                rss_peak_kib=proc_status_kib(operator.pid, "VmHWM"),
                per_labserver_settled_kib=round((settled - baseline) / args.n, 2),
            )
            dump(operator.pid, stats, args.out / "loaded.txt")
        finally:
            operator.stop()
    (args.out / "summary.txt").write_text(json.dumps(entry, indent=1) + "\n")
    log(json.dumps(entry))


if __name__ == "__main__":
    main()

"""End-to-end benchmark of the operator at 100 to 10,000 LabServers (a benchmark, not a test).

Run: `make bench-operator` (full), `make bench-operator-quick`, or by hand from the repo root
`.venv/bin/python bench/bench_operator.py --help`. Markdown for BENCHMARKS.md goes to stdout,
progress (timestamped) to stderr, the figures as JSON to bench/results/<date>-<label>.json
(`make bench-plots` draws them). Each phase runs on a FRESH local cluster (hack/localcluster:
etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok) with the client limits of
kube-controller-manager and kube-scheduler RAISED to qps 500 / burst 1000 (see opbench.common):

1. scale rounds, per N in --sizes: FLOOR (opbench.floor: a plain client making only the writes a
   perfect operator must make) then OPERATOR (`kopf run operator/main.py -A`, default settings
   unless --workers), N LabServers (replicas 1) created at once by 16 threads;
2. --profile: one more operator round at --profile-size under py-spy (flame graph kept in
   bench/profiles/); a round of its own so the profiler slows no measured round;
3. restart, per N in --restart-sizes: N LabServers (replicas 0) to Ready, the operator stopped
   and started again: its writes and time until idle, RSS, a new LabServer's latency;
4. memory at --memory-size: RSS at idle, and one resync period (LABOP_RESYNC_SECONDS).

--operator-src DIR measures another checkout (e.g. `git worktree add /work/before eddb117`):
its labop and labkit, this harness. Clusters, operators and the temp folder are removed on every
exit: normal, error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for folder in (REPO, BENCH):  # tests.support.operator; opbench
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from opbench import phases, report  # noqa: E402
from opbench.common import load_average, log, machine  # noqa: E402
from opbench.operatorrun import check_sources  # noqa: E402

SIZES = (100, 300, 1000, 3000)
QUICK_SIZES = (100, 300, 1000)
PLOTS = ("bench/plots/operator-ready.png", "bench/plots/operator-rss.png", "bench/plots/operator-writes.png")


def sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=sizes, default=list(SIZES), help="scale rounds' N (default 100,300,1000,3000)"
    )
    parser.add_argument("--quick", action="store_true", help="sizes 100,300,1000 (CI-sized machines)")
    parser.add_argument(
        "--restart-sizes", type=sizes, default=[1000, 5000], help="restart phases' N ('' = none)"
    )
    parser.add_argument("--memory-size", type=int, default=10_000, help="memory phase's N (0 = none)")
    parser.add_argument(
        "--resync-seconds", type=float, default=120.0, help="LABOP_RESYNC_SECONDS of the memory phase"
    )
    parser.add_argument("--workers", type=int, default=None, help="LABOP_WORKERS (default: the operator's)")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor rounds")
    parser.add_argument("--floor-threads", type=int, default=8, help="the floor's concurrent writers")
    parser.add_argument(
        "--timeout-factor", type=float, default=1.0, help="scales every wait (180 s + 0.6 s per LabServer)"
    )
    parser.add_argument("--profile", action="store_true", help="one more operator round under py-spy")
    parser.add_argument("--profile-size", type=int, default=1000)
    parser.add_argument(
        "--profile-format",
        choices=("flamegraph", "speedscope", "raw"),
        default="flamegraph",
        help="py-spy's output: flamegraph (SVG), speedscope (JSON, speedscope.app) or raw (collapsed stacks)",
    )
    parser.add_argument("--operator-src", type=Path, default=REPO, help="the checkout whose operator runs")
    parser.add_argument("--label", default="run", help="names the results file, e.g. before / after")
    parser.add_argument("--results", type=Path, default=BENCH / "results")
    parser.add_argument("--keep-logs", type=Path, help="copy the operator and floor logs into this folder")
    parser.add_argument(
        "--markdown-from",
        type=Path,
        help="print the markdown of an earlier results JSON (e.g. a cut-short run)",
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes = list(QUICK_SIZES)
    return args


def raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: operators stopped, clusters destroyed


def run(args: argparse.Namespace, root: Path, results: dict[str, Any]) -> None:
    """Every phase in order; each one's entry is saved as soon as it is done (a long run that
    fails late keeps what it measured). A phase that fails is recorded with its error and the
    run goes on with the next one: its cluster and operator were stopped on the way out."""
    phases.TIMEOUT_FACTOR[0] = args.timeout_factor
    opts = phases.Options(
        root=root,
        src=args.operator_src.resolve(),
        workers=args.workers,
        profiles=BENCH / "profiles",
        label=args.label,
        profile_format=args.profile_format,
        floor_threads=args.floor_threads,
    )
    plan: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    for n in args.sizes:
        if not args.no_floor:
            plan.append((f"floor-{n}", functools.partial(phases.scale, opts, "floor", n)))
        plan.append((f"operator-{n}", functools.partial(phases.scale, opts, "operator", n)))
    if args.profile:
        plan.append(
            ("profile", functools.partial(phases.scale, opts, "operator", args.profile_size, profile=True))
        )
    for n in args.restart_sizes:
        plan.append((f"restart-{n}", functools.partial(phases.restart, opts, n)))
    if args.memory_size:
        plan.append(("memory", functools.partial(phases.memory, opts, args.memory_size, args.resync_seconds)))
    for name, phase in plan:
        try:
            results["phases"].append(phase())
        except Exception as err:  # not KeyboardInterrupt / SystemExit: those end the run
            log(f"{name}: FAILED: {err!r}")
            results["phases"].append({"phase": "failed", "name": name, "error": repr(err)})
        report.save(results, args.results)


def main() -> None:
    args = parse_args()
    if args.markdown_from is not None:
        print(report.markdown(json.loads(args.markdown_from.read_text()), list(PLOTS)))
        return
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    commit = check_sources(args.operator_src.resolve())
    log(
        f"operator from {args.operator_src} at {commit}; sizes {args.sizes}, restart {args.restart_sizes},"
        f" memory {args.memory_size}"
    )
    results: dict[str, Any] = {
        "label": args.label,
        "operator_src": str(args.operator_src.resolve()),
        "operator_commit": commit,
        "workers": args.workers,
        "machine": machine(),
        "load_before": load_average(),
    }
    began = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="k8s-lab-bench-"))
    (root / "logs").mkdir()
    results["phases"] = []
    try:
        run(args, root, results)
    finally:
        if args.keep_logs is not None:
            shutil.copytree(root / "logs", args.keep_logs, dirs_exist_ok=True)
        shutil.rmtree(root, ignore_errors=True)
    results["load_after"] = load_average()
    results["total_seconds"] = round(time.monotonic() - began, 1)
    path = report.save(results, args.results)
    log(f"results in {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    print(report.markdown(results, list(PLOTS)))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # everything was stopped and removed on the way out
        sys.exit("interrupted; the clusters and the operators were stopped")

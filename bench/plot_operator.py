"""Plots of `make bench-operator` results (bench/results/*.json) as PNGs for BENCHMARKS.md.

Run: `make bench-plots` (the newest results file of each label), or, e.g.,
`.venv/bin/python bench/plot_operator.py bench/results/DATE-before.json bench/results/DATE-after.json`.
Writes into bench/plots/ (``--out``): operator-ready.png (time to all Ready vs N, the floor beside
each operator series), operator-rss.png (operator RSS vs N: scale rounds' peak and end, restart
and memory phases at idle), operator-writes.png (writes per LabServer by kind vs N). Every
figure's footer names the machine and the date of each file. Matplotlib with the Agg backend:
no display needed. Prints the markdown image links.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
KINDS = ("apply Deployment", "apply Service", "status writes", "Events")


def load(paths: list[Path]) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in paths]


def newest_per_label(folder: Path) -> list[Path]:
    """The newest results file of each label (names are <date>-<label>.json)."""
    chosen: dict[str, Path] = {}
    for path in sorted(folder.glob("*.json")):
        label = path.stem[len("YYYY-MM-DD-") :]
        chosen[label] = path  # sorted by date: the last one wins
    return list(chosen.values())


def footer(fig: Figure, runs: list[dict[str, Any]]) -> None:
    lines = []
    for run in runs:
        m = run["machine"]
        lines.append(
            f"{run['label']} ({run['operator_commit']}): {m['date']}, {m['cores']} cores {m['cpu']},"
            f" load {run['load_before'][0]} before; cluster client limits raised (qps 500 / burst 1000)"
        )
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=7, va="bottom", ha="left", color="#444")


def series(run: dict[str, Any], phase: str, key: str) -> tuple[list[int], list[float]]:
    points = sorted((p["n"], p[key]) for p in run["phases"] if p["phase"] == phase and p.get(key) is not None)
    return [n for n, _ in points], [v for _, v in points]


def figure(runs: list[dict[str, Any]], title: str) -> tuple[Figure, Any]:
    fig, ax = plt.subplots(figsize=(8, 5.2))
    fig.subplots_adjust(bottom=0.12 + 0.035 * len(runs))
    ax.set_title(title)
    ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.3)
    footer(fig, runs)
    return fig, ax


def plot_ready(runs: list[dict[str, Any]], out: Path) -> Path:
    fig, ax = figure(runs, "LabServers (replicas 1) created at once: time to all Ready")
    for run in runs:
        for phase, style in (("operator", "o-"), ("floor", "s--")):
            ns, values = series(run, phase, "ready_seconds")
            if ns:
                ax.plot(ns, values, style, label=f"{phase}, {run['label']}")
    ax.set_xlabel("LabServers (N)")
    ax.set_ylabel("seconds to all Ready")
    ax.legend()
    path = out / "operator-ready.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_rss(runs: list[dict[str, Any]], out: Path) -> Path:
    fig, ax = figure(runs, "Operator RSS vs LabServers")
    for run in runs:
        label = run["label"]
        for phase, key, style, what in (
            ("operator", "rss_peak_kib", "o-", "scale rounds (replicas 1), peak"),
            ("operator", "rss_end_kib", "o:", "scale rounds (replicas 1), end"),
            ("restart", "rss_idle_kib", "^-", "after a restart (replicas 0), idle"),
            ("memory", "rss_idle_kib", "D", "memory phase (replicas 0), idle"),
        ):
            ns, values = series(run, phase, key)
            if ns:
                ax.plot(ns, [v / 1024 for v in values], style, label=f"{what}, {label}")
        baselines = [p["rss_baseline_kib"] for p in run["phases"] if p.get("rss_baseline_kib")]
        if baselines:
            ax.axhline(min(baselines) / 1024, linestyle="--", color="grey", linewidth=0.8)
            ax.text(
                ax.get_xlim()[0], min(baselines) / 1024, f" idle, empty ({label})", fontsize=7, va="bottom"
            )
    ax.set_xlabel("LabServers (N)")
    ax.set_ylabel("operator RSS, MiB")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    path = out / "operator-rss.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_writes(runs: list[dict[str, Any]], out: Path) -> Path:
    """Stacked bars: for each N, one bar per (run, floor or operator), stacked by kind."""
    bars = [
        (run, phase)
        for run in runs
        for phase in ("floor", "operator")
        if any(p["phase"] == phase for p in run["phases"])
    ]
    sizes = sorted({p["n"] for run in runs for p in run["phases"] if p["phase"] in ("floor", "operator")})
    fig, ax = plt.subplots(figsize=(8, 5.2))
    fig.subplots_adjust(bottom=0.12 + 0.035 * len(runs))
    ax.set_title("Writes per LabServer by kind (apiserver_request_total), scale rounds")
    footer(fig, runs)
    width = 0.8 / max(len(bars), 1)
    colours = dict(zip(KINDS, ("#4c72b0", "#55a868", "#c44e52", "#8172b2"), strict=True))
    for index, (run, phase) in enumerate(bars):
        by_n = {p["n"]: p["writes_per_labserver"] for p in run["phases"] if p["phase"] == phase}
        xs = [i + (index - (len(bars) - 1) / 2) * width for i in range(len(sizes))]
        bottom = [0.0] * len(sizes)
        for kind in KINDS:
            heights = [by_n.get(n, {}).get(kind, 0.0) for n in sizes]
            ax.bar(
                xs,
                heights,
                width * 0.9,
                bottom=bottom,
                color=colours[kind],
                label=kind if index == 0 else None,
                edgecolor="white",
                linewidth=0.5,
            )
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        for x, total in zip(xs, bottom, strict=True):
            if total == 0:  # no round of this kind at this N in this file
                continue
            ax.text(x, total + 0.05, f"{phase}\n{run['label']}", ha="center", va="bottom", fontsize=6)
    ax.set_xticks(range(len(sizes)), [str(n) for n in sizes])
    ax.set_xlabel("LabServers (N)")
    ax.set_ylabel("writes per LabServer")
    ax.set_ylim(0, max(ax.get_ylim()[1], 1) * 1.15)
    ax.legend(fontsize=7)
    path = out / "operator-writes.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "results", nargs="*", type=Path, help="results JSON files (default: newest per label)"
    )
    parser.add_argument("--out", type=Path, default=BENCH / "plots")
    args = parser.parse_args()
    paths = args.results or newest_per_label(BENCH / "results")
    if not paths:
        raise SystemExit("no results: run `make bench-operator` first")
    runs = load(paths)
    args.out.mkdir(parents=True, exist_ok=True)
    written = [plot(runs, args.out) for plot in (plot_ready, plot_rss, plot_writes)]
    for path in written:
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        print(f"![{path.stem}]({shown})")


if __name__ == "__main__":
    main()

"""The results of one `make bench-operator` run: JSON under bench/results/ and markdown on
stdout, ready to paste into BENCHMARKS.md (tables, then links to the plots of
bench/plot_operator.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from opbench.common import CLIENT_LIMITS, CREATE_THREADS, KWOK_NODES, PODS_PER_NODE

WRITE_LABELS = ("apply Deployment", "apply Service", "status writes", "Events", "other child patches")


def save(results: dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    day = results["machine"]["date"].split()[0]
    path = folder / f"{day}-{results['label']}.json"
    path.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    return path


def mib(kib: float | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.0f} MiB"


def secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def loadavg(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def setup(results: dict[str, Any]) -> str:
    m = results["machine"]
    rows = [
        ["date", m["date"]],
        [
            "label / operator commit",
            f"{results['label']} / {results['operator_commit']} ({results['operator_src']})",
        ],
        ["machine", f"{m['cores']} cores, {m['cpu']}, Linux {m['kernel']}"],
        [
            "versions",
            f"Python {m['python']}, kopf {m['kopf']}, kubernetes client {m['kubernetes_client']},"
            f" Kubernetes {m['kubernetes']}, etcd {m['etcd']}, kwok {m['kwok']}",
        ],
        [
            "cluster",
            f"a fresh local cluster per phase; kube-controller-manager and kube-scheduler client"
            f" limits RAISED ({' '.join(CLIENT_LIMITS)}); Service range /16; {KWOK_NODES} kwok nodes"
            f" x {PODS_PER_NODE} pods; every process on the same cores",
        ],
        [
            "load",
            f"N LabServers created at once by {CREATE_THREADS} threads, clock from the first create;"
            " progress from a watch in the bench",
        ],
        ["operator", f"`kopf run operator/main.py -A`, workers {results['workers'] or 'default (2)'}"],
        [
            "floor",
            "bench/opbench/floor.py: 2 watches, "
            + ", ".join(
                sorted({str(p["floor_threads"]) for p in results["phases"] if "floor_threads" in p}) or "8"
            )
            + " writer threads; per LabServer: apply Deployment and Service, one status apply when available",
        ],
        [
            "load average",
            f"{loadavg(results['load_before'])} before, {loadavg(results.get('load_after', []))} after",
        ],
        ["whole run", f"{results.get('total_seconds', 0):.0f} s"],
    ]
    return "| setup | |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows) + "\n"


def scale_tables(phases: list[dict[str, Any]]) -> str:
    rounds = [p for p in phases if p["phase"] in ("floor", "operator")]
    if not rounds:
        return ""
    floors = {p["n"]: p for p in rounds if p["phase"] == "floor"}
    rows, writes, cpu = [], [], []
    for p in rounds:
        floor = floors.get(p["n"])
        ratio = (
            f"{p['ready_seconds'] / floor['ready_seconds']:.2f}"
            if floor and p["phase"] == "operator"
            else "-"
        )
        rows.append(
            [
                str(p["n"]),
                p["phase"],
                secs(p["ready_seconds"]),
                ratio,
                secs(p["observed_seconds"]),
                secs(p["create_seconds"]),
                str(p.get("reconciles_per_labserver", "-")),
                f"{p['client_cpu_ms_per_labserver']:.1f} ms",
                f"{p['apiserver_cpu']:.1f} s",
                mib(p.get("rss_baseline_kib")),
                mib(p["rss_peak_kib"]),
                mib(p["rss_end_kib"]),
                f"{p['phase_seconds']:.0f} s",
            ]
        )
        per = p["writes_per_labserver"]
        writes.append(
            [
                str(p["n"]),
                p["phase"],
                *(f"{per.get(k, 0):.2f}" for k in WRITE_LABELS),
                str(p["writes_409"]),
                f"{p['writes_total_per_labserver']:.2f}",
            ]
        )
        first = p["cpu_first_pass"]
        cpu.append(
            [
                str(p["n"]),
                p["phase"],
                *(
                    f"{first.get(k, 0):.1f}"
                    for k in (
                        "etcd",
                        "kube-apiserver",
                        "kube-controller-manager",
                        "kube-scheduler",
                        "kwok",
                        p["phase"],
                        "bench",
                    )
                ),
                f"{sum(first.values()) / max(p['observed_seconds'], 0.1):.2f}",
            ]
        )
    out = table(
        [
            "N",
            "phase",
            "to all Ready",
            "÷ floor",
            "first pass (all observed)",
            "creates took",
            "reconciles / LabServer",
            "client CPU / LabServer",
            "apiserver CPU",
            "RSS idle empty",
            "RSS peak",
            "RSS end",
            "phase took",
        ],
        rows,
    )
    out += (
        "\nWrites per LabServer by kind (apiserver_request_total deltas; Events by reportingComponent):\n\n"
    )
    out += table(["N", "phase", *WRITE_LABELS, "409s (total)", "total"], writes)
    out += "\nCPU seconds in the first pass (first create until all observed), and cores busy:\n\n"
    out += table(
        [
            "N",
            "phase",
            "etcd",
            "apiserver",
            "controller-manager",
            "scheduler",
            "kwok",
            "client",
            "bench",
            "cores busy",
        ],
        cpu,
    )
    return out


def restart_table(phases: list[dict[str, Any]]) -> str:
    rows = []
    for p in phases:
        if p["phase"] != "restart":
            continue
        w = p["restart_writes_excluding_new"]
        rows.append(
            [
                str(p["n"]),
                secs(p["bringup_ready_seconds"]),
                ", ".join(f"{k} {v}" for k, v in w.items() if v) or "0",
                str(sum(w.values())),
                secs(p["readyz_seconds"]),
                secs(p["restart_idle_seconds"]),
                f"{p['new_observed_seconds']:.2f} s",
                f"{p['new_ready_seconds']:.2f} s",
                mib(p["rss_baseline_kib"]),
                mib(p["rss_idle_kib"]),
                f"{p['per_labserver_kib']:.1f} KiB",
                *settled_cells(p),
                f"{p['phase_seconds']:.0f} s",
            ]
        )
    if not rows:
        return ""
    return (
        "\nRestart (replicas 0; writes by the restarted operator until idle, the new LabServer's own"
        " removed; times from its start):\n\n"
        + table(
            [
                "N",
                "bring-up to Ready",
                "restart writes by kind",
                "restart writes",
                "to /readyz",
                "to idle",
                "new LabServer: create → observed",
                "create → Ready",
                "RSS idle empty",
                "RSS idle after restart",
                "RSS / LabServer",
                *SETTLED_HEADERS,
                "phase took",
            ],
            rows,
        )
    )


SETTLED_HEADERS = ("RSS 20 s after idle", "settled / LabServer")


def settled_cells(p: dict[str, Any]) -> list[str]:
    """RSS once the idle collection ran (results before it was measured: n/a)."""
    if "rss_settled_kib" not in p:
        return ["n/a", "n/a"]
    return [mib(p["rss_settled_kib"]), f"{p['per_labserver_settled_kib']:.1f} KiB"]


def memory_table(phases: list[dict[str, Any]]) -> str:
    rows = []
    for p in phases:
        if p["phase"] != "memory":
            continue
        r = p["resync"]
        keys = "n/a" if r["resync_keys"] is None else str(r["resync_keys"])
        passes = "n/a" if r["resync_passes"] is None else str(r["resync_passes"])
        rows.append(
            [
                str(p["n"]),
                secs(p["bringup_ready_seconds"]),
                mib(p["rss_baseline_kib"]),
                mib(p["rss_idle_kib"]),
                mib(p["rss_peak_kib"]),
                f"{p['per_labserver_kib']:.1f} KiB",
                *settled_cells(p),
                f"{p['resync_seconds']:.0f} s",
                keys,
                passes,
                str(r["reconciles"]),
                "yes" if r["every_key"] else "NO",
                f"{p['phase_seconds']:.0f} s",
            ]
        )
    if not rows:
        return ""
    return "\nMemory (replicas 0) and one resync period after idle:\n\n" + table(
        [
            "N",
            "bring-up to Ready",
            "RSS idle empty (VmRSS)",
            "RSS idle (VmRSS)",
            "peak (VmHWM)",
            "RSS / LabServer",
            *SETTLED_HEADERS,
            "resync period",
            "resync keys",
            "resync passes",
            "reconciles in the period",
            "every key resynced",
            "phase took",
        ],
        rows,
    )


def markdown(results: dict[str, Any], plots: list[str]) -> str:
    phases = results["phases"]
    out = [setup(results), scale_tables(phases), restart_table(phases), memory_table(phases)]
    for p in phases:
        if p["phase"] == "failed":
            out.append(f"\nPhase {p['name']} FAILED: `{p['error']}` (see the progress log on stderr).\n")
    profile = [p for p in phases if p["phase"] == "profile"]
    for p in profile:
        out.append(
            f"\nFlame graph of the operator, N={p['n']} first pass (py-spy, 100 Hz, a round of its own):"
            f" [{p.get('profile')}]({p.get('profile')}); that round took {secs(p['ready_seconds'])} to all"
            " Ready under the profiler.\n"
        )
    if plots:
        out.append("\n" + "\n".join(f"![{Path(p).stem}]({p})" for p in plots) + "\n")
    return "\n".join(part for part in out if part)

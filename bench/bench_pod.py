"""``make bench-pod``: labhttp in a real pod vs on the host under wrk, and LabServer create -> Ready.

Role: the figures of BENCHMARKS.md's "Real pods" section, all from one run on one machine. Why a
cluster of its own: the measurement must not depend on what ``make cluster-up`` left running,
and a fresh node's containerd has no labhttp image, so the first LabServer is a true cold start.

1. Builds the images (``make images``, cached), starts a local cluster (temp folder) with the real
   node (kwok tainted: pods land on it), and the operator on the host with the local labhttp as
   its default image.
2. Create -> Ready, cold: import the labhttp archive into the node's containerd (timed), then a
   one-replica LabServer until Ready. Warm: ``WARM_RUNS`` more LabServers, one at a time, image
   present.
3. wrk, the shape of ``make bench-server`` (``wrk -t2 -c64 -d10s --latency`` on ``GET /`` after a
   2 s warm-up), one target at a time: labhttp (one process) on the host's loopback, the
   one-replica LabServer's pod through its pod IP, and through its Service's ClusterIP
   (kube-proxy's iptables DNAT); ``ROUNDS`` (3) interleaved rounds, medians reported, so that the
   machine's other load weighs on each target alike. wrk runs on the host and shares the cores.
Prints a markdown table (also written to bench/out/bench_pod.md). A benchmark: nothing asserted.
Needs root on Linux; as root, wrk is installed from Debian's packages when missing.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from localcluster import ClusterSettings, LocalCluster, labimages, processes
from localcluster.binaries import bin_dir
from localcluster.cluster import free_port

REPO = Path(__file__).resolve().parents[1]  # labop, labhttp and localcluster come from the install

WRK = ("-t2", "-c64", "-d10s", "--latency")
WARMUP = ("-t2", "-c64", "-d2s")
WARM_RUNS = int(os.environ.get("WARM_RUNS", "3"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))  # wrk rounds per target, interleaved
MESSAGE = "Hello from k8s-lab!"
OUT = REPO / "bench" / "out"
NS = "bench"


def say(line: str) -> None:
    print(f"bench-pod: {line}", file=sys.stderr, flush=True)


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit("bench-pod: wrk is not installed (Debian/Ubuntu: sudo apt-get install -y wrk)")
    say("installing wrk (apt-get install wrk)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, env=env, stdout=subprocess.DEVNULL)


def poll(what: str, check: Any, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench-pod: timed out waiting for {what}")
        time.sleep(0.2)


def ready(cluster: LocalCluster, name: str) -> bool:
    done = cluster.kubectl("get", "-n", NS, f"lsrv/{name}", "-o", "json", check=False)
    if done.returncode != 0:
        return False
    obj = json.loads(done.stdout)
    status = obj.get("status", {})
    conds = {c["type"]: c["status"] for c in status.get("conditions", [])}
    return conds.get("Ready") == "True" and status.get("observedGeneration") == obj["metadata"]["generation"]


def create_until_ready(cluster: LocalCluster, name: str) -> float:
    body = {
        "apiVersion": "k8slab.dev/v1alpha1",
        "kind": "LabServer",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": 1, "message": MESSAGE},
    }
    start = time.monotonic()
    cluster.kubectl("create", "-f", "-", input=json.dumps(body))
    poll(f"LabServer {name} Ready", lambda: ready(cluster, name))
    return time.monotonic() - start


def wrk(url: str, name: str) -> tuple[float, float, str]:
    """Requests/s, p99 in ms, and any error line of one measured wrk run (after a warm-up)."""
    subprocess.run(["wrk", *WARMUP, url], check=True, capture_output=True)
    out = subprocess.run(["wrk", *WRK, url], check=True, capture_output=True, text=True).stdout
    (OUT / f"wrk-pod-{name}.txt").write_text(out)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)", out, re.M).groups()  # type: ignore[union-attr]
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    errors = " ".join(
        line.strip() for line in out.splitlines() if "Non-2xx" in line or "Socket errors" in line
    )
    return rps, p99, errors


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def host_labhttp(folder: Path) -> tuple[processes.Proc, str]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "labhttp",
        "--listen",
        f"api=127.0.0.1:{port}",
        "--listen",
        "metrics=127.0.0.1:0",
    ]
    env = {**os.environ, "LABHTTP_MESSAGE": MESSAGE}
    proc = processes.spawn("labhttp-host", argv, folder / "labhttp-host.log", detach=False, env=env)
    url = f"http://127.0.0.1:{port}/"
    processes.wait_for("labhttp on the host", lambda: get(url) == MESSAGE, timeout=30, watch=[proc])
    return proc, url


def main() -> int:
    if os.geteuid() != 0 or platform.system() != "Linux":
        sys.exit("bench-pod: needs root on Linux (a real node)")
    ensure_wrk()
    OUT.mkdir(parents=True, exist_ok=True)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    say("images (make images; cached) ...")
    images = labimages.build()
    root = Path(tempfile.mkdtemp(prefix="k8s-lab-bench-pod-"))
    cluster = LocalCluster(ClusterSettings(root=root, bin_dir=bin_dir(), start_timeout=180.0))
    operator: processes.Proc | None = None
    host: processes.Proc | None = None
    rows: list[tuple[str, float, float, str, str]] = []
    try:
        say(f"local cluster with a real node in {root} ...")
        cluster.start_control_plane()
        cluster.start_workloads()
        cluster.start_real_node(taint_kwok=True)
        cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(REPO / "crds"))
        cluster.kubectl("create", "namespace", NS)
        poll(
            "ServiceAccount bench/default",
            lambda: cluster.kubectl("get", "-n", NS, "sa/default", check=False).returncode == 0,
        )
        env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "LABOP_DEFAULT_IMAGE": images.labhttp,
            "LABOP_BIND_ADDRESS": "127.0.0.1",
            "LABOP_METRICS_PORT": str(free_port()),
            "LABOP_HEALTH_PORT": str(free_port()),
        }
        argv = [sys.executable, "-m", "kopf", "run", str(REPO / "operator" / "main.py"), "-A"]
        operator = processes.spawn("operator", argv, root / "operator.log", detach=False, env=env)

        say("cold: import the labhttp archive, then create -> Ready ...")
        start = time.monotonic()
        cluster.import_image(images.archives[images.labhttp])
        import_s = time.monotonic() - start
        cold_s = create_until_ready(cluster, "cold")
        warm = []
        for i in range(WARM_RUNS):
            say(f"warm {i + 1}/{WARM_RUNS}: create -> Ready ...")
            warm.append(create_until_ready(cluster, f"warm-{i}"))
            cluster.kubectl("delete", "-n", NS, f"lsrv/warm-{i}", "--wait=true")

        pod_ip = cluster.kubectl(
            "get",
            "pods",
            "-n",
            NS,
            "-l",
            "app.kubernetes.io/instance=cold",
            "-o",
            "jsonpath={.items[0].status.podIP}",
        ).stdout
        cluster_ip = cluster.kubectl(
            "get", "svc", "-n", NS, "cold", "-o", "jsonpath={.spec.clusterIP}"
        ).stdout
        host, host_url = host_labhttp(root)
        targets = [
            ("labhttp on the host, 127.0.0.1", host_url, "host"),
            (f"labhttp in a pod, pod IP {pod_ip}", f"http://{pod_ip}:8080/", "pod-ip"),
            (f"labhttp in a pod, ClusterIP {cluster_ip}", f"http://{cluster_ip}:8080/", "cluster-ip"),
        ]
        for _, url, _ in targets:
            poll(f"{url} answers", lambda u=url: get(u) == MESSAGE, timeout=60)
        results: dict[str, list[tuple[float, float, str]]] = {label: [] for label, _, _ in targets}
        for round_ in range(ROUNDS):  # interleaved: the machine's other load hits every target alike
            for label, url, name in targets:
                say(f"wrk round {round_ + 1}/{ROUNDS}: {label} ...")
                results[label].append(wrk(url, f"{name}-{round_ + 1}"))
        rows = [
            (
                label,
                statistics.median(r[0] for r in runs),
                statistics.median(r[1] for r in runs),
                ", ".join(f"{r[0]:.0f}" for r in runs),
                " ".join(r[2] for r in runs if r[2]),
            )
            for label, runs in results.items()
        ]
    finally:
        for proc in (host, operator):
            if proc is not None:
                processes.stop(proc)
        cluster.destroy()

    cpu = next(
        (
            line.split(": ", 1)[1]
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} x {cpu}, "
        f"Linux {platform.release()}, load average before the run: {load}.",
        f"Images: {images.labhttp} from {images.folder.name}. Load: `wrk {' '.join(WRK)}` on GET / "
        "after a 2 s warm-up, one target at a time; wrk shares the machine with the server.",
        "",
        f"| labhttp (1 process) | req/s, median of {ROUNDS} | p99, median | each round's req/s | errors |",
        "|---|---:|---:|---|---|",
        *[
            f"| {label} | {rps:.0f} | {p99:.2f} ms | {each} | {errors or 'none'} |"
            for label, rps, p99, each, errors in rows
        ],
        "",
        "| LabServer create -> Ready (1 replica, real node) | seconds |",
        "|---|---:|",
        f"| cold: `ctr images import` of the labhttp archive | {import_s:.1f} |",
        f"| cold: create -> Ready, first start of the image | {cold_s:.1f} |",
        f"| warm: create -> Ready, median of {len(warm)} ({', '.join(f'{w:.1f}' for w in warm)}) | "
        f"{statistics.median(warm):.1f} |",
    ]
    report = "\n".join(lines)
    (OUT / "bench_pod.md").write_text(report + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

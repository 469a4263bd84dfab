"""``python -m localcluster up|down|status|leftovers``: the full local cluster in the background.

Role: the command behind ``make cluster-up``, ``make cluster-down`` and ``make cluster-status``.
``--real-node auto|on|off`` (``make cluster-up REAL_NODE=...``): ``auto`` adds a real node (containers
run) when the machine allows it and otherwise says in one line why not and goes on with kwok
alone; ``on`` fails if it cannot; ``off`` is kwok alone. ``leftovers`` lists what a real node of
the folder left on the machine (exit 1 if anything). With a real node, ``up`` imports the labhttp
and operator images into it when ``make images`` built them for the current sources (``labimages``);
it builds nothing itself (a cold build takes minutes: ``make run`` and the e2e tier build first).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from localcluster import labimages, node, nodehost
from localcluster.binaries import bin_dir
from localcluster.cluster import ClusterSettings, LocalCluster, RealNodeUnavailable
from localcluster.components import DEFAULT_PODS_PER_NODE
from localcluster.ociimage import PAUSE_IMAGE
from localcluster.processes import ComponentFailed


def _say(line: str) -> None:
    print(line, flush=True)


def _export_line(cluster: LocalCluster) -> str:
    return f"export KUBECONFIG={cluster.kubeconfig}"


def _healthy(cluster: LocalCluster) -> bool:
    return all(cluster.health().values())


def _start_real_node(cluster: LocalCluster, mode: str, sandbox_image: str) -> None:
    if mode == "off":
        return
    if node.preflight(cluster.layout.bin_dir) is None:
        _say("starting the real node (containerd, kubelet, kube-proxy) ...")
    try:
        cluster.start_real_node(taint_kwok=True, sandbox_image=sandbox_image)
    except RealNodeUnavailable as err:
        if mode == "on":
            raise ComponentFailed(f"real node: {err}") from err
        _say(f"no real node: {err}; going on with kwok alone (pods do not run containers)")
    except ComponentFailed as err:
        if mode == "on":
            raise
        cluster.stop_real_node()
        first = str(err).splitlines()[0]
        _say(
            f"no real node: it failed to start ({first}; logs in {cluster.layout.root / 'logs'}); kwok alone"
        )


def _import_lab_images(cluster: LocalCluster) -> None:
    """Import the images `make images` built for these sources into the real node, if any."""
    if not cluster.real_node:
        return
    images = labimages.current()
    if images is None:
        _say(
            "no labhttp/operator images built for these sources (`make images`): LabServer pods cannot start"
        )
        return
    try:
        names = labimages.import_into(cluster, images)
    except ComponentFailed as err:
        _say(f"image import failed: {err}")
        return
    _say(f"images imported into the real node: {', '.join(names)}")


def up(
    root: Path, nodes: int, pods_per_node: int, real_node: str = "auto", sandbox_image: str = PAUSE_IMAGE
) -> int:
    existing = LocalCluster.load(root)
    if existing is not None:
        if _healthy(existing):
            _say(f"local cluster already up ({existing.server})")
            _import_lab_images(existing)
            _say(_export_line(existing))
            return 0
        _say("a previous local cluster is not healthy: stopping it and starting afresh")
        existing.destroy()
    elif root.exists():
        shutil.rmtree(root)
    settings = ClusterSettings(
        root=root, bin_dir=bin_dir(), detach=True, nodes=nodes, pods_per_node=pods_per_node
    )
    cluster = LocalCluster(settings)
    _say(f"starting etcd and kube-apiserver in {root} ...")
    try:
        cluster.start_control_plane()
        _say("starting kube-controller-manager, kube-scheduler and kwok ...")
        cluster.start_workloads()
        _start_real_node(cluster, real_node, sandbox_image)
        _import_lab_images(cluster)
    except ComponentFailed as err:
        cluster.stop()  # keep the folder: its logs say what went wrong
        print(f"cluster-up failed: {err}", file=sys.stderr)
        return 1
    except BaseException:
        cluster.stop()  # Ctrl-C or an unexpected error: leave no detached process behind
        raise
    _say(f"local cluster up: {cluster.server}, {nodes} kwok node(s) of {pods_per_node} pods each")
    if cluster.real_node:
        _say(
            "real node k8s-lab-node Ready (label type=real): pods land there by default"
            " (kwok's nodes are tainted)"
        )
    _say("component logs:")
    for proc in cluster.procs:
        _say(f"  {proc.name:<24} {proc.log}")
    _say("use it with:")
    _say(f"  {_export_line(cluster)}")
    return 0


def down(root: Path) -> int:
    cluster = LocalCluster.load(root)
    if cluster is None:
        _say("no local cluster to stop")
        if nodehost.owns(root):
            nodehost.teardown(root)
        shutil.rmtree(root, ignore_errors=True)
        return 0
    cluster.destroy()
    _say(f"local cluster stopped; {root} removed")
    return 0


def leftovers(root: Path) -> int:
    found = nodehost.leftovers(root)
    for line in found:
        _say(f"  left: {line}")
    _say(f"leftovers of {root}: {len(found)}")
    return 1 if found else 0


def status(root: Path) -> int:
    cluster = LocalCluster.load(root)
    if cluster is None:
        _say("local cluster: down (run `make cluster-up`)")
        return 1
    report = cluster.health()
    for what, ok in report.items():
        _say(f"  {'ok ' if ok else 'BAD'} {what}")
    healthy = all(report.values())
    _say(f"local cluster: {'up and healthy' if healthy else 'unhealthy'} ({cluster.server})")
    if healthy:
        _say(_export_line(cluster))
    return 0 if healthy else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "leftovers"])
    parser.add_argument("--dir", type=Path, default=Path(".cluster"), help="state folder (default .cluster)")
    parser.add_argument("--nodes", type=int, default=1, help="number of kwok fake nodes (default 1)")
    parser.add_argument(
        "--pods-per-node",
        type=int,
        default=DEFAULT_PODS_PER_NODE,
        help=f"pods each kwok node takes (default {DEFAULT_PODS_PER_NODE})",
    )
    parser.add_argument(
        "--real-node",
        choices=["auto", "on", "off"],
        default="auto",
        help="add a real node: auto (when root on Linux with the binaries; default), on (or fail), off",
    )
    parser.add_argument(
        "--sandbox-image",
        default=PAUSE_IMAGE,
        help=f"name of the real node's pause image, built and imported by us (default {PAUSE_IMAGE})",
    )
    args = parser.parse_args(argv)
    root = args.dir.resolve()
    if args.command == "up":
        return up(root, args.nodes, args.pods_per_node, args.real_node, args.sandbox_image)
    if args.command == "down":
        return down(root)
    if args.command == "leftovers":
        return leftovers(root)
    return status(root)


if __name__ == "__main__":
    sys.exit(main())

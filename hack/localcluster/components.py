"""Command lines of the control-plane components: pure functions, no processes started here.

Role: one function per binary, from a ``Layout`` (folders, ports, certificate paths) to argv,
and ``command`` to merge a user's extra flags over those defaults (envtest's
``Arguments``/``Configure()``: a later ``--name=value`` replaces an earlier one of the same name).
The flags follow the two reference launchers, envtest (etcd + kube-apiserver) and kwokctl
(controller-manager, scheduler, kwok); the reasons for the less obvious ones are in comments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from localcluster import nodehost
from localcluster.pki import PkiPaths

# Sized for scale runs: a /16 holds 65,534 ClusterIPs (a /24 stopped Service creation at ~250),
# and kwok hands out pod IPs from a /16 as well. The first address serves `kubernetes.default`.
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
POD_CIDR = "10.244.0.0/16"
# A fake node claims this many pods by default: 10,000 LabServers at one replica fit on one
# kwok node (`--pods-per-node` and `--nodes` change it; the scheduler spreads over the nodes).
DEFAULT_PODS_PER_NODE = 10_000
# Health endpoints that the controller-manager and scheduler serve without authentication, so
# `cluster-status` can probe them with a plain HTTPS GET.
ALWAYS_ALLOW = "/healthz,/readyz,/livez,/metrics"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_STAGES = Path(__file__).resolve().parent / "kwok-stages.yaml"
# The `kubernetes` Service's endpoint. Not loopback (an Endpoints address may not be), and the
# real node's IP: with a real node, pods reach the apiserver there through `forward`; without one
# nothing connects to it. The apiserver itself binds 127.0.0.1 only.
ADVERTISE_ADDRESS = nodehost.NODE_IP


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int
    # The real node's local health and metrics ports (0: none; state files of older clusters).
    kubelet_healthz: int = 0
    proxy_healthz: int = 0
    proxy_metrics: int = 0


@dataclass(frozen=True)
class Layout:
    """Everything a command line needs to know about one cluster's folder and ports."""

    root: Path
    bin_dir: Path
    ports: Ports
    pki: PkiPaths

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd-data"

    def log(self, component: str) -> Path:
        return self.root / "logs" / f"{component}.log"

    def binary(self, name: str) -> str:
        return str(self.bin_dir / name)


def etcd(lay: Layout) -> list[str]:
    client = f"http://127.0.0.1:{lay.ports.etcd_client}"
    peer = f"http://127.0.0.1:{lay.ports.etcd_peer}"
    return [
        lay.binary("etcd"),
        "--name=n0",
        f"--data-dir={lay.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=n0={peer}",
        # A throwaway cluster: skipping fsync makes every write several times faster (envtest does too).
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def kube_apiserver(lay: Layout) -> list[str]:
    p = lay.pki
    return [
        lay.binary("kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{lay.ports.etcd_client}",
        f"--secure-port={lay.ports.apiserver}",
        "--bind-address=127.0.0.1",
        # Without a default route the apiserver cannot pick an address to advertise and exits.
        f"--advertise-address={ADVERTISE_ADDRESS}",
        f"--cert-dir={lay.root / 'apiserver-certs'}",
        f"--tls-cert-file={p.serving_cert}",
        f"--tls-private-key-file={p.serving_key}",
        f"--client-ca-file={p.ca_cert}",
        # Node: a real node's kubelet (system:node:<name>) may touch only its own node and pods;
        # NodeRestriction admission enforces the same on writes.
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        # Logs, exec and port-forward: the apiserver calls a kubelet as this client, at the node's
        # InternalIP (the node name resolves nowhere), and verifies the kubelet's certificate.
        f"--kubelet-client-certificate={p.kubelet_client_cert}",
        f"--kubelet-client-key={p.kubelet_client_key}",
        f"--kubelet-certificate-authority={p.ca_cert}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--service-account-issuer=https://127.0.0.1:{lay.ports.apiserver}",
        f"--service-account-key-file={p.sa_pub}",
        f"--service-account-signing-key-file={p.sa_key}",
        "--allow-privileged=true",
        # Ports 1024..65535 are the lab's listener range; the default node-port range is unrelated
        # but stating it keeps `kubectl expose --type=NodePort` predictable.
        "--service-node-port-range=30000-32767",
        "--profiling=false",
    ]


def _component_common(lay: Layout, port: int) -> list[str]:
    kc = str(lay.kubeconfig)
    return [
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        f"--authorization-always-allow-paths={ALWAYS_ALLOW}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        # One instance each: leader election would only delay start-up by a lease period.
        "--leader-elect=false",
    ]


def kube_controller_manager(lay: Layout) -> list[str]:
    return [
        lay.binary("kube-controller-manager"),
        *_component_common(lay, lay.ports.controller_manager),
        f"--root-ca-file={lay.pki.ca_cert}",
        f"--service-account-private-key-file={lay.pki.sa_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--cert-dir={lay.root / 'controller-manager-certs'}",
        # Fake nodes come and go with kwok; no cloud, no node IPAM (kwok hands out pod IPs).
        "--allocate-node-cidrs=false",
        "--profiling=false",
    ]


def kube_scheduler(lay: Layout) -> list[str]:
    return [
        lay.binary("kube-scheduler"),
        *_component_common(lay, lay.ports.scheduler),
        f"--cert-dir={lay.root / 'scheduler-certs'}",
        "--profiling=false",
    ]


def kwok(lay: Layout) -> list[str]:
    return [
        lay.binary("kwok"),
        f"--kubeconfig={lay.kubeconfig}",
        # Our own lifecycle stages (kwok has none built in); never ~/.kwok/kwok.yaml.
        f"--config={KWOK_STAGES}",
        "--manage-all-nodes=false",
        # Only nodes we create with this annotation are kwok's: a real node in the same cluster is
        # never touched.
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
        f"--cidr={POD_CIDR}",
        "--node-ip=10.0.0.2",
        "--node-lease-duration-seconds=40",
        f"--server-address=127.0.0.1:{lay.ports.kwok}",
    ]


def fake_node(name: str, pods: int = DEFAULT_PODS_PER_NODE) -> dict[str, object]:
    """A Node that kwok keeps Ready and that takes ``pods`` pods; no taint, so pods schedule onto it."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {
            # Pods request 50m / 64Mi by default: cpu and memory are sized to fit ``pods`` of them.
            "allocatable": _fake_capacity(pods),
            "capacity": _fake_capacity(pods),
        },
    }


def _fake_capacity(pods: int) -> dict[str, str]:
    return {"cpu": str(max(32, pods // 10)), "memory": f"{max(256, pods // 8)}Gi", "pods": str(pods)}


def _flag_name(arg: str) -> str:
    if not arg.startswith("--") or arg == "--":
        raise ValueError(f"an extra flag must read --name or --name=value, got {arg!r}")
    return arg.split("=", 1)[0]


def merge_flags(argv: Sequence[str], extra: Sequence[str]) -> list[str]:
    """``argv`` (a binary and its flags) with ``extra`` merged over its flags.

    Each extra flag replaces the flag of the same name where it stands (and removes any earlier
    repeat of that name); a flag of a new name is appended. So a later flag always overrides an
    earlier one, whatever the binary would do with repeats (kube-apiserver *adds up* repeated
    ``--enable-admission-plugins``: to keep NodeRestriction, name it again). Extra flags are
    written ``--name=value`` (or ``--name`` for a boolean): a value as a separate word would be
    taken for a flag.
    """
    binary, *flags = argv
    for arg in extra:
        name = _flag_name(arg)
        same = [i for i, old in enumerate(flags) if old.startswith("--") and _flag_name(old) == name]
        if not same:
            flags.append(arg)
            continue
        flags[same[-1]] = arg
        for i in reversed(same[:-1]):
            del flags[i]
    return [binary, *flags]


COMMANDS: dict[str, Callable[[Layout], list[str]]] = {
    "etcd": etcd,
    "kube-apiserver": kube_apiserver,
    "kube-controller-manager": kube_controller_manager,
    "kube-scheduler": kube_scheduler,
    "kwok": kwok,
}


def command(name: str, lay: Layout, extra_flags: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """The argv of the component ``name``: its defaults with ``extra_flags[name]`` merged over them."""
    if name not in COMMANDS:
        raise ValueError(f"no component {name!r}: one of {sorted(COMMANDS)}")
    return merge_flags(COMMANDS[name](lay), (extra_flags or {}).get(name, ()))

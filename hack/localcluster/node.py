"""A real node's configuration files and command lines: containerd, kubelet, kube-proxy, CNI.

Role: pure functions from the node's folder, the cluster's certificates and ports to the files
each daemon reads and its argv; ``preflight`` says why a real node cannot run here (or None).
Why these settings (found by hand on the project's machines, see ../shared/notes/real-node.md):

- containerd keeps its root, state and socket under ``<cluster>/node/containerd`` and the pods'
  network namespaces under its state (``netns_mounts_under_state_dir``), so cleanup finds them
  by path; ``restrict_oom_score_adj``: these machines refuse a negative oom_score_adj and the
  kubelet asks -998 for sandboxes (runc then fails with "can't get final child's PID"); the
  sandbox image is our own pause image, imported, never pulled;
- the kubelet: ``failCgroupV1: false`` (1.35 refuses cgroup v1 otherwise), ``cgroupfs`` (no
  systemd), ``cgroupRoot: /k8slab`` (its pods are findable and killable as one subtree), zero
  eviction thresholds and image GC at 100% (a small disk must not evict the lab), webhook
  authentication/authorization (the apiserver's client certificate is checked against the
  cluster CA and its rights asked of the apiserver), a serving certificate signed by the cluster
  CA for the node IP, pod logs under the node folder;
- CNI: bridge ``k8slab0`` + host-local (10.245.0.0/24, state under the node folder) + portmap;
  containerd runs ``loopback`` itself. No IP masquerade: pods talk to this machine only;
- kube-proxy in iptables mode with no sysctl changes of its own (no conntrack tuning, no
  localhost NodePorts), NodePorts on the node IP only.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from localcluster import kubeconfig as kubeconfigs
from localcluster import nodehost
from localcluster.ociimage import PAUSE_IMAGE
from localcluster.pki import NodePki, PkiPaths

NODE_NAME = "k8s-lab-node"
KUBELET_PORT = 10250
# A real node carries this label; kwok's carry type=kwok. Select either with a nodeSelector.
REAL_NODE_LABELS = {"type": "real", "k8s-lab.dev/node": "real"}
# The test harness keeps other tests' pods (images nobody imported) off the real node with this.
REAL_NODE_TAINT = {"key": "k8s-lab.dev/real-node", "value": "true", "effect": "NoSchedule"}
# With a real node in `make cluster-up`, kwok nodes get this taint: pods land on the real node by
# default; a pod tolerating it (and selecting `type: kwok`) still goes to kwok.
KWOK_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
# Port 1 on loopback: nothing listens there, so a connection is refused at once.
CLOSED_PROXY = "http://127.0.0.1:1"
NODE_BINARIES = (
    "kubelet",
    "kube-proxy",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "runc",
    "cni/bridge",
    "cni/host-local",
    "cni/loopback",
    "cni/portmap",
)


@dataclass(frozen=True)
class NodeLayout:
    root: Path  # <cluster>/node
    bin_dir: Path
    cluster_pki: PkiPaths
    server: str  # the apiserver URL

    @property
    def pki(self) -> NodePki:
        return NodePki.under(self.root / "pki")

    @property
    def containerd_dir(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_config(self) -> Path:
        return self.containerd_dir / "config.toml"

    @property
    def socket(self) -> Path:
        return self.containerd_dir / "containerd.sock"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    def file(self, name: str) -> Path:
        return self.root / name

    def binary(self, name: str) -> str:
        return str(self.bin_dir / name)

    def env(self, *, no_pulls: bool = False) -> dict[str, str]:
        """PATH with our binaries first (containerd finds its shim, runc; portmap finds iptables).

        ``no_pulls`` (containerd's): every registry request goes to a closed loopback port as its
        proxy, so an image that was not imported fails at once with ErrImagePull and no request
        leaves the machine (Go resolves no registry name when a proxy is set).
        """
        path = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        env = {**os.environ, "PATH": f"{self.bin_dir}:/usr/sbin:/sbin:{path}"}
        if no_pulls:
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
                env[name] = CLOSED_PROXY
            for name in ("NO_PROXY", "no_proxy"):
                env.pop(name, None)
        return env


def preflight(bin_dir: Path) -> str | None:
    """Why a real node cannot start on this machine, or None if it can."""
    if not sys.platform.startswith("linux"):
        return "not Linux"
    if os.geteuid() != 0:
        return "not root (the kubelet, containerd and the bridge need root)"
    missing = [b for b in NODE_BINARIES if not (bin_dir / b).is_file()]
    if missing:
        return f"{bin_dir} lacks {', '.join(missing)} (run `make bins`)"
    for tool in ("iptables", "ip6tables", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install iptables iproute2)"
    if (
        not (nodehost.CGROUP_FS / "memory").is_dir()
        and not (nodehost.CGROUP_FS / "cgroup.controllers").exists()
    ):
        return "no cgroup hierarchy under /sys/fs/cgroup"
    current = nodehost.owner()
    if current is not None:
        return f"a real node of {current} runs on this machine (one per machine; `make cluster-down` there)"
    if nodehost.bridge_exists():
        return f"bridge {nodehost.BRIDGE} exists (a real node runs here, or leftovers: `make cluster-down`)"
    return None


def snapshotter() -> str:
    return "overlayfs" if "overlay" in Path("/proc/filesystems").read_text() else "native"


def containerd_config(lay: NodeLayout, sandbox_image: str = PAUSE_IMAGE) -> str:
    d = lay.containerd_dir
    return f"""# Generated by hack/localcluster/node.py; containerd 2.x configuration, version 3.
version = 3
root = "{d / "root"}"
state = "{d / "state"}"
# Nothing of the machine's own containerd configuration, no NRI socket under /var/run.
imports = []
disabled_plugins = ["io.containerd.nri.v1.nri"]

[grpc]
  address = "{lay.socket}"

[ttrpc]
  address = "{lay.socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "opt"}"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "{snapshotter()}"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{sandbox_image}"

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{lay.binary("runc")}"
        Root = "{d / "state" / "runc"}"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{lay.bin_dir / "cni"}"]
    conf_dir = "{lay.cni_conf_dir}"
    max_conf_num = 1

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


def cni_config(lay: NodeLayout) -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": "k8slab",
        "plugins": [
            {
                "type": "bridge",
                "bridge": nodehost.BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": nodehost.NODE_CIDR, "gateway": nodehost.NODE_IP}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(lay.root / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubeconfig(lay: NodeLayout, user: str, cert: Path, key: Path) -> dict[str, Any]:
    return kubeconfigs.build(
        lay.server,
        lay.cluster_pki.ca_cert.read_bytes(),
        user,
        cert_pem=cert.read_bytes(),
        key_pem=key.read_bytes(),
    )


def kubelet_config(lay: NodeLayout, healthz_port: int, taints: list[dict[str, str]]) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{nodehost.CGROUP_ROOT}",
        "containerRuntimeEndpoint": f"unix://{lay.socket}",
        "address": nodehost.NODE_IP,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(lay.cluster_pki.ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(lay.pki.serving_cert),
        "tlsPrivateKeyFile": str(lay.pki.serving_key),
        "evictionHard": {
            "memory.available": "0%",
            "nodefs.available": "0%",
            "nodefs.inodesFree": "0%",
            "imagefs.available": "0%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "failSwapOn": False,
        "podCIDR": nodehost.NODE_CIDR,
        "podLogsDir": str(lay.root / "pod-logs"),
        "registerWithTaints": taints,
        "serializeImagePulls": False,
        "resolvConf": "/etc/resolv.conf",
    }


def kube_proxy_config(lay: NodeLayout, healthz_port: int, metrics_port: int) -> dict[str, object]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(lay.file("kube-proxy.kubeconfig"))},
        "mode": "iptables",
        "hostnameOverride": NODE_NAME,
        "clusterCIDR": nodehost.NODE_CIDR,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "nodePortAddresses": [f"{nodehost.NODE_IP}/32"],
        # Leave the machine's conntrack sysctls and route_localnet alone.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "iptables": {"localhostNodePorts": False, "masqueradeAll": False, "minSyncPeriod": "1s"},
    }


def write_configs(
    lay: NodeLayout,
    kubelet_healthz: int,
    proxy_ports: tuple[int, int],
    taints: list[dict[str, str]],
    sandbox_image: str = PAUSE_IMAGE,
) -> None:
    """Every file the node's daemons read, into ``lay.root`` (certificates come from ``pki``)."""
    lay.containerd_dir.mkdir(parents=True, exist_ok=True)
    lay.containerd_config.write_text(containerd_config(lay, sandbox_image))
    lay.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    (lay.cni_conf_dir / "10-k8slab.conflist").write_text(json.dumps(cni_config(lay), indent=2))
    p = lay.pki
    for name, user, cert, key in (
        ("kubelet.kubeconfig", f"system:node:{NODE_NAME}", p.kubelet_cert, p.kubelet_key),
        ("kube-proxy.kubeconfig", "system:kube-proxy", p.proxy_cert, p.proxy_key),
    ):
        kubeconfigs.write(lay.file(name), kubeconfig(lay, user, cert, key))
    lay.file("kubelet.yaml").write_text(yaml.safe_dump(kubelet_config(lay, kubelet_healthz, taints)))
    lay.file("kube-proxy.yaml").write_text(yaml.safe_dump(kube_proxy_config(lay, *proxy_ports)))


def containerd(lay: NodeLayout) -> list[str]:
    return [lay.binary("containerd"), f"--config={lay.containerd_config}", "--log-level=info"]


def kubelet(lay: NodeLayout) -> list[str]:
    labels = ",".join(f"{k}={v}" for k, v in REAL_NODE_LABELS.items())
    return [
        lay.binary("kubelet"),
        f"--config={lay.file('kubelet.yaml')}",
        f"--kubeconfig={lay.file('kubelet.kubeconfig')}",
        f"--root-dir={lay.kubelet_dir}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={nodehost.NODE_IP}",
        f"--node-labels={labels}",
        "--v=1",
    ]


def kube_proxy(lay: NodeLayout) -> list[str]:
    return [lay.binary("kube-proxy"), f"--config={lay.file('kube-proxy.yaml')}", "--v=1"]


def ctr(lay: NodeLayout, *args: str) -> list[str]:
    return [lay.binary("ctr"), f"--address={lay.socket}", "--namespace=k8s.io", *args]

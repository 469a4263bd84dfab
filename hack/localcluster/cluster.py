"""One local cluster: its folder, ports, processes and kubeconfig.

Role: ``LocalCluster.start_control_plane()`` runs etcd + kube-apiserver (the envtest tier);
``start_workloads()`` adds kube-controller-manager, kube-scheduler, kwok and fake nodes (the full
tier: scheduling, Ready pods, garbage collection); ``start_real_node()`` adds a real node
(containerd, kubelet, kube-proxy: containers run) next to kwok's when the machine allows it;
``stop()`` drains and tears the real node down, then stops all in reverse order.

The API, after envtest's control plane: ``ClusterSettings(extra_flags={component: [...]})``
merges flags over a component's defaults (``components.merge_flags``); ``add_user(name,
groups)`` returns the kubeconfig of a new user, a client certificate signed by the cluster CA;
``kubeconfig.write`` is the one kubeconfig writer, ``http()`` the one authenticated HTTP helper
(``adminapi.ApiHttp``); ``extra_apiserver`` runs a second kube-apiserver on the same etcd with
flags of its own (an admission plugin the first lacks).

A detached cluster (``make cluster-up``) saves its state to ``state.json`` so that a later command
can report on it or stop it.
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from localcluster import components, kubeconfig, node, nodehost, ociimage, pki, processes
from localcluster.adminapi import AdminApi, ApiHttp, insecure_healthz
from localcluster.components import Layout, Ports
from localcluster.processes import ComponentFailed, Proc

STATE_FILE = "state.json"
NODE_PROCS = ("apiserver-forward", "containerd", "kubelet", "kube-proxy")
# RBAC for the apiserver's calls to kubelets (logs, exec, port-forward), checked by the kubelet's
# webhook authorizer.
APISERVER_KUBELET_BINDING = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRoleBinding",
    "metadata": {"name": "k8s-lab:apiserver-kubelet-api-admin"},
    "roleRef": {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "system:kubelet-api-admin",
    },
    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": pki.KUBELET_CLIENT_USER}],
}


class RealNodeUnavailable(RuntimeError):
    """This machine cannot run a real node; the message says why in one line."""


@dataclass(frozen=True)
class ClusterSettings:
    root: Path
    bin_dir: Path
    detach: bool = False  # True: processes outlive this Python process (make cluster-up)
    nodes: int = 1  # kwok fake nodes
    pods_per_node: int = components.DEFAULT_PODS_PER_NODE
    start_timeout: float = 120.0
    # Per component ("kube-apiserver", "etcd", ...): flags merged over its defaults, e.g.
    # {"kube-apiserver": ["--enable-admission-plugins=NodeRestriction,AlwaysPullImages"]}.
    extra_flags: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.extra_flags) - set(components.COMMANDS)
        if unknown:
            raise ValueError(
                f"extra_flags for unknown components {sorted(unknown)}: {sorted(components.COMMANDS)}"
            )
        for flags in self.extra_flags.values():
            components.merge_flags(["check"], flags)  # a malformed flag fails here, not at start-up


# Listening ports are picked below the kernel's ephemeral range. A port the kernel hands out for
# bind(0) is an ephemeral one, and between our check and the component's own bind (a second or
# two of start-up) any outgoing connection on the machine may take it as its local port: the
# component then fails to start (seen in CI: an operator replica exiting with its port taken).
# Below the range only another listener can take it.
LISTEN_PORTS = range(20000, 32768)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port nobody listens on now, outside the ephemeral range where the kernel can
    give it to an outgoing connection; random, so that concurrent callers rarely pick the same."""
    ports = range(LISTEN_PORTS.start, min(LISTEN_PORTS.stop, _ephemeral_low()))
    for _ in range(100):
        port = random.choice(ports)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # a crowded range: any free one
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalCluster:
    def __init__(self, settings: ClusterSettings, *, ports: Ports | None = None) -> None:
        self.settings = settings
        ports = ports or Ports(*(free_port() for _ in range(9)))
        self.layout = Layout(
            root=settings.root,
            bin_dir=settings.bin_dir,
            ports=ports,
            pki=pki.PkiPaths.under(settings.root / "pki"),
        )
        self.procs: list[Proc] = []
        self.real_node = False
        self._api: AdminApi | None = None

    # --- what users of the cluster need ---------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.layout.ports.apiserver}"

    @property
    def kubeconfig(self) -> Path:
        return self.layout.kubeconfig

    @property
    def api(self) -> AdminApi:
        if self._api is None:
            self._api = AdminApi(self.server, self.layout.pki)
        return self._api

    def http(self, kubeconfig_path: Path | None = None, *, server: str | None = None) -> ApiHttp:
        """Requests as the user of ``kubeconfig_path`` (default: the admin), to ``server`` if given."""
        return ApiHttp.from_kubeconfig(kubeconfig_path or self.kubeconfig, server=server)

    def argv(self, name: str, extra: Sequence[str] = ()) -> list[str]:
        """The command line of the component ``name``: defaults, the settings' extra flags, ``extra``."""
        return components.merge_flags(components.command(name, self.layout, self.settings.extra_flags), extra)

    def add_user(self, name: str, groups: Sequence[str] = ()) -> Path:
        """A new user ``name`` in ``groups``: the path of a kubeconfig with its client certificate.

        The apiserver authenticates it (the cluster CA signed it) and RBAC decides the rest: it
        may do nothing until bound to a role, unless a group (``system:masters``) says otherwise.
        """
        folder = self.layout.root / "users" / name
        cert, key = pki.user_credentials(self.layout.pki, folder, name, tuple(groups))
        config = kubeconfig.build(
            self.server,
            self.layout.pki.ca_cert.read_bytes(),
            name,
            cert_pem=cert.read_bytes(),
            key_pem=key.read_bytes(),
        )
        return kubeconfig.write(folder / "kubeconfig", config)

    @contextmanager
    def extra_apiserver(self, name: str, extra: Sequence[str]) -> Iterator[str]:
        """A second kube-apiserver on this cluster's etcd, with ``extra`` flags merged over the
        first one's; yields its URL once ready, stops it afterwards. Same CA, certificates and
        service-account keys: every credential of the cluster works there too."""
        port = free_port()
        folder = self.layout.root / name
        argv = self.argv(
            "kube-apiserver", [f"--secure-port={port}", f"--cert-dir={folder / 'certs'}", *extra]
        )
        proc = processes.spawn(name, argv, self.layout.log(name), detach=False)
        server = f"https://127.0.0.1:{port}"
        try:
            api = ApiHttp(server, self.layout.pki.ca_cert.read_bytes())
            self._wait(f"{name} /readyz", api.readyz, [proc])
            yield server
        finally:
            processes.stop(proc, timeout=10)

    @property
    def full(self) -> bool:
        return any(p.name == "kwok" for p in self.procs)

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [self.layout.binary("kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        return subprocess.run(argv, check=check, capture_output=True, text=True, input=input)

    # --- start and stop --------------------------------------------------------------------

    def start_control_plane(self) -> None:
        lay = self.layout
        lay.root.mkdir(parents=True, exist_ok=True)
        pki.generate(lay.root / "pki")
        etcd = self._spawn("etcd", self.argv("etcd"))
        self._wait("etcd health", lambda: _etcd_healthy(lay.ports.etcd_client), [etcd])
        apiserver = self._spawn("kube-apiserver", self.argv("kube-apiserver"))
        self._wait("kube-apiserver /readyz", self.api.readyz, [etcd, apiserver])
        self._write_kubeconfig()
        self._save_state()

    def start_workloads(self) -> None:
        """Add the controllers, the scheduler and kwok's fake nodes; wait until pods can run."""
        if self.full:
            return
        lay = self.layout
        cm = self._spawn("kube-controller-manager", self.argv("kube-controller-manager"))
        sched = self._spawn("kube-scheduler", self.argv("kube-scheduler"))
        kwok = self._spawn("kwok", self.argv("kwok"))
        self._save_state()
        watch = list(self.procs)
        port = lay.ports
        self._wait(
            "controller-manager /healthz",
            lambda: insecure_healthz(f"https://127.0.0.1:{port.controller_manager}/healthz"),
            watch,
        )
        self._wait(
            "scheduler /healthz",
            lambda: insecure_healthz(f"https://127.0.0.1:{port.scheduler}/healthz"),
            watch,
        )
        del cm, sched, kwok
        names = [f"kwok-node-{i}" for i in range(self.settings.nodes)]
        for name in names:
            self.api.create("/api/v1/nodes", components.fake_node(name, self.settings.pods_per_node))
        for name in names:
            self._wait(f"node {name} Ready", lambda n=name: self._node_ready(n), watch)
        # Pods are refused in a namespace until the controller-manager made its `default` SA.
        self._wait(
            "ServiceAccount default/default",
            lambda: self.api.get("/api/v1/namespaces/default/serviceaccounts/default") is not None,
            watch,
        )

    @property
    def node_layout(self) -> node.NodeLayout:
        return node.NodeLayout(
            root=self.layout.root / "node",
            bin_dir=self.layout.bin_dir,
            cluster_pki=self.layout.pki,
            server=self.server,
        )

    def start_real_node(
        self, *, taint_self: bool = False, taint_kwok: bool = True, sandbox_image: str = ociimage.PAUSE_IMAGE
    ) -> None:
        """Add the real node (needs the full tier). Raises RealNodeUnavailable if this machine can't.

        ``taint_self``: keep pods off it unless they tolerate ``node.REAL_NODE_TAINT`` (tests);
        ``taint_kwok``: taint kwok's nodes instead, so pods land on the real node by default;
        ``sandbox_image``: the name our pause image is imported as and containerd's sandbox image.
        """
        nodehost.clear_stale_owner()
        reason = node.preflight(self.layout.bin_dir)
        if reason is not None:
            raise RealNodeUnavailable(reason)
        lay = self.node_layout
        self._prepare_host(lay)
        ports = self.layout.ports
        taints = [node.REAL_NODE_TAINT] if taint_self else []
        node.write_configs(
            lay, ports.kubelet_healthz, (ports.proxy_healthz, ports.proxy_metrics), taints, sandbox_image
        )
        self._start_containerd(lay, sandbox_image)
        self._start_kubelet_and_proxy(lay)
        if taint_kwok:
            self._taint_kwok_nodes()

    def _prepare_host(self, lay: node.NodeLayout) -> None:
        """Claim the machine's one real node, then its bridge, routes, cgroups, forwarder, certificates."""
        lay.root.mkdir(parents=True, exist_ok=True)
        nodehost.claim(self.layout.root)
        self.real_node = True  # from here on, stop() tears the node down
        self._save_state()
        nodehost.save_sysctls()
        nodehost.setup_network()
        nodehost.route_services(components.SERVICE_CIDR)
        nodehost.setup_cgroups()
        self._start_apiserver_forward(lay)
        pki.node_credentials(self.layout.pki, lay.root / "pki", node.NODE_NAME, nodehost.NODE_IP)

    def _start_kubelet_and_proxy(self, lay: node.NodeLayout) -> None:
        self.api.create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", APISERVER_KUBELET_BINDING)
        self._spawn("kubelet", node.kubelet(lay), env=lay.env())
        self._wait(f"node {node.NODE_NAME} Ready", lambda: self._node_ready(node.NODE_NAME), list(self.procs))
        self._spawn("kube-proxy", node.kube_proxy(lay), env=lay.env())
        port = self.layout.ports.proxy_healthz
        self._wait(
            "kube-proxy /healthz", lambda: _http_ok(f"http://127.0.0.1:{port}/healthz"), list(self.procs)
        )

    def _start_apiserver_forward(self, lay: node.NodeLayout) -> None:
        """Pods reach the apiserver (the `kubernetes` Service) at the node IP: see ``forward``."""
        port = self.layout.ports.apiserver
        argv = [
            sys.executable,
            "-m",
            "localcluster.forward",
            f"{components.ADVERTISE_ADDRESS}:{port}",
            f"127.0.0.1:{port}",
            f"--tag={lay.root}",
        ]
        self._spawn("apiserver-forward", argv)
        self._wait(
            "apiserver through the node IP",
            lambda: _tcp_open(components.ADVERTISE_ADDRESS, port),
            list(self.procs),
        )

    def _start_containerd(self, lay: node.NodeLayout, sandbox_image: str) -> None:
        self._spawn("containerd", node.containerd(lay), env=lay.env(no_pulls=True))
        self._wait("containerd socket", lambda: _ctr_ok(lay), list(self.procs))
        archive = ociimage.pause_archive(lay.root / "images", sandbox_image)
        self.import_image(archive)

    def import_image(self, archive: Path) -> None:
        """Import an OCI archive into the real node's containerd (the CRI's k8s.io namespace)."""
        lay = self.node_layout
        argv = node.ctr(lay, "images", "import", f"--snapshotter={node.snapshotter()}", str(archive))
        result = subprocess.run(argv, capture_output=True, text=True, env=lay.env())
        if result.returncode != 0:
            raise ComponentFailed(f"ctr images import {archive}: {result.stderr.strip()}")

    def tag_image(self, source: str, target: str) -> None:
        """Give an image the real node has a second name (replacing whatever had that name)."""
        lay = self.node_layout
        argv = node.ctr(lay, "images", "tag", "--force", source, target)
        result = subprocess.run(argv, capture_output=True, text=True, env=lay.env())
        if result.returncode != 0:
            raise ComponentFailed(f"ctr images tag {source} {target}: {result.stderr.strip()}")

    def _taint_kwok_nodes(self) -> None:
        nodes = self.api.get("/api/v1/nodes") or {"items": []}
        for item in nodes["items"]:
            if item["metadata"].get("labels", {}).get("type") == "kwok":
                self.api.patch(
                    f"/api/v1/nodes/{item['metadata']['name']}", {"spec": {"taints": [node.KWOK_TAINT]}}
                )

    def drain_real_node(self, timeout: float = 30.0) -> None:
        """Cordon the real node and delete its pods; the kubelet stops them and frees their network."""
        name = node.NODE_NAME
        try:
            self.api.patch(f"/api/v1/nodes/{name}", {"spec": {"unschedulable": True}})
            pods = self.api.get(f"/api/v1/pods?fieldSelector=spec.nodeName%3D{name}") or {"items": []}
            for pod in pods["items"]:
                meta = pod["metadata"]
                self.api.delete(
                    f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}?gracePeriodSeconds=0"
                )
            processes.wait_for(
                "real node's containers stopped",
                lambda: not _running_tasks(self.node_layout),
                timeout=timeout,
                watch=[],
            )
        except (OSError, RuntimeError, ComponentFailed):
            pass  # the forceful teardown that follows does the rest

    def stop_real_node(self) -> list[str]:
        """Drain, stop containerd/kubelet/kube-proxy and undo the node's host changes; returns errors."""
        if not self.real_node:
            return []
        if any(p.name == "kubelet" and processes.alive(p) for p in self.procs):
            self.drain_real_node()
        for proc in reversed(self.procs):
            if proc.name in NODE_PROCS:
                processes.stop(proc)
        self.procs = [p for p in self.procs if p.name not in NODE_PROCS]
        errors = nodehost.teardown(self.layout.root)
        self.real_node = False
        self._save_state()
        return errors

    def stop(self) -> None:
        """Stop every process, newest first (the real node first, then kwok, the apiserver, etcd)."""
        errors = self.stop_real_node()
        if errors:
            print(f"real node teardown left: {'; '.join(errors)}", flush=True)
        for proc in reversed(self.procs):
            processes.stop(proc)
        self.procs.clear()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.layout.root, ignore_errors=True)

    # --- health ---------------------------------------------------------------------------

    def health(self) -> dict[str, bool]:
        """Each component's liveness and, for the apiserver, readiness; plus every node's Ready."""
        report = {p.name: processes.alive(p) for p in self.procs}
        try:
            report["apiserver /readyz"] = self.api.readyz()
            if self.full:
                nodes = self.api.get("/api/v1/nodes") or {"items": []}
                for node in nodes["items"]:
                    report[f"node {node['metadata']['name']} Ready"] = _is_ready(node)
        except OSError:
            report["apiserver /readyz"] = False
        return report

    # --- internals ------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = processes.spawn(name, argv, self.layout.log(name), detach=self.settings.detach, env=env)
        self.procs.append(proc)
        # Recorded at once: if start-up is interrupted now, `cluster-down` still finds it.
        self._save_state()
        return proc

    def _wait(self, what: str, check: Any, watch: list[Proc]) -> None:
        processes.wait_for(what, check, timeout=self.settings.start_timeout, watch=watch)

    def _node_ready(self, name: str) -> bool:
        node = self.api.get(f"/api/v1/nodes/{name}")
        return node is not None and _is_ready(node)

    def _write_kubeconfig(self) -> None:
        p = self.layout.pki
        config = kubeconfig.build(
            self.server,
            p.ca_cert.read_bytes(),
            "k8s-lab-admin",
            cert_pem=p.admin_cert.read_bytes(),
            key_pem=p.admin_key.read_bytes(),
            context=kubeconfig.CLUSTER,  # `--context=k8s-lab`, as the admin's context was always named
        )
        kubeconfig.write(self.kubeconfig, config)

    def _save_state(self) -> None:
        if not self.layout.root.is_dir():
            return  # destroyed already
        state = {
            "ports": asdict(self.layout.ports),
            "bin_dir": str(self.layout.bin_dir),
            "real_node": self.real_node,
            "extra_flags": {name: list(flags) for name, flags in self.settings.extra_flags.items()},
            "procs": [p.state() for p in self.procs],
        }
        (self.layout.root / STATE_FILE).write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, root: Path) -> LocalCluster | None:
        """The cluster a detached start left in ``root``, or None if there is none."""
        try:
            state = json.loads((root / STATE_FILE).read_text())
        except (FileNotFoundError, ValueError):
            return None
        settings = ClusterSettings(
            root=root, bin_dir=Path(state["bin_dir"]), detach=True, extra_flags=state.get("extra_flags", {})
        )
        cluster = cls(settings, ports=Ports(**state["ports"]))
        cluster.procs = [Proc(**{**p, "log": Path(p["log"])}) for p in state["procs"]]
        cluster.real_node = bool(state.get("real_node", False))
        return cluster

    # --- fault injection (tests/chaos) ----------------------------------------------------

    def restart(self, name: str, *, grace: float = 0.0) -> Proc:
        """Stop the component ``name`` and start it again with the same command line, ports and
        data; return once it is healthy. ``grace`` 0 kills it with SIGKILL (a crash), else SIGTERM
        first. Clients keep their kubeconfig and addresses: they see an outage, not a new cluster.
        """
        port = self.layout.ports
        healthy = {
            "etcd": lambda: _etcd_healthy(port.etcd_client),
            "kube-apiserver": self.api.readyz,
            "kube-controller-manager": lambda: insecure_healthz(
                f"https://127.0.0.1:{port.controller_manager}/healthz"
            ),
            "kube-scheduler": lambda: insecure_healthz(f"https://127.0.0.1:{port.scheduler}/healthz"),
            "kwok": lambda: True,
        }
        index = next((i for i, p in enumerate(self.procs) if p.name == name), None)
        if index is None:
            raise ValueError(f"no running component named {name!r}: {[p.name for p in self.procs]}")
        processes.stop(self.procs[index], timeout=grace)
        argv = self.argv(name)
        proc = processes.spawn(name, argv, self.layout.log(name), detach=self.settings.detach)
        self.procs[index] = proc  # same place: stop() still stops the components newest first
        self._save_state()
        self._wait(f"{name} healthy after a restart", healthy[name], [proc])
        return proc


def _etcd_healthy(port: int) -> bool:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
        return bool(json.loads(resp.read()).get("health") == "true")


def _is_ready(node: dict[str, Any]) -> bool:
    conditions = node.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _http_ok(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as resp:
        return bool(resp.status == 200)


def _tcp_open(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=2):
        return True


def _ctr_ok(lay: node.NodeLayout) -> bool:
    if not lay.socket.exists():
        return False
    return subprocess.run(node.ctr(lay, "version"), capture_output=True, env=lay.env()).returncode == 0


def _running_tasks(lay: node.NodeLayout) -> bool:
    result = subprocess.run(node.ctr(lay, "tasks", "ls", "-q"), capture_output=True, text=True, env=lay.env())
    return result.returncode == 0 and bool(result.stdout.strip())

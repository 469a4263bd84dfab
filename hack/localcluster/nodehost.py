"""The real node's footprint on the host: set it up, tear it down, and list what is left.

Role: everything a real node changes outside its own folder, in one place, so that
``make cluster-down`` (and a test) can undo and check it. The node runs in the host's network
namespace (no netns of its own: the kubelet must reach the apiserver on 127.0.0.1, which binds
loopback only). What it owns on the host:

- the bridge ``k8slab0`` the project creates with the node's address ``10.245.0.1/24``. That
  address is the node IP (not loopback, local to this machine, so the apiserver reaches the
  kubelet) and the pods' gateway; the CNI bridge plugin attaches the pods' veths to it, and a
  route sends the Service range there too, so a ClusterIP never leaves the machine even when
  kube-proxy has no rule for it;
- a chain ``K8SLAB-FORWARD`` atop mangle's FORWARD that drops anything routed from the pods
  to another interface or from another interface to the pods (the bridge plugin turns IP
  forwarding on; no pod traffic may leave the machine, and there is no masquerade);
- the cgroup subtree ``/k8slab`` in every v1 hierarchy (the kubelet's ``cgroupRoot``): the
  pods' processes are found and killed there even when the kubelet and shims are gone;
- the chains kube-proxy, the kubelet and the CNI plugins make (``KUBE-*``, ``CNI-*``) in IPv4 and
  IPv6 tables, sysctls the kubelet and the bridge plugin change (saved before in ``SYSCTLS_FILE``,
  restored after),
  and the kubelet's symlinks in ``/var/log/containers``.

These names are machine-wide, so one real node runs per machine: ``OWNER_FILE`` says whose it
is, and a second cluster falls back to kwok alone. Mounts (the kubelet's root dir, pods'
volumes, containers' root filesystems, the pods' network namespaces) and processes (kubelet,
kube-proxy, containerd, its shims) all live under or name the cluster's folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

BRIDGE = "k8slab0"
NODE_CIDR = "10.245.0.0/24"  # not kwok's 10.244.0.0/16 nor the Service range 10.96.0.0/16
NODE_IP = "10.245.0.1"
NODE_PREFIX = 24
CGROUP_ROOT = "k8slab"
CGROUP_FS = Path("/sys/fs/cgroup")
FORWARD_CHAIN = "K8SLAB-FORWARD"
OWNER_FILE = Path("/run/k8s-lab-real-node")
# The sysctls as they were before the node: next to the owner file, so that they are restored even
# when the cluster's folder was deleted before its node was torn down.
SYSCTLS_FILE = Path("/run/k8s-lab-real-node.sysctls.json")
CHAIN_PREFIXES = ("KUBE-", "CNI-", "K8SLAB-")
TABLES = ("filter", "nat", "mangle", "raw")
CONTAINER_LOGS = Path("/var/log/containers")
CNI_CACHE = Path("/var/lib/cni/results")
# Paths containerd and the kubelet use whatever their configuration says: shim sockets, libcni's
# cache, the kubelet's log links. Removed at teardown when empty (never someone else's files).
FIXED_DIRS = (
    Path("/run/containerd/s"),
    Path("/run/containerd/runc/k8s.io"),
    Path("/run/containerd/runc"),
    Path("/run/containerd"),
    CNI_CACHE,
    CNI_CACHE.parent,
    CONTAINER_LOGS,
)
SHIM_SOCKETS = Path("/run/containerd/s")
# Sysctls the kubelet (setupKernelTunables) and the CNI bridge plugin (IP forwarding) change.
SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/ipv6/conf/all/forwarding",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
MNT_DETACH = 2


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


# --- ownership --------------------------------------------------------------------------------


def owner() -> Path | None:
    """The cluster folder whose real node runs on this machine, if any."""
    try:
        return Path(OWNER_FILE.read_text().strip())
    except FileNotFoundError:
        return None


def clear_stale_owner(grace: float = 60.0) -> None:
    """Tear down a real node whose processes are all gone (killed, machine rebooted, folder deleted).

    ``grace``: a node claimed less than this ago may still be starting; it is left alone.
    """
    current = owner()
    if current is None or _pids_naming(current / "node"):
        return
    with contextlib.suppress(FileNotFoundError):
        if time.time() - OWNER_FILE.stat().st_mtime < grace:
            return
    teardown(current)


def claim(root: Path) -> None:
    OWNER_FILE.write_text(str(root))


def owns(root: Path) -> bool:
    current = owner()
    return current == root or (current is None and (root / "node").exists())


# --- set up -------------------------------------------------------------------------------------


def save_sysctls(path: Path = SYSCTLS_FILE) -> None:
    values = {}
    for key in SYSCTLS:
        with contextlib.suppress(OSError):
            values[key] = (Path("/proc/sys") / key).read_text().strip()
    path.write_text(json.dumps(values, indent=2))


def restore_sysctls(path: Path = SYSCTLS_FILE) -> None:
    try:
        values = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return
    for key, value in values.items():
        with contextlib.suppress(OSError):
            (Path("/proc/sys") / key).write_text(value)


def setup_network() -> None:
    """The bridge with the node address, the Service route onto it, and the forward guard."""
    run("ip", "link", "add", BRIDGE, "type", "bridge")
    run("ip", "addr", "add", f"{NODE_IP}/{NODE_PREFIX}", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
    # In mangle, which the kernel walks before filter: kube-proxy's jumps at the top of filter's
    # FORWARD cannot get ahead of it.
    guard = ("iptables", "-w", "-t", "mangle")
    run(*guard, "-N", FORWARD_CHAIN)
    run(*guard, "-A", FORWARD_CHAIN, "-i", BRIDGE, "-o", BRIDGE, "-j", "RETURN")
    run(*guard, "-A", FORWARD_CHAIN, "-i", BRIDGE, "-j", "DROP")
    run(*guard, "-A", FORWARD_CHAIN, "-o", BRIDGE, "-j", "DROP")
    run(*guard, "-I", "FORWARD", "1", "-j", FORWARD_CHAIN)


def route_services(service_cidr: str) -> None:
    run("ip", "route", "replace", service_cidr, "dev", BRIDGE, "src", NODE_IP)


def setup_cgroups() -> None:
    """``/k8slab`` in every v1 hierarchy; cpuset needs its cpus and mems before it takes tasks."""
    for hierarchy in _hierarchies():
        folder = hierarchy / CGROUP_ROOT
        folder.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / name).exists() and not (folder / name).read_text().strip():
                (folder / name).write_text((hierarchy / name).read_text())


def _hierarchies() -> list[Path]:
    if not CGROUP_FS.is_dir():
        return []
    return [p for p in CGROUP_FS.iterdir() if p.is_dir() and (p / "cgroup.procs").exists()]


# --- tear down ----------------------------------------------------------------------------------


def teardown(root: Path) -> list[str]:
    """Undo everything of the real node of ``root`` (forcefully; safe to repeat). Returns errors."""
    errors: list[str] = []
    machine_wide = owns(root)
    # Only the node's own processes and mounts: the control plane's name the cluster folder too.
    node_dir = root / "node"
    kill_processes(node_dir)
    if machine_wide:
        kill_cgroup(errors)
    unmount_under(node_dir, errors)
    if machine_wide:
        remove_cgroups(errors)
        remove_network(errors)
        remove_chains(errors)
        restore_sysctls()
        _remove_host_files(root)
        SYSCTLS_FILE.unlink(missing_ok=True)
        OWNER_FILE.unlink(missing_ok=True)
    return errors


def _pids_naming(root: Path) -> list[int]:
    needle = str(root).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if needle in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _wait_gone(list_pids: Callable[[], list[int]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while list_pids():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def kill_processes(root: Path, timeout: float = 10.0) -> None:
    """SIGTERM every process whose command line names ``root`` (the node's folder: kubelet,
    kube-proxy, containerd, shims), then SIGKILL what is left."""
    _signal_all(_pids_naming(root), signal.SIGTERM)
    if not _wait_gone(lambda: _pids_naming(root), timeout):
        _signal_all(_pids_naming(root), signal.SIGKILL)
        _wait_gone(lambda: _pids_naming(root), 5.0)


def _cgroup_pids() -> list[int]:
    pids: set[int] = set()
    for hierarchy in _hierarchies():
        for procs in (hierarchy / CGROUP_ROOT).rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(line) for line in procs.read_text().split())
    return sorted(pids)


def kill_cgroup(errors: list[str]) -> None:
    """SIGKILL the pods' processes left in ``/k8slab`` (their shims may be gone already)."""
    for _ in range(3):
        _signal_all(_cgroup_pids(), signal.SIGKILL)
        if _wait_gone(_cgroup_pids, 5.0):
            return
    errors.append(f"processes left in cgroup /{CGROUP_ROOT}: {_cgroup_pids()}")


def mounts_under(root: Path) -> list[str]:
    prefix = str(root).rstrip("/") + "/"
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix) or point == str(root):
            found.append(point)
    return found


def unmount_under(root: Path, errors: list[str]) -> None:
    """Detach every mount at or below ``root``, deepest first (repeated: mounts can stack)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    for _ in range(5):
        points = sorted(set(mounts_under(root)), key=len, reverse=True)
        if not points:
            return
        for point in points:
            libc.umount2(point.encode(), MNT_DETACH)
    errors.append(f"mounts left under {root}: {mounts_under(root)}")


def remove_cgroups(errors: list[str]) -> None:
    for hierarchy in _hierarchies():
        top = hierarchy / CGROUP_ROOT
        if not top.exists():
            continue
        for folder in sorted(
            (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            with contextlib.suppress(OSError):
                folder.rmdir()
        try:
            top.rmdir()
        except OSError as err:
            errors.append(f"cgroup {top}: {err}")


def remove_network(errors: list[str]) -> None:
    """The pods' veths still on the bridge, the bridge (its routes go with it), the forward guard."""
    links = run("ip", "-j", "link", "show", "master", BRIDGE, check=False)
    if links.returncode == 0 and links.stdout.strip():
        for link in json.loads(links.stdout):
            run("ip", "link", "del", link["ifname"], check=False)
    if run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        result = run("ip", "link", "del", BRIDGE, check=False)
        if result.returncode != 0:
            errors.append(f"bridge {BRIDGE}: {result.stderr.strip()}")


def _our_chains(tool: str, table: str) -> tuple[list[str], list[str]]:
    """(chains of ours, rules in other chains that jump to ours) in one table, from ``-S``."""
    result = run(tool, "-w", "-t", table, "-S", check=False)
    if result.returncode != 0:
        return [], []
    chains, jumps = [], []
    for line in result.stdout.splitlines():
        words = line.split()
        if words[:1] == ["-N"] and words[1].startswith(CHAIN_PREFIXES):
            chains.append(words[1])
        elif words[:1] == ["-A"] and not words[1].startswith(CHAIN_PREFIXES) and _jumps_to_ours(words):
            jumps.append(line)
    return chains, jumps


def _tables(tool: str) -> tuple[str, ...]:
    """The tables to look at; for the legacy twins only those the kernel has already (listing one
    with the legacy tool would create it)."""
    if not tool.endswith("-legacy"):
        return TABLES if shutil.which(tool) else ()
    names = Path("/proc/net/ip6_tables_names" if tool.startswith("ip6") else "/proc/net/ip_tables_names")
    try:
        loaded = names.read_text().split()
    except OSError:
        return ()
    return tuple(t for t in TABLES if t in loaded) if shutil.which(tool) else ()


def _tools() -> list[str]:
    """iptables and ip6tables, and their legacy twins where installed (a rule there counts too)."""
    return ["iptables", "ip6tables", "iptables-legacy", "ip6tables-legacy"]


def _jumps_to_ours(words: list[str]) -> bool:
    return any(
        w in ("-j", "-g") and i + 1 < len(words) and words[i + 1].startswith(CHAIN_PREFIXES)
        for i, w in enumerate(words)
    )


def remove_chains(errors: list[str]) -> None:
    """Unhook, flush and delete every KUBE-*, CNI-* and K8SLAB-* chain, IPv4 and IPv6."""
    for tool in _tools():
        for table in _tables(tool):
            chains, jumps = _our_chains(tool, table)
            for rule in jumps:  # `-S` quotes comments: split like a shell
                run(tool, "-w", "-t", table, "-D", *shlex.split(rule)[1:], check=False)
            for chain in chains:
                run(tool, "-w", "-t", table, "-F", chain, check=False)
            for chain in chains:
                if run(tool, "-w", "-t", table, "-X", chain, check=False).returncode != 0:
                    errors.append(f"{tool} -t {table} chain {chain} not deleted")


def _remove_host_files(root: Path) -> None:
    for link in _container_log_links(root):
        link.unlink(missing_ok=True)
    for cached in _cni_cache_files():
        cached.unlink(missing_ok=True)
    for folder in FIXED_DIRS:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty


def _container_log_links(root: Path) -> list[Path]:
    if not CONTAINER_LOGS.is_dir():
        return []
    prefix = str(root) + "/"
    return [p for p in CONTAINER_LOGS.iterdir() if p.is_symlink() and os.readlink(p).startswith(prefix)]


def _cni_cache_files() -> list[Path]:
    # libcni names them <network>-<container id>-<interface>; our network is "k8slab".
    return sorted(CNI_CACHE.glob("k8slab-*")) if CNI_CACHE.is_dir() else []


# --- leftovers ----------------------------------------------------------------------------------


def leftovers(root: Path) -> list[str]:
    """Everything a real node of ``root`` could leave behind that is still there (empty: clean).

    Checked: processes naming ``root/node`` (kubelet, kube-proxy, containerd, shims), processes in
    the ``/k8slab`` cgroups and those cgroups, mounts under the folder, network namespaces of
    pods under /var/run/netns, the bridge, KUBE-*/CNI-*/K8SLAB-* chains in every IPv4 and IPv6
    table, the kubelet's log symlinks, libcni's cache files, containerd shims' sockets in
    /run/containerd/s, the ownership file.
    """
    node_dir = root / "node"
    found = [f"process {pid}: {_cmdline(pid)}" for pid in _pids_naming(node_dir)]
    found += [f"process {pid} in cgroup /{CGROUP_ROOT}" for pid in _cgroup_pids()]
    found += [f"cgroup {h / CGROUP_ROOT}" for h in _hierarchies() if (h / CGROUP_ROOT).exists()]
    found += [f"mount {point}" for point in mounts_under(node_dir)]
    found += [f"network namespace {ns}" for ns in _cni_netns()]
    if run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        found.append(f"bridge {BRIDGE}")
    found += _chain_leftovers()
    found += [f"log link {p}" for p in _container_log_links(root)]
    found += [f"CNI cache {p}" for p in _cni_cache_files()]
    found += [f"shim socket {p}" for p in (sorted(SHIM_SOCKETS.iterdir()) if SHIM_SOCKETS.is_dir() else [])]
    if owner() == root:
        found.append(f"ownership file {OWNER_FILE}")
    if SYSCTLS_FILE.exists() and owner() in (root, None):
        found.append(f"sysctl snapshot {SYSCTLS_FILE} (sysctls not restored)")
    return found


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    return "?"


def _cni_netns() -> list[str]:
    folder = Path("/var/run/netns")
    return sorted(str(p) for p in folder.glob("cni-*")) if folder.is_dir() else []


def _chain_leftovers() -> list[str]:
    found = []
    for tool in _tools():
        for table in _tables(tool):
            chains, _ = _our_chains(tool, table)
            found += [f"{tool} -t {table} chain {chain}" for chain in chains]
    return found


def bridge_exists() -> bool:
    return run("ip", "link", "show", BRIDGE, check=False).returncode == 0

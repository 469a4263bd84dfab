"""The real node's generated files and the OCI archive writer: pure checks, no processes.

Role: pins the settings the project's machines need (see ``localcluster.node``'s docstring) so a
refactor cannot drop one silently, and checks that an OCI archive is self-consistent (every
descriptor's digest and size match its blob, the config names the layer's diff id).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import shlex
import tarfile
from pathlib import Path

from localcluster import components, node, nodehost, ociimage
from localcluster.pki import PkiPaths


def _layout(tmp_path: Path) -> node.NodeLayout:
    return node.NodeLayout(
        root=tmp_path / "node",
        bin_dir=tmp_path / "bin",
        cluster_pki=PkiPaths.under(tmp_path / "pki"),
        server="https://127.0.0.1:6443",
    )


def test_pod_range_overlaps_neither_kwok_nor_services() -> None:
    pods = ipaddress.ip_network(nodehost.NODE_CIDR)
    assert not pods.overlaps(ipaddress.ip_network(components.POD_CIDR))
    assert not pods.overlaps(ipaddress.ip_network(components.SERVICE_CIDR))
    node_ip = ipaddress.ip_address(nodehost.NODE_IP)
    assert node_ip in pods and not node_ip.is_loopback


def test_containerd_config_keeps_everything_in_the_node_folder(tmp_path: Path) -> None:
    lay = _layout(tmp_path)
    text = node.containerd_config(lay)
    assert "restrict_oom_score_adj = true" in text
    assert "netns_mounts_under_state_dir = true" in text
    assert f'sandbox = "{ociimage.PAUSE_IMAGE}"' in text
    assert "imports = []" in text
    for line in text.splitlines():
        if line.strip().startswith(("root", "state", "address", "path", "conf_dir", "bin_dirs")):
            assert str(tmp_path) in line, line


def test_kubelet_config_accepts_cgroup_v1_and_never_evicts(tmp_path: Path) -> None:
    config = node.kubelet_config(_layout(tmp_path), 10248, [node.REAL_NODE_TAINT])
    assert config["failCgroupV1"] is False
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["authorization"] == {"mode": "Webhook"}
    assert config["address"] == nodehost.NODE_IP
    assert all(v == "0%" for v in config["evictionHard"].values())  # type: ignore[attr-defined]
    assert config["registerWithTaints"] == [node.REAL_NODE_TAINT]


def test_cni_config_uses_the_bridge_without_masquerade(tmp_path: Path) -> None:
    bridge = node.cni_config(_layout(tmp_path))["plugins"][0]  # type: ignore[index]
    assert bridge["bridge"] == nodehost.BRIDGE and bridge["ipMasq"] is False
    assert bridge["ipam"]["ranges"][0][0]["subnet"] == nodehost.NODE_CIDR


def test_oci_archive_is_self_consistent(tmp_path: Path) -> None:
    binary = tmp_path / "server"
    binary.write_bytes(b"\x7fELF not really")
    archive = ociimage.write_archive(binary, "localhost/x/server:2", tmp_path / "a.tar")
    with tarfile.open(archive) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]

    def blob(descriptor: dict[str, object]) -> bytes:
        data = files[f"blobs/sha256/{str(descriptor['digest']).split(':')[1]}"]
        assert descriptor["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
        assert descriptor["size"] == len(data)
        return data

    index = json.loads(files["index.json"])
    entry = index["manifests"][0]
    assert entry["annotations"]["io.containerd.image.name"] == "localhost/x/server:2"
    manifest = json.loads(blob(entry))
    config = json.loads(blob(manifest["config"]))
    layer = blob(manifest["layers"][0])
    assert config["rootfs"]["diff_ids"] == [manifest["layers"][0]["digest"]]
    assert config["config"]["Entrypoint"] == ["/server"]
    assert b"\x7fELF not really" in layer


def test_our_chains_and_the_jumps_to_them_are_found_with_quoted_comments(monkeypatch: object) -> None:
    listing = "\n".join(
        [
            "-P FORWARD ACCEPT",
            "-N KUBE-FORWARD",
            "-N CNI-HOSTPORT-DNAT",
            "-N OTHER",
            '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
            "-A FORWARD -j OTHER",
            "-A KUBE-FORWARD -j ACCEPT",
        ]
    )

    def fake_run(*argv: str, check: bool = True) -> object:
        return type("Done", (), {"returncode": 0, "stdout": listing})()

    monkeypatch.setattr(nodehost, "run", fake_run)  # type: ignore[attr-defined]
    chains, jumps = nodehost._our_chains("iptables", "filter")
    assert chains == ["KUBE-FORWARD", "CNI-HOSTPORT-DNAT"]
    assert jumps == ['-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD']
    # Deleting the jump re-uses the rule as arguments: the quoted comment must stay one argument.
    assert "kubernetes forwarding rules" in shlex.split(jumps[0])

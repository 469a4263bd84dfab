"""The local cluster's harness API, its pure parts: flag merging, kubeconfigs, user certificates.

No process is started here; ``tests/integration/test_control_plane.py`` checks the same API
against a running apiserver (a user added by ``add_user`` is who the apiserver says it is).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID
from localcluster import ClusterSettings, LocalCluster, components, kubeconfig, pki
from localcluster.components import Layout, Ports

DEFAULTS = ["kube-apiserver", "--secure-port=6443", "--enable-admission-plugins=NodeRestriction", "--v=0"]


def test_an_extra_flag_of_a_new_name_is_appended() -> None:
    assert components.merge_flags(DEFAULTS, ["--audit-log-path=-"]) == [*DEFAULTS, "--audit-log-path=-"]


def test_an_extra_flag_replaces_the_default_of_the_same_name_where_it_stands() -> None:
    merged = components.merge_flags(DEFAULTS, ["--enable-admission-plugins=NodeRestriction,AlwaysPullImages"])
    assert merged == [
        "kube-apiserver",
        "--secure-port=6443",
        "--enable-admission-plugins=NodeRestriction,AlwaysPullImages",
        "--v=0",
    ]


def test_a_later_flag_overrides_an_earlier_one_of_the_same_name() -> None:
    merged = components.merge_flags(DEFAULTS, ["--v=2", "--audit-log-path=-", "--v=4"])
    assert merged.count("--v=4") == 1
    assert [arg for arg in merged if arg.startswith("--v=")] == ["--v=4"]
    assert merged[-1] == "--audit-log-path=-"


def test_repeats_among_the_defaults_collapse_into_the_override() -> None:
    argv = ["etcd", "--log-level=warn", "--name=n0", "--log-level=info"]
    assert components.merge_flags(argv, ["--log-level=debug"]) == ["etcd", "--name=n0", "--log-level=debug"]


def test_a_boolean_flag_without_a_value_is_a_flag_of_its_own_name() -> None:
    merged = components.merge_flags(["x", "--profiling=false"], ["--profiling", "--debug"])
    assert merged == ["x", "--profiling", "--debug"]


def test_no_extra_flags_leave_the_defaults_as_they_are() -> None:
    assert components.merge_flags(DEFAULTS, []) == DEFAULTS


@pytest.mark.parametrize("bad", ["-v=2", "value", "--", ""])
def test_an_extra_flag_not_written_as_a_long_flag_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="--name or --name=value"):
        components.merge_flags(DEFAULTS, [bad])


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path, tmp_path / "bin", Ports(1, 2, 3, 4, 5, 6), pki.PkiPaths.under(tmp_path / "pki"))


def test_a_components_command_merges_only_its_own_extra_flags(layout: Layout) -> None:
    extra = {"kube-apiserver": ["--secure-port=7000", "--audit-log-path=-"], "etcd": ["--log-level=debug"]}
    argv = components.command("kube-apiserver", layout, extra)
    assert argv[0] == str(layout.bin_dir / "kube-apiserver")
    assert [a for a in argv if a.startswith("--secure-port=")] == ["--secure-port=7000"]
    assert argv[-1] == "--audit-log-path=-"
    assert "--log-level=debug" not in argv
    assert components.command("kube-scheduler", layout, extra) == components.kube_scheduler(layout)


def test_an_unknown_component_is_refused(layout: Layout) -> None:
    with pytest.raises(ValueError, match="no component 'kube-apisrever'"):
        components.command("kube-apisrever", layout)


def test_cluster_settings_refuse_flags_for_an_unknown_component_or_a_malformed_flag(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown components"):
        ClusterSettings(tmp_path, tmp_path, extra_flags={"apiserver": ["--v=2"]})
    with pytest.raises(ValueError, match="--name or --name=value"):
        ClusterSettings(tmp_path, tmp_path, extra_flags={"kube-apiserver": ["--v", "2"]})


def test_the_cluster_argv_layers_defaults_settings_and_call_flags(tmp_path: Path) -> None:
    settings = ClusterSettings(
        tmp_path, tmp_path, extra_flags={"kube-apiserver": ["--enable-admission-plugins=A", "--v=2"]}
    )
    argv = LocalCluster(settings, ports=Ports(1, 2, 3, 4, 5, 6)).argv("kube-apiserver", ["--v=5"])
    assert [a for a in argv if a.startswith("--enable-admission-plugins=")] == [
        "--enable-admission-plugins=A"
    ]
    assert [a for a in argv if a.startswith("--v=")] == ["--v=5"]


# --------------------------------------------------------------------------- kubeconfigs


def test_a_certificate_kubeconfig_has_one_cluster_user_and_current_context_with_inline_data() -> None:
    config = kubeconfig.build("https://127.0.0.1:6443", b"CA", "alice", cert_pem=b"CERT", key_pem=b"KEY")
    assert config == {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "k8s-lab",
                "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority-data": "Q0E="},
            }
        ],
        "users": [
            {"name": "alice", "user": {"client-certificate-data": "Q0VSVA==", "client-key-data": "S0VZ"}}
        ],
        "contexts": [{"name": "alice@k8s-lab", "context": {"cluster": "k8s-lab", "user": "alice"}}],
        "current-context": "alice@k8s-lab",
    }


def test_a_token_kubeconfig_carries_the_token_and_no_certificate() -> None:
    config = kubeconfig.build("https://h:1", b"CA", "sa", token="t0ken")
    assert config["users"] == [{"name": "sa", "user": {"token": "t0ken"}}]


@pytest.mark.parametrize(
    "credentials",
    [{}, {"cert_pem": b"C"}, {"key_pem": b"K"}, {"cert_pem": b"C", "key_pem": b"K", "token": "t"}],
)
def test_a_kubeconfig_user_needs_exactly_one_kind_of_credential(credentials: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="either cert_pem and key_pem, or a token"):
        kubeconfig.build("https://h:1", b"CA", "u", **credentials)  # type: ignore[arg-type]


def test_a_written_kubeconfig_is_private_and_reads_back(tmp_path: Path) -> None:
    config = kubeconfig.build("https://h:1", b"CA", "bob", cert_pem=b"C", key_pem=b"K")
    path = kubeconfig.write(tmp_path / "deep" / "kubeconfig", config)
    assert path.stat().st_mode & 0o777 == 0o600
    assert yaml.safe_load(path.read_text()) == config
    assert kubeconfig.Credentials.load(path) == kubeconfig.Credentials("https://h:1", b"CA", b"C", b"K", None)


def test_credentials_load_follows_file_paths_relative_to_the_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_bytes(b"CA")
    config = {
        "clusters": [{"name": "c", "cluster": {"server": "https://s", "certificate-authority": "ca.crt"}}],
        "users": [{"name": "u", "user": {"token": "abc"}}, {"name": "other", "user": {"token": "no"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(config))
    assert kubeconfig.Credentials.load(path) == kubeconfig.Credentials("https://s", b"CA", token="abc")


# --------------------------------------------------------------------------- users


def test_add_user_writes_a_kubeconfig_with_a_certificate_the_cluster_ca_signed_for_the_user_and_groups(
    tmp_path: Path,
) -> None:
    cluster = LocalCluster(ClusterSettings(tmp_path, tmp_path / "bin"), ports=Ports(1, 2, 6443, 4, 5, 6))
    pki.generate(tmp_path / "pki")

    path = cluster.add_user("carol", ["auditors", "k8s-lab:viewers"])

    creds = kubeconfig.Credentials.load(path)
    assert creds.server == "https://127.0.0.1:6443" == cluster.server
    assert creds.ca_pem == cluster.layout.pki.ca_cert.read_bytes()
    assert creds.token is None and creds.key_pem is not None and creds.cert_pem is not None
    cert = x509.load_pem_x509_certificate(creds.cert_pem)
    ca = x509.load_pem_x509_certificate(creds.ca_pem)
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["carol"]
    groups = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert groups == ["auditors", "k8s-lab:viewers"]
    assert path.stat().st_mode & 0o777 == 0o600

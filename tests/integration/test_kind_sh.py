"""``hack/kind.sh`` and ``hack/check-flake.sh``: without Docker each image or kind subcommand
says so in one line and exits 2, while ``deploy``/``undeploy`` need only kubectl and a
kubeconfig; flake.nix parses where nix is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.support.cluster import REPO, Cluster

KIND_SH = REPO / "hack" / "kind.sh"


@pytest.fixture
def no_docker(tmp_path: Path) -> dict[str, str]:
    """An environment with a docker CLI whose engine is unreachable, and no kind."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "docker"
    fake.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    fake.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}


def kind_sh(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(KIND_SH), *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("subcommand", ["docker-build", "kind-up", "kind-load", "test-kind", "kind-down"])
def test_kind_sh_without_a_docker_engine_says_so_in_one_line_and_exits_2(
    subcommand: str, no_docker: dict[str, str]
) -> None:
    done = kind_sh(subcommand, env=no_docker)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(
        f"hack/kind.sh {subcommand}: needs a running Docker"
    )
    assert "make cluster-up" in done.stderr


def test_kind_sh_deploy_and_undeploy_need_only_kubectl_and_a_kubeconfig(
    control_plane: Cluster, system_namespace: str, no_docker: dict[str, str], rendered: list[dict[str, Any]]
) -> None:
    env = {**no_docker, "KUBECONFIG": str(control_plane.kubeconfig), "KUBECTL": control_plane.kubectl_binary}
    # Dry runs: a real undeploy would delete the CRD that the other tests of this session use.
    deployed = kind_sh("deploy", "--dry-run=server", env=env)
    assert deployed.returncode == 0, deployed.stderr
    assert deployed.stdout.count("(server dry run)") == len(rendered)
    undeployed = kind_sh("undeploy", "--dry-run=server", env=env)
    assert undeployed.returncode == 0, undeployed.stderr
    assert (
        'customresourcedefinition.apiextensions.k8s.io "labservers.k8slab.dev" deleted' in undeployed.stdout
    )


def test_kind_sh_deploy_without_any_kubeconfig_says_so_and_exits_2(no_docker: dict[str, str]) -> None:
    done = kind_sh("deploy", env={**no_docker, "KUBECTL": "/bin/true"})
    assert done.returncode == 2
    assert done.stderr.startswith("hack/kind.sh deploy: needs a cluster: set KUBECONFIG")


@pytest.mark.skipif(
    shutil.which("nix-instantiate") is None, reason="no nix-instantiate (CI: CI=true hack/check-flake.sh)"
)
def test_flake_nix_parses() -> None:
    done = subprocess.run(
        [str(REPO / "hack" / "check-flake.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CI": ""},
    )
    assert done.returncode == 0, done.stderr

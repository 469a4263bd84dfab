"""What an integration test holds of a cluster: its kubeconfig, kubectl, and the local harness."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

import kubernetes
from kubernetes.client.exceptions import ApiException
from localcluster import LocalCluster

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"


@dataclass
class Cluster:
    """What a test may use: the kubeconfig, kubectl, and the local cluster when we run one."""

    kubeconfig: Path
    kubectl_binary: str
    local: LocalCluster | None

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [self.kubectl_binary, f"--kubeconfig={self.kubeconfig}", *args]
        done = subprocess.run(argv, capture_output=True, text=True, input=input)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    def api_client(self) -> kubernetes.client.ApiClient:
        client = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]  # unannotated
            config_file=str(self.kubeconfig)
        )
        return cast(kubernetes.client.ApiClient, client)


def or_none(read: Callable[[], T]) -> T | None:
    """What ``read`` returns, or None where the API answers 404."""
    try:
        return read()
    except ApiException as err:
        if err.status == 404:
            return None
        raise

"""What the ``deploy/`` tests share: the rendered manifests and the operator's identity.

The identity is the operator's ServiceAccount as a client sees it: a bound token from the
TokenRequest API (as the kubelet mounts it into the pod), a kubeconfig holding nothing else
(written by the harness's one kubeconfig writer), and the harness's HTTP helper speaking as it.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import ApiClient, CoreV1Api
from localcluster import kubeconfig
from localcluster.adminapi import ApiHttp
from tests.support.cluster import REPO, Cluster

DEPLOY = REPO / "deploy"
SYSTEM_NS, SA = "k8s-lab-system", "k8s-lab-operator"
SA_USER = f"system:serviceaccount:{SYSTEM_NS}:{SA}"
GROUP, VERSION, PLURAL = "k8slab.dev", "v1alpha1", "labservers"


def render(cluster: Cluster) -> list[dict[str, Any]]:
    """Every object of ``kubectl kustomize deploy/``, in kustomize's order."""
    out = subprocess.run(
        [cluster.kubectl_binary, "kustomize", str(DEPLOY)], check=True, capture_output=True, text=True
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def the_one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def apply(cluster: Cluster, docs: list[dict[str, Any]], *flags: str) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("apply", *flags, "-f", "-", input=yaml.safe_dump_all(docs))


@dataclass(frozen=True)
class Identity:
    """A ServiceAccount's token, a kubeconfig with nothing but it, and HTTP requests as it."""

    token: str
    kubeconfig: Path

    def http(self, server: str | None = None) -> ApiHttp:
        """Requests as this identity, to the kubeconfig's apiserver or to ``server``."""
        return ApiHttp.from_kubeconfig(self.kubeconfig, server=server, timeout=10)


def token_for(api: ApiClient, name: str, namespace: str = SYSTEM_NS) -> str:
    """A bound token from the TokenRequest API, as the kubelet would mount into the pod."""
    request = {"spec": {"expirationSeconds": 3600}}
    core: Any = CoreV1Api(api)  # Any: the client takes plain dicts as bodies; its stubs want models
    return str(core.create_namespaced_service_account_token(name, namespace, request).status.token)


def identity_of(cluster: Cluster, api: ApiClient, service_account: str, folder: Path) -> Identity:
    """``service_account``'s identity on the cluster the admin kubeconfig names (local or existing)."""
    admin = kubeconfig.Credentials.load(cluster.kubeconfig)
    token = token_for(api, service_account)
    config = kubeconfig.build(admin.server, admin.ca_pem, service_account, token=token)
    return Identity(token, kubeconfig.write(folder / "kubeconfig", config))


def a_labserver(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LabServer", "metadata": {"name": name}, "spec": spec}


def refusals(log: str) -> list[str]:
    """Every log line that reports a 403 or a Forbidden, traceback lines included. The line's
    timestamp is left out of the search: "15:39:56,403" is a millisecond, not a refusal (seen in CI)."""
    return [
        line
        for line in log.splitlines()
        if re.search(r"\b403\b|forbidden", re.sub(r"^\[[^\]]*\]", "", line), re.I)
    ]

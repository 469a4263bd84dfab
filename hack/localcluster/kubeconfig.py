"""Kubeconfig files: the harness's one writer, and the few reads its HTTP helper needs.

Role: ``build`` makes the kubeconfig of one user of one cluster (a client certificate, or a
bearer token such as a ServiceAccount's), ``write`` stores it readable by its owner only;
``Credentials.load`` reads back the server, CA and credentials of a kubeconfig's current context
(ours, or any with inline data or file paths), for ``adminapi.ApiHttp``. Pure but for the files.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from localcluster.pki import write_private

CLUSTER = "k8s-lab"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def build(
    server: str,
    ca_pem: bytes,
    user: str,
    *,
    cert_pem: bytes | None = None,
    key_pem: bytes | None = None,
    token: str | None = None,
    context: str | None = None,
) -> dict[str, Any]:
    """A kubeconfig with one cluster, one user and one context (``context``, by default
    ``user``@k8s-lab), current.

    The user authenticates by a client certificate (``cert_pem`` and ``key_pem``) or by a
    bearer ``token``: exactly one of the two.
    """
    with_cert = cert_pem is not None and key_pem is not None
    if with_cert == (token is not None) or (cert_pem is None) != (key_pem is None):
        raise ValueError("a kubeconfig user needs either cert_pem and key_pem, or a token")
    credentials = (
        {"token": token}
        if token is not None
        else {"client-certificate-data": _b64(cert_pem or b""), "client-key-data": _b64(key_pem or b"")}
    )
    context = context or f"{user}@{CLUSTER}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": CLUSTER, "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)}}
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": context, "context": {"cluster": CLUSTER, "user": user}}],
        "current-context": context,
    }


def write(path: Path, config: dict[str, Any]) -> Path:
    """Write ``config`` to ``path``, readable by its owner only from the first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, yaml.safe_dump(config).encode())
    return path


@dataclass(frozen=True)
class Credentials:
    """What a client needs of a kubeconfig's current context: server, CA, and who it is."""

    server: str
    ca_pem: bytes
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    token: str | None = None

    @classmethod
    def load(cls, path: Path) -> Credentials:
        config = yaml.safe_load(path.read_text())
        context = _named(config, "contexts", config["current-context"])["context"]
        cluster = _named(config, "clusters", context["cluster"])["cluster"]
        user = _named(config, "users", context["user"])["user"]
        base = path.parent
        return cls(
            server=cluster["server"],
            ca_pem=_data(cluster, "certificate-authority", base) or b"",
            cert_pem=_data(user, "client-certificate", base),
            key_pem=_data(user, "client-key", base),
            token=user.get("token"),
        )


def _named(config: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(e for e in config[section] if e["name"] == name)
    return entry


def _data(entry: dict[str, Any], key: str, base: Path) -> bytes | None:
    """``key-data`` (base64) or ``key`` (a file, relative to the kubeconfig's folder)."""
    if f"{key}-data" in entry:
        return base64.b64decode(entry[f"{key}-data"])
    if key in entry:
        return (base / str(entry[key])).read_bytes()
    return None

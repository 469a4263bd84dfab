"""The harness's one authenticated HTTP helper for the apiserver (standard library only).

Role: ``ApiHttp`` sends one request as one user (a client certificate or a bearer token, over
TLS verified against the cluster CA) and decodes the answer; ``ApiHttp.from_kubeconfig`` takes
all of that from a kubeconfig, so a test can speak to the apiserver as any user ``add_user`` or
a ServiceAccount token made. ``AdminApi`` is the cluster's own admin: readiness probes and the
few objects the harness creates itself (fake nodes, taints, an RBAC binding; the real node's
drain). The harness needs no Kubernetes client; tests and the operator use real clients
against the kubeconfig ``cluster`` writes.
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from localcluster.kubeconfig import Credentials
from localcluster.pki import PkiPaths

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


class ApiHttp:
    """HTTPS requests to one apiserver as one user."""

    def __init__(
        self,
        server: str,
        ca_pem: bytes,
        *,
        client_cert: tuple[Path, Path] | None = None,
        token: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.server = server.rstrip("/")
        self.timeout = timeout
        self._token = token
        self._tls = ssl.create_default_context(cadata=ca_pem.decode())
        if client_cert is not None:
            self._tls.load_cert_chain(str(client_cert[0]), str(client_cert[1]))

    @classmethod
    def from_kubeconfig(cls, path: Path, *, server: str | None = None, timeout: float = 5.0) -> ApiHttp:
        """As the current context of ``path``; ``server`` sends the same user to another apiserver."""
        creds = Credentials.load(path)
        client_cert = None
        if creds.cert_pem is not None and creds.key_pem is not None:
            client_cert = _pem_files(creds.cert_pem, creds.key_pem)
        try:
            return cls(
                server or creds.server,
                creds.ca_pem,
                client_cert=client_cert,
                token=creds.token,
                timeout=timeout,
            )
        finally:
            for file in client_cert or ():
                file.unlink(missing_ok=True)  # ssl has read them

    def request(
        self, method: str, path: str, body: Any = None, *, content_type: str = JSON
    ) -> tuple[int, Any]:
        """(HTTP status, decoded JSON body or text); an error answer is returned, not raised."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Accept", JSON)
        if data is not None:
            req.add_header("Content-Type", content_type)
        if self._token is not None:
            req.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(req, context=self._tls, timeout=self.timeout) as resp:
                return resp.status, _decode(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, _decode(err.read())

    def get(self, path: str) -> Any | None:
        """The decoded object, or None for a 404."""
        status, obj = self.request("GET", path)
        if status == 404:
            return None
        if status >= 400:
            raise RuntimeError(f"GET {path}: {status} {obj}")
        return obj

    def create(self, path: str, obj: dict[str, Any]) -> None:
        """POST an object; an AlreadyExists is fine (idempotent start-up)."""
        status, body = self.request("POST", path, obj)
        if status >= 400 and status != 409:
            raise RuntimeError(f"POST {path}: {status} {body}")

    def patch(self, path: str, patch: dict[str, Any]) -> None:
        """A JSON merge patch."""
        status, body = self.request("PATCH", path, patch, content_type=MERGE_PATCH)
        if status >= 400:
            raise RuntimeError(f"PATCH {path}: {status} {body}")

    def delete(self, path: str) -> None:
        """DELETE; a NotFound is fine."""
        status, body = self.request("DELETE", path)
        if status >= 400 and status != 404:
            raise RuntimeError(f"DELETE {path}: {status} {body}")

    def readyz(self) -> bool:
        status, _ = self.request("GET", "/readyz")
        return status == 200


class AdminApi(ApiHttp):
    """The cluster admin (``system:masters``), from the harness's own certificates."""

    def __init__(self, server: str, pki: PkiPaths, *, timeout: float = 5.0) -> None:
        super().__init__(
            server, pki.ca_cert.read_bytes(), client_cert=(pki.admin_cert, pki.admin_key), timeout=timeout
        )


def _pem_files(cert_pem: bytes, key_pem: bytes) -> tuple[Path, Path]:
    """ssl loads a certificate chain from files only: two private temporary files."""
    paths = []
    for data in (cert_pem, key_pem):
        fd, name = tempfile.mkstemp(prefix="k8s-lab-", suffix=".pem")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        paths.append(Path(name))
    return paths[0], paths[1]


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def insecure_healthz(url: str, timeout: float = 2.0) -> bool:
    """GET a component's self-signed /healthz (allowed unauthenticated by its flags)."""
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, context=tls, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except urllib.error.HTTPError:
        return False

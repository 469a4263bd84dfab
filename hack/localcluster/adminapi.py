"""A minimal admin client for the apiserver, for the harness's own needs only.

Role: readiness probes and the few objects the harness creates itself (fake nodes, taints, an
RBAC binding; the real node's drain), over HTTPS
with the admin client certificate; standard library only, so the harness needs no Kubernetes
client. Tests and the operator use real clients against the kubeconfig ``cluster`` writes.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

from localcluster.pki import PkiPaths


class AdminApi:
    def __init__(self, server: str, pki: PkiPaths, *, timeout: float = 5.0) -> None:
        self.server = server
        self.timeout = timeout
        self._tls = ssl.create_default_context(cafile=str(pki.ca_cert))
        self._tls.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
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
        data = json.dumps(patch).encode()
        req = urllib.request.Request(self.server + path, data=data, method="PATCH")
        req.add_header("Content-Type", "application/merge-patch+json")
        try:
            with urllib.request.urlopen(req, context=self._tls, timeout=self.timeout):
                return
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"PATCH {path}: {err.code} {_decode(err.read())}") from err

    def delete(self, path: str) -> None:
        """DELETE; a NotFound is fine."""
        status, body = self.request("DELETE", path)
        if status >= 400 and status != 404:
            raise RuntimeError(f"DELETE {path}: {status} {body}")

    def readyz(self) -> bool:
        status, _ = self.request("GET", "/readyz")
        return status == 200


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

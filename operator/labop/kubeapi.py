"""The operator's writes to the Kubernetes API, sent on the event loop.

Role: server-side apply of children and of the status subresource, Events, the rare JSON patch:
each is one request through ``transport.ApiTransport`` (aiohttp on the loop, the official
client's credentials; no thread pool: see that module for why). Every failure, an error answer
or no answer at all, comes out as an ``ApiError`` (``apierrors`` says what each kind means).
``KubeApiLike`` is the protocol its users depend on, so unit tests can pass a fake.
Reads do not come here: they come from the stores the watch events fill (``cache``). With
leader election, every write first passes the elector's ``fence`` (see
``labop.runtime.leaderelection``), and ``KubeLeaseClient`` is the election's Lease client
(get/create/update through the official client, each in a thread: a few requests a minute).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import kubernetes
from kubernetes.client import ApiClient, CoordinationV1Api
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry

from labop.apierrors import ApiError, Conflict, Gone, NotFound, translate_answer
from labop.naming import GROUP, PLURAL, VERSION
from labop.runtime.leaderelection import LeaseConflict, LeaseLost, LeaseRecord, lease_body, record_of
from labop.transport import ApiTransport

__all__ = [
    "ApiError",
    "Applied",
    "Conflict",
    "Gone",
    "KubeApi",
    "KubeApiLike",
    "KubeLeaseClient",
    "NotFound",
    "apply_body",
]

APPLY = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"
CHILD_PATHS = {
    "Deployment": "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
    "Service": "/api/v1/namespaces/{namespace}/services/{name}",
}
EVENTS_PATH = "/api/v1/namespaces/{namespace}/events"
STATUS_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/{PLURAL}/{{name}}/status"
# The status is applied under a field manager of its own, the children's plus this suffix
# ("k8s-lab-status" by default): `kubectl get -o yaml --show-managed-fields` tells them apart.
STATUS_MANAGER_SUFFIX = "-status"


@dataclass(frozen=True)
class Applied:
    """The live object after a server-side apply, and whether that apply created it."""

    obj: dict[str, Any]
    created: bool


class KubeApiLike(Protocol):
    """The writes the reconciler, the recorder and the controller make: ``KubeApi``, or a fake in tests."""

    async def apply(self, obj: dict[str, Any]) -> Applied: ...
    async def json_patch(self, obj: dict[str, Any], operations: list[dict[str, Any]]) -> None: ...
    async def apply_status(self, labserver: dict[str, Any], status: dict[str, Any]) -> None: ...
    async def create_event(self, namespace: str, event: dict[str, Any]) -> None: ...
    async def aclose(self) -> None: ...


# Characters YAML must not see literally in a double-quoted scalar: those outside its printable
# set (DEL, C1 controls, surrogates, U+FFFE/U+FFFF; the reader refuses them) and those it takes
# for line breaks and folds into a space (NEL, U+2028, U+2029), plus a stray byte-order mark.
# JSON leaves them raw when not escaping to ASCII; a \u escape (all are in the BMP) reads the
# same in JSON and in YAML.
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")


def apply_body(obj: dict[str, Any]) -> bytes:
    """``obj`` as the body of an ``application/apply-patch+yaml`` request: JSON, literal UTF-8.

    The apiserver parses an apply body as YAML. The client's own encoding (``json.dumps`` with
    ASCII escapes) writes a character outside the Basic Multilingual Plane (an emoji) as a
    surrogate pair, ``\\ud83d\\ude00``, which JSON allows and YAML refuses ("invalid Unicode
    character escape code"): such a message wedged its LabServer for good. Literal UTF-8 is
    valid in both; only the few characters YAML reads differently keep an escape.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode()


def load_client(*, retries: int | None = None) -> ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG or ~/.kube).

    ``retries=0``: urllib3 does not resend a request on its own (the Lease client's requests;
    the writes go through ``transport``, which never resends). With leader election a request
    must pass the fence each time it is sent; a silent retry would send it again later,
    unchecked (a failed write is retried by the worker pool instead, through the fence).
    """
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]  # unannotated in the client
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]  # unannotated in the client
    if retries is None:
        return ApiClient()
    config = kubernetes.client.Configuration.get_default_copy()
    config.retries = retries
    return ApiClient(config)


class KubeApi:
    """The writes of ``KubeApiLike`` over one ``ApiTransport`` with ``client``'s credentials.

    ``connections``: at most this many requests at once. ``registry``: where the transport counts
    its requests (client-go's ``rest_client_requests_total``, see ``transport``), None for none.
    ``client`` itself sends nothing here:
    ``load_client`` built its configuration, and ``aclose`` closes it (the Lease client shares
    it); ``close`` is the same from outside a running loop.
    """

    def __init__(
        self,
        client: ApiClient,
        *,
        field_manager: str,
        connections: int,
        timeout: float,
        fence: Callable[[], float] | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._client = client
        self._transport = ApiTransport(
            client.configuration, connections=connections, user_agent=client.user_agent, registry=registry
        )
        self._manager = field_manager
        self.status_manager = field_manager + STATUS_MANAGER_SUFFIX
        self._timeout = timeout
        self._fence = fence

    def _fenced_timeout(self) -> float:
        """The request's timeout; with leader election, cut to the time left on the lease, and
        LeaseLost (as an ApiError with no status) when the lease may already be gone."""
        if self._fence is None:
            return self._timeout
        try:
            return min(self._timeout, self._fence())
        except LeaseLost as err:
            raise ApiError(0, f"not sent: {err}") from err

    async def _write(
        self, method: str, path: str, query: list[tuple[str, str]], content_type: str, body: bytes
    ) -> tuple[int, bytes]:
        """Every call here is a write (reads come from the cache): each send passes the fence
        first (the transport asks ``_fenced_timeout`` right before it sends, a retry included).
        Returns the 2xx status and the body; any other answer raises its ``ApiError``."""
        answer = await self._transport.send(
            method, path, query, content_type, body, deadline=self._fenced_timeout
        )
        if not answer.ok:
            raise translate_answer(answer.status, answer.body, answer.reason)
        return answer.status, answer.body

    async def apply(self, obj: dict[str, Any]) -> Applied:
        """Server-side apply: we own exactly the fields we send; force takes them back from hand edits."""
        status_code, data = await self._apply_now(obj, CHILD_PATHS[obj["kind"]], self._manager)
        # 201: this apply created the object (the apiserver's word, not a possibly stale cache's).
        return Applied(obj=json.loads(data), created=status_code == 201)

    async def apply_status(self, labserver: dict[str, Any], status: dict[str, Any]) -> None:
        """Server-side apply of the LabServer's /status, on the condition that it is still at
        ``labserver``'s resourceVersion (else 409 Conflict: the cache we computed from lags).

        We own exactly the status fields we send: one left out (``endpoints`` once the Service
        is gone) is removed; conditions are a map keyed by type, so others' conditions stay.
        The answer is not parsed: nobody reads it.
        """
        meta = labserver["metadata"]
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": labserver.get("kind") or "LabServer",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                # In an apply body, a resourceVersion is a precondition (optimistic concurrency).
                "resourceVersion": str(meta["resourceVersion"]),
            },
            "status": status,
        }
        await self._apply_now(body, STATUS_PATH, self.status_manager)

    async def _apply_now(self, obj: dict[str, Any], path: str, manager: str) -> tuple[int, bytes]:
        """The apply request: the body is ``apply_body``'s literal UTF-8 (see there for why)."""
        meta = obj["metadata"]
        where = path.format(namespace=meta["namespace"], name=meta["name"])
        query = [("fieldManager", manager), ("force", "true")]
        return await self._write("PATCH", where, query, APPLY, apply_body(obj))

    async def json_patch(self, obj: dict[str, Any], operations: list[dict[str, Any]]) -> None:
        """A JSON patch (RFC 6902) of the child ``obj`` names, under our field manager."""
        meta = obj["metadata"]
        where = CHILD_PATHS[obj["kind"]].format(namespace=meta["namespace"], name=meta["name"])
        body = json.dumps(operations).encode()
        await self._write("PATCH", where, [("fieldManager", self._manager)], JSON_PATCH, body)

    async def create_event(self, namespace: str, event: dict[str, Any]) -> None:
        """POST the Event; the answer (the Event as stored) is not read into anything."""
        body = json.dumps(event, separators=(",", ":")).encode()  # ASCII escapes: fine for JSON
        await self._write("POST", EVENTS_PATH.format(namespace=namespace), [], "application/json", body)

    async def aclose(self) -> None:
        """``close``, waiting until the connections are closed too."""
        await self._transport.aclose()
        self._client.close()  # type: ignore[no-untyped-call]  # unannotated in the client

    def close(self) -> None:
        """Close the connections now (on the loop, after the workers and the Event sender)."""
        self._transport.close()
        self._client.close()  # type: ignore[no-untyped-call]  # unannotated in the client


class KubeLeaseClient:
    """``LeaseClient`` over the official client's CoordinationV1Api; every call in a thread."""

    def __init__(self, api_client: ApiClient, name: str, namespace: str, *, timeout: float) -> None:
        self._api = CoordinationV1Api(api_client)
        self._serialize = api_client.sanitize_for_serialization
        self.name = name
        self.namespace = namespace
        self._timeout = timeout

    async def _call(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any] | None:
        try:
            lease = await asyncio.to_thread(fn, *args, _request_timeout=self._timeout)
        except ApiException as err:
            if err.status == 409:
                raise LeaseConflict(str(err.reason)) from err
            if err.status == 404:
                return None
            raise
        result: dict[str, Any] = self._serialize(lease)  # type: ignore[no-untyped-call]  # unannotated in the client
        return result

    async def get(self) -> LeaseRecord | None:
        lease = await self._call(self._api.read_namespaced_lease, self.name, self.namespace)
        return None if lease is None else record_of(lease)

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        body = lease_body(self.name, self.namespace, replace(record, resource_version=""))
        return record_of(await self._call(self._api.create_namespaced_lease, self.namespace, body) or {})

    async def update(self, record: LeaseRecord) -> LeaseRecord:
        body = lease_body(self.name, self.namespace, record)
        lease = await self._call(self._api.replace_namespaced_lease, self.name, self.namespace, body)
        if lease is None:
            raise LeaseConflict(f"lease {self.name} is gone")
        return record_of(lease)

"""The operator's writes to the Kubernetes API: an async facade over the sync official client.

Role: server-side apply of children and of the status subresource, Events. Every blocking call
runs on a small thread pool of its own (never on the event loop). Every failure, an error answer
or no answer at all, comes out as an ``ApiError`` (``apierrors`` says what each kind means).
``KubeApiLike`` is the protocol its users depend on, so unit tests can pass a fake.
Reads do not come here: they come from the stores the watch events fill (``cache``). With
leader election, every write first passes the elector's ``fence`` (see
``labop.runtime.leaderelection``), and ``KubeLeaseClient`` is the election's Lease client
(get/create/update, each in a thread).
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

import kubernetes
from kubernetes.client import ApiClient, AppsV1Api, CoordinationV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as TransportError

from labop.apierrors import ApiError, Conflict, Gone, NotFound, translate, unreachable
from labop.naming import GROUP, PLURAL, VERSION
from labop.runtime.leaderelection import LeaseConflict, LeaseLost, LeaseRecord, lease_body, record_of

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

T = TypeVar("T")
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
    def close(self) -> None: ...


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

    ``retries=0``: urllib3 does not resend a request on its own. With leader election a write
    must pass the fence each time it is sent; urllib3's silent retry would send it again later,
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
    def __init__(
        self,
        client: ApiClient,
        *,
        field_manager: str,
        threads: int,
        timeout: float,
        fence: Callable[[], float] | None = None,
    ) -> None:
        self._client = client
        self._apps = AppsV1Api(client)
        self._core = CoreV1Api(client)
        self._manager = field_manager
        self.status_manager = field_manager + STATUS_MANAGER_SUFFIX
        self._timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kubeapi")
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

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Every call here is a write (reads come from the cache): each passes the fence first."""
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, _request_timeout=self._fenced_timeout(), **kwargs)
        try:
            return await loop.run_in_executor(self._pool, call)
        except ApiException as err:
            raise translate(err) from err
        except (TransportError, OSError) as err:  # no answer: refused, reset, timed out
            raise unreachable(err) from err

    async def _patch_child(self, obj: dict[str, Any], body: Any, content_type: str, **options: Any) -> Any:
        """PATCH the Deployment or Service ``obj`` names; returns (data, status code, headers)."""
        kind, meta = obj["kind"], obj["metadata"]
        method = {
            "Deployment": self._apps.patch_namespaced_deployment_with_http_info,
            "Service": self._core.patch_namespaced_service_with_http_info,
        }[kind]
        return await self._call(
            method,
            meta["name"],
            meta["namespace"],
            body,
            field_manager=self._manager,
            _content_type=content_type,
            **options,
        )

    async def apply(self, obj: dict[str, Any]) -> Applied:
        """Server-side apply: we own exactly the fields we send; force takes them back from hand edits."""
        live, status_code = await self._call(self._apply_now, obj, CHILD_PATHS[obj["kind"]], self._manager)
        # 201: this apply created the object (the apiserver's word, not a possibly stale cache's).
        return Applied(obj=live, created=status_code == 201)

    async def apply_status(self, labserver: dict[str, Any], status: dict[str, Any]) -> None:
        """Server-side apply of the LabServer's /status, on the condition that it is still at
        ``labserver``'s resourceVersion (else 409 Conflict: the cache we computed from lags).

        We own exactly the status fields we send: one left out (``endpoints`` once the Service
        is gone) is removed; conditions are a map keyed by type, so others' conditions stay.
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
        await self._call(self._apply_now, body, STATUS_PATH, self.status_manager, parse=False)

    def _apply_now(
        self, obj: dict[str, Any], path: str, manager: str, _request_timeout: float, *, parse: bool = True
    ) -> tuple[dict[str, Any], int]:
        """The apply request itself (in a pool thread), below the generated method.

        The generated ``patch_namespaced_*`` methods accept only a dict body, which the client
        encodes with ASCII escapes (see ``apply_body`` for why that breaks apply), and build a
        model object from the answer that we would only turn back into a dict. ``parse=False``:
        the answer is not even read into a dict (a status apply's: nobody reads it).
        """
        meta = obj["metadata"]
        return self._send(
            "PATCH",
            path,
            {"namespace": meta["namespace"], "name": meta["name"]},
            [("fieldManager", manager), ("force", "true")],
            APPLY,
            apply_body(obj),
            _request_timeout=_request_timeout,
            parse=parse,
        )

    def _send(
        self,
        method: str,
        path: str,
        path_params: dict[str, str],
        query: list[tuple[str, str]],
        content_type: str,
        body: bytes | dict[str, Any],
        *,
        _request_timeout: float,
        parse: bool,
    ) -> tuple[dict[str, Any], int]:
        """One request (in a pool thread) with the client's connection pool and credentials but
        not its generated methods: those validate every argument (pydantic), serialize model
        objects and build a model from the answer; at 1,000 LabServers that was most of the cost
        of posting the Events (bench/profiles/README.md)."""
        request = self._client.param_serialize(
            method=method,
            resource_path=path,
            path_params=path_params,
            query_params=query,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._client.call_api(*request, _request_timeout=_request_timeout)
        data: bytes = response.read()  # type: ignore[no-untyped-call]  # unannotated in the client
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        live: dict[str, Any] = json.loads(data) if parse else {}
        return live, int(response.status)

    async def json_patch(self, obj: dict[str, Any], operations: list[dict[str, Any]]) -> None:
        """A JSON patch (RFC 6902) of the child ``obj`` names, under our field manager."""
        await self._patch_child(obj, operations, JSON_PATCH)

    async def create_event(self, namespace: str, event: dict[str, Any]) -> None:
        """POST the Event; the answer (the Event as stored) is not read into anything."""
        where = {"namespace": namespace}  # a dict body: the client encodes JSON (ASCII escapes, fine here)
        await self._call(self._send, "POST", EVENTS_PATH, where, [], "application/json", event, parse=False)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
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

"""List-then-watch of one collection as plain dicts, through the kubernetes client's ApiClient.

Why not ``kubernetes.watch.Watch`` with the generated list methods: for built-in kinds they turn
every event into model objects (V1Deployment, ...), a cost neither the floor nor the tracker
should pay. Same client library, same connection pool and credentials; only the decoding is
plain ``json.loads``. A 410 Gone (history compacted) or a broken stream relists.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

Handler = Callable[[str, dict[str, Any]], None]


def request(
    api: ApiClient, method: str, path: str, query: list[tuple[str, str]], timeout: float | tuple[float, float]
) -> Any:
    """One request; the urllib3 response, not read yet (the caller streams or reads it)."""
    req = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=query,
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    resp = api.call_api(*req, _request_timeout=timeout)
    if not 200 <= resp.status <= 299:
        raise ApiException.from_response(http_resp=resp, body=None, data=None)
    return resp.response


def get_json(api: ApiClient, path: str, query: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    raw = request(api, "GET", path, query or [], 60)
    result: dict[str, Any] = json.loads(raw.data)
    return result


def _lines(raw: Any) -> Iterator[bytes]:
    """The newline-separated JSON events of a watch response, as each chunk arrives."""
    buffer = b""
    for chunk in raw.stream(None, decode_content=False):
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        yield from (line for line in complete if line.strip())


def list_then_watch(
    api: ApiClient,
    path: str,
    on_event: Handler,
    stop: threading.Event,
    *,
    label_selector: str = "",
    on_synced: Callable[[], None] | None = None,
) -> None:
    """Call ``on_event(type, obj)`` for every object listed (as ADDED) and every watch event,
    until ``stop`` is set (seen at the latest after one watch timeout, 5 s)."""
    selector = [("labelSelector", label_selector)] if label_selector else []
    version: str | None = None
    while not stop.is_set():
        if version is None:
            listed = get_json(api, path, selector)
            for item in listed.get("items") or []:
                on_event("ADDED", item)
            version = str(listed["metadata"]["resourceVersion"])
            if on_synced is not None:
                on_synced()
                on_synced = None
        query = [
            ("watch", "1"),
            ("resourceVersion", version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", "5"),
            *selector,
        ]
        try:
            raw = request(api, "GET", path, query, (10, 30))
            for line in _lines(raw):
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    version = None  # 410 Gone or worse: start again from a list
                    break
                version = str(obj["metadata"]["resourceVersion"])
                if kind != "BOOKMARK":
                    on_event(str(kind), obj)
            raw.release_conn()
        except ApiException as err:
            if err.status == 410:
                version = None
            else:
                raise

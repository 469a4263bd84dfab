"""The floor: a plain client that makes exactly the writes a perfect operator must make.

Run by the bench as its own process (``python -m opbench.floor``) so that its CPU and memory
are measured apart, like the operator's. Per LabServer, and nothing else: server-side apply of
the Deployment and of the Service (built by ``labop.builders``, so the very objects the
operator applies), then ONE status write (server-side apply of /status, computed by
``labop.status.compute_status``) once its Deployment is available. It learns of LabServers and
Deployments from two watches (no poll per object), with the same client library as the operator
(the kubernetes client's ApiClient, its connection pool, JSON decoded as plain dicts), and
writes from a pool of threads. No queue, no retries, no Events, no cache beyond two dicts: a
floor, not an operator (a failed write is logged and counted, and the bench then times out).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from labop.builders import build_deployment, build_service
from labop.kubeapi import APPLY, CHILD_PATHS, STATUS_PATH, apply_body
from labop.naming import FIELD_MANAGER, LABEL_MANAGED_BY, MANAGED_BY
from labop.spec import DEFAULT_IMAGE, parse_spec
from labop.status import TRUE, assess_rollout, compute_status
from opbench import rawwatch

STATUS_MANAGER = FIELD_MANAGER + "-status"


def apply(api: ApiClient, path: str, obj: dict[str, Any], manager: str) -> dict[str, Any]:
    """Server-side apply with force, as the operator does it (labop.kubeapi.KubeApi._apply_now)."""
    meta = obj["metadata"]
    request = api.param_serialize(
        method="PATCH",
        resource_path=path,
        path_params={"namespace": meta["namespace"], "name": meta["name"]},
        query_params=[("fieldManager", manager), ("force", "true")],
        header_params={"Content-Type": APPLY, "Accept": "application/json"},
        body=apply_body(obj),
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*request, _request_timeout=30)
    body = response.read()  # type: ignore[no-untyped-call]  # unannotated in the client
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(http_resp=response, body=None, data=None)
    live: dict[str, Any] = json.loads(body)
    return live


class Floor:
    def __init__(self, api: ApiClient, threads: int, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="write")
        self.lock = threading.Lock()
        self.started: set[str] = set()  # LabServers whose children are being applied
        self.applied: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}  # name -> (LabServer, Service)
        self.available: dict[str, dict[str, Any]] = {}  # name -> its available Deployment
        self.done: set[str] = set()  # LabServers whose Ready status was written
        self.failures = 0

    # --- the two watches ------------------------------------------------------------------

    def on_labserver(self, kind: str, ls: dict[str, Any]) -> None:
        name = ls["metadata"]["name"]
        if kind == "DELETED" or ls["metadata"].get("deletionTimestamp"):
            return
        with self.lock:
            if name in self.started:
                return
            self.started.add(name)
        self.pool.submit(self.guard, self.apply_children, ls)

    def on_deployment(self, kind: str, deployment: dict[str, Any]) -> None:
        if kind == "DELETED":
            return
        desired = (deployment.get("spec") or {}).get("replicas", 1)
        if assess_rollout(deployment, desired).status != TRUE:
            return
        name = deployment["metadata"]["name"]
        with self.lock:
            self.available[name] = deployment
        self.maybe_ready(name)

    # --- the writes ----------------------------------------------------------------------

    def apply_children(self, ls: dict[str, Any]) -> None:
        spec = parse_spec(ls.get("spec"), default_image=DEFAULT_IMAGE)
        apply(self.api, CHILD_PATHS["Deployment"], build_deployment(ls, spec), FIELD_MANAGER)
        service = apply(self.api, CHILD_PATHS["Service"], build_service(ls, spec), FIELD_MANAGER)
        with self.lock:
            self.applied[ls["metadata"]["name"]] = (ls, service)
        self.maybe_ready(ls["metadata"]["name"])

    def maybe_ready(self, name: str) -> None:
        """Once both the children are applied and the Deployment is available: the one status write."""
        with self.lock:
            if name in self.done or name not in self.applied or name not in self.available:
                return
            self.done.add(name)
            ls, service = self.applied.pop(name)
            deployment = self.available.pop(name)
        self.pool.submit(self.guard, self.write_status, ls, deployment, service)

    def write_status(self, ls: dict[str, Any], deployment: dict[str, Any], service: dict[str, Any]) -> None:
        status = compute_status(
            ls, deployment=deployment, service=service, problem=None, now=datetime.now(UTC)
        )
        meta = ls["metadata"]
        body = {
            "apiVersion": ls["apiVersion"],
            "kind": ls["kind"],
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "status": {k: v for k, v in status.items() if v is not None},
        }
        apply(self.api, STATUS_PATH, body, STATUS_MANAGER)

    def guard(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as err:
            self.failures += 1
            print(f"floor: {fn.__name__} failed: {err!r}", file=sys.stderr, flush=True)


def watch_forever(
    api: ApiClient,
    path: str,
    handler: rawwatch.Handler,
    stop: threading.Event,
    synced: threading.Event,
    selector: str = "",
) -> None:
    while not stop.is_set():
        try:
            rawwatch.list_then_watch(api, path, handler, stop, label_selector=selector, on_synced=synced.set)
        except Exception as err:
            print(f"floor: watch {path} failed: {err!r}", file=sys.stderr, flush=True)
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=args.kubeconfig, client_configuration=config)  # type: ignore[no-untyped-call]
    config.connection_pool_maxsize = args.threads + 2  # the writers and the two watches
    api = ApiClient(config)
    floor = Floor(api, args.threads, args.namespace)
    ns = args.namespace
    watches = [
        (f"/apis/k8slab.dev/v1alpha1/namespaces/{ns}/labservers", floor.on_labserver, ""),
        (
            f"/apis/apps/v1/namespaces/{ns}/deployments",
            floor.on_deployment,
            f"{LABEL_MANAGED_BY}={MANAGED_BY}",
        ),
    ]
    synced = []
    for path, handler, selector in watches:
        event = threading.Event()
        synced.append(event)
        threading.Thread(
            target=watch_forever, args=(api, path, handler, stop, event, selector), daemon=True
        ).start()
    for event in synced:
        event.wait(60)
    args.ready_file.write_text("ready\n")
    stop.wait()
    print(f"floor: {len(floor.done)} Ready status writes, {floor.failures} failures", file=sys.stderr)


if __name__ == "__main__":
    main()

"""The runtime's second user (examples/configmap_counter), on a real apiserver.

The LabServer controller is not the only thing `labop.runtime` can run: the README's ConfigMap
key counter is built with the same builder and reconciles real ConfigMaps here. A plain watch
stands in for kopf as the event source (kopf's side is three one-line handlers in main.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import kubernetes
import pytest
import urllib3
from examples.configmap_counter import counter
from prometheus_client import CollectorRegistry
from tests.support.cluster import Cluster
from tests.support.waiting import eventually

from labop.runtime import Controller

pytestmark = pytest.mark.timeout(120)


def watch_keys(
    cluster: Cluster, namespace: str, controller: Controller, loop: asyncio.AbstractEventLoop
) -> Callable[[], None]:
    """Start a thread that turns every ConfigMap event of the namespace into a key (the
    informer's job); returns the function that stops it."""
    client = cluster.api_client()
    core = kubernetes.client.CoreV1Api(client)
    watch = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]  # kubernetes.watch.Watch has no annotations
    stopping = threading.Event()

    def run() -> None:
        try:
            for event in watch.stream(core.list_namespaced_config_map, namespace, timeout_seconds=60):  # type: ignore[no-untyped-call]  # kubernetes.watch.Watch has no annotations
                meta = event["object"].metadata
                asyncio.run_coroutine_threadsafe(controller.enqueue((meta.namespace, meta.name)), loop)
        except (urllib3.exceptions.HTTPError, OSError):
            if not stopping.is_set():  # closing the client below ends the stream this way
                raise

    thread = threading.Thread(target=run, name="configmap-watch", daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        watch.stop()  # type: ignore[no-untyped-call]  # kubernetes.watch.Watch has no annotations
        client.close()  # type: ignore[no-untyped-call]  # ApiClient.close has no annotations
        thread.join(timeout=10)

    return stop


async def test_a_second_controller_on_the_runtime_keeps_configmaps_annotated(
    control_plane: Cluster, api: kubernetes.client.ApiClient, namespace: str
) -> None:
    core = kubernetes.client.CoreV1Api(api)
    registry = CollectorRegistry()
    controller = counter.build(core, registry)
    await controller.start()
    stop_watching = watch_keys(control_plane, namespace, controller, asyncio.get_running_loop())

    def annotation(name: str) -> Any:
        cm = core.read_namespaced_config_map(name, namespace)
        return ((cm.metadata and cm.metadata.annotations) or {}).get(counter.ANNOTATION)

    def annotated(expected: dict[str, str]) -> bool:
        return all(annotation(name) == count for name, count in expected.items())

    try:
        core.create_namespaced_config_map(
            namespace,
            {"metadata": {"name": "two"}, "data": {"a": "1", "b": "2"}},  # type: ignore[arg-type]  # the client sends a dict body as is; its hints name only the model class
        )
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "none"}})  # type: ignore[arg-type]  # the client sends a dict body as is; its hints name only the model class
        await asyncio.to_thread(eventually, lambda: annotated({"two": "2", "none": "0"}), what="annotations")
        core.patch_namespaced_config_map("two", namespace, {"data": {"c": "3"}})
        await asyncio.to_thread(eventually, lambda: annotated({"two": "3"}), what="the new count")
    finally:
        await asyncio.to_thread(stop_watching)
        await controller.stop()

    # The runtime's own metrics, under the second controller's name.
    labels = {"controller": "configmap-keys", "result": "success"}
    reconciled = registry.get_sample_value("controller_runtime_reconcile_total", labels)
    assert reconciled is not None and reconciled >= 3
    assert (
        registry.get_sample_value(
            "controller_runtime_reconcile_errors_total", {"controller": "configmap-keys"}
        )
        == 0
    )
    assert not controller.pool.running

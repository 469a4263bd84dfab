"""A second controller on `labop.runtime`: it annotates every ConfigMap with its number of keys.

Why it exists: it proves the runtime is not about LabServers. It is level-triggered like the
LabServer controller: whatever event brought a key, the reconcile reads the object and makes
the annotation right, writing only when it is wrong (so its own write's event ends in a no-op).
`main.py` feeds it from kopf; tests/integration/test_runtime_example.py from a plain watch.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry

from labop.runtime import Controller, ControllerBuilder, Key, Result

ANNOTATION = "k8slab.dev/keys"


class KeyCounter:
    def __init__(self, core: CoreV1Api) -> None:
        self.core = core

    async def reconcile(self, key: Key) -> Result | None:
        namespace, name = key
        try:
            cm: Any = await asyncio.to_thread(self.core.read_namespaced_config_map, name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None  # gone: nothing to do
            raise
        count = str(len(cm.data or {}) + len(cm.binary_data or {}))
        if (cm.metadata.annotations or {}).get(ANNOTATION) != count:
            patch = {"metadata": {"annotations": {ANNOTATION: count}}}
            await asyncio.to_thread(self.core.patch_namespaced_config_map, name, namespace, patch)
        return None


def build(core: CoreV1Api, registry: CollectorRegistry | None = None) -> Controller:
    return (
        ControllerBuilder("configmap-keys")
        .for_("", "ConfigMap")
        .with_options(workers=2, queue_size=100, registry=registry)
        .complete(KeyCounter(core).reconcile)
    )

"""A LabServer world for integration tests: the operator as users run it, and calls named by intent."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api, CustomObjectsApi
from tests.support.cluster import Cluster, or_none
from tests.support.operator import OperatorProcess

GROUP, VERSION, PLURAL = "k8slab.dev", "v1alpha1", "labservers"


@contextmanager
def running_operator(cluster: Cluster, **settings: str) -> Iterator[OperatorProcess]:
    """``kopf run operator/main.py -A`` against ``cluster``; its log tail is printed at the end."""
    with tempfile.TemporaryDirectory(prefix="k8s-lab-operator-") as folder:
        op = OperatorProcess(
            cluster.kubeconfig, Path(folder) / "operator.log", **{"resync_seconds": "30", **settings}
        )
        op.start()
        try:
            yield op
        finally:
            op.stop()
            print("--- operator log tail ---\n" + op.log_tail())


def a_labserver(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LabServer", "metadata": {"name": name}, "spec": spec}


def container_env(deployment: Any) -> dict[str, str]:
    return {e.name: e.value or "" for e in deployment.spec.template.spec.containers[0].env}


class Lab:
    """The calls these tests make, named by intent."""

    def __init__(self, api: ApiClient, namespace: str) -> None:
        self.ns = namespace
        self.objects, self.apps, self.core = CustomObjectsApi(api), AppsV1Api(api), CoreV1Api(api)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        # CustomObjectsApi's answers are typed `object`: they are the decoded JSON, a dict.
        return cast(
            dict[str, Any],
            self.objects.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body),
        )

    def get(self, name: str) -> dict[str, Any]:
        return cast(
            dict[str, Any], self.objects.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)
        )

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.objects.patch_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name, {"spec": spec})

    def delete(self, name: str) -> None:
        self.objects.delete_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)

    def deployment(self, name: str) -> Any:
        return or_none(lambda: self.apps.read_namespaced_deployment(name, self.ns))

    def service(self, name: str) -> Any:
        return or_none(lambda: self.core.read_namespaced_service(name, self.ns))

    def condition(self, name: str, kind: str) -> dict[str, Any]:
        for cond in self.get(name).get("status", {}).get("conditions", []):
            if cond["type"] == kind:
                return dict(cond)
        return {}

    def is_ready(self, name: str) -> bool:
        ls = self.get(name)
        ready = self.condition(name, "Ready").get("status") == "True"
        return ready and ls["status"].get("observedGeneration") == ls["metadata"]["generation"]

    def event_reasons(self, name: str) -> set[str]:
        events = self.core.list_namespaced_event(self.ns, field_selector=f"involvedObject.name={name}").items
        return {str(e.reason) for e in events if e.involved_object.kind == "LabServer"}

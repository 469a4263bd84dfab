"""The operator killed in the middle of a burst of LabServers and restarted loses nothing."""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api, CustomObjectsApi
from tests.support.cluster import Cluster
from tests.support.operator import OperatorProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.cluster
BURST = 50


def ready_names(objects: CustomObjectsApi, ns: str) -> set[str]:
    # CustomObjectsApi's answers are typed `object`: they are the decoded JSON, a dict.
    listed = cast(
        dict[str, Any], objects.list_namespaced_custom_object("k8slab.dev", "v1alpha1", ns, "labservers")
    )
    items = listed["items"]
    return {
        ls["metadata"]["name"]
        for ls in items
        if ls.get("status", {}).get("observedGeneration") == ls["metadata"]["generation"]
        and any(c["type"] == "Ready" and c["status"] == "True" for c in ls["status"].get("conditions", []))
    }


def test_a_burst_of_fifty_survives_an_operator_kill_and_restart(
    full_cluster: Cluster, api: ApiClient, namespace: str
) -> None:
    objects, apps, core = CustomObjectsApi(api), AppsV1Api(api), CoreV1Api(api)
    with tempfile.TemporaryDirectory(prefix="k8s-lab-operator-") as folder:
        first = OperatorProcess(full_cluster.kubeconfig, Path(folder) / "first.log", workers="4")
        first.start()

        def create(i: int) -> None:
            body = {
                "apiVersion": "k8slab.dev/v1alpha1",
                "kind": "LabServer",
                "metadata": {"name": f"burst-{i:02d}"},
                "spec": {"replicas": 1},
            }
            objects.create_namespaced_custom_object("k8slab.dev", "v1alpha1", namespace, "labservers", body)

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(create, range(BURST)))
        # Kill it mid-way: some LabServers have children, the rest not yet.
        eventually(
            lambda: len(apps.list_namespaced_deployment(namespace).items) >= 5,
            timeout=120,
            what="the first Deployments",
        )
        first.kill()

        second = OperatorProcess(full_cluster.kubeconfig, Path(folder) / "second.log", workers="4")
        second.start()
        try:
            eventually(
                lambda: len(ready_names(objects, namespace)) == BURST,
                timeout=300,
                interval=1,
                what=f"all {BURST} LabServers Ready",
            )
        finally:
            second.stop()
    names = {f"burst-{i:02d}" for i in range(BURST)}
    deployments = [
        str(d.metadata and d.metadata.name) for d in apps.list_namespaced_deployment(namespace).items
    ]
    services = [str(s.metadata and s.metadata.name) for s in core.list_namespaced_service(namespace).items]
    assert sorted(deployments) == sorted(names)  # exactly one each, no duplicates, no strays
    assert sorted(services) == sorted(names)

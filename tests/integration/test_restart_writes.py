"""A restart costs nothing: over LabServers already up to date, a restarted operator writes nothing.

No apply of a child, no status write, no Event, counted by the apiserver itself (its
``apiserver_request_total``: every apply of a Deployment or Service and every write of a
LabServer's status in this cluster is the operator's) and by the Events the operator reports
in the namespace. The restarted operator reconciles every LabServer (the initial list enqueues
them all) and finds each child's desired-hash and owned field set as its apply would leave them.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi
from prometheus_client.parser import text_string_to_metric_families
from tests.support.cluster import Cluster
from tests.support.operator import OperatorProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.cluster
COUNT = 30
OPERATOR_WRITES = {
    ("APPLY", "deployments", ""),
    ("APPLY", "services", ""),
    ("PATCH", "deployments", ""),
    ("PATCH", "services", ""),
    ("APPLY", "labservers", "status"),
    ("PATCH", "labservers", "status"),
    ("UPDATE", "labservers", "status"),
}


def operator_writes(cluster: Cluster) -> Counter[tuple[str, str, str]]:
    """The apiserver's count of the requests only the operator makes here, by kind of request."""
    assert cluster.local is not None
    status, text = cluster.local.api.request("GET", "/metrics")
    assert status == 200
    lines = "\n".join(line for line in str(text).splitlines() if line.startswith("apiserver_request_total{"))
    counts: Counter[tuple[str, str, str]] = Counter()
    for family in text_string_to_metric_families(lines):
        for sample in family.samples:
            kind = (
                sample.labels.get("verb", ""),
                sample.labels.get("resource", ""),
                sample.labels.get("subresource", ""),
            )
            if kind in OPERATOR_WRITES:
                counts[kind] += int(sample.value)
    return counts


def operator_events(core: CoreV1Api, namespace: str) -> int:
    return len(core.list_namespaced_event(namespace, field_selector="reportingComponent=k8s-lab").items)


def ready_count(objects: CustomObjectsApi, namespace: str) -> int:
    listed = cast(
        dict[str, Any],
        objects.list_namespaced_custom_object("k8slab.dev", "v1alpha1", namespace, "labservers"),
    )
    return sum(
        1
        for ls in listed["items"]
        if ls.get("status", {}).get("observedGeneration") == ls["metadata"]["generation"]
        and any(c["type"] == "Ready" and c["status"] == "True" for c in ls["status"].get("conditions", []))
    )


def metric_total(op: OperatorProcess, name: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(op.metrics_text()):
        total += sum(sample.value for sample in family.samples if sample.name == name)
    return total


def idle_after_reconciling(op: OperatorProcess, count: int) -> bool:
    """Every key reconciled at least once since start, nothing queued or running."""
    return (
        metric_total(op, "controller_runtime_reconcile_total") >= count
        and metric_total(op, "workqueue_depth") == 0
        and metric_total(op, "controller_runtime_active_workers") == 0
    )


def test_a_restarted_operator_over_up_to_date_labservers_makes_no_write(
    full_cluster: Cluster, api: ApiClient, namespace: str
) -> None:
    if full_cluster.local is None:
        pytest.skip("USE_EXISTING_CLUSTER: the apiserver's /metrics is read through the local harness")
    objects, core = CustomObjectsApi(api), CoreV1Api(api)
    with tempfile.TemporaryDirectory(prefix="k8s-lab-operator-") as folder:
        first = OperatorProcess(full_cluster.kubeconfig, Path(folder) / "first.log")
        first.start()
        try:

            def create(i: int) -> None:
                body = {
                    "apiVersion": "k8slab.dev/v1alpha1",
                    "kind": "LabServer",
                    "metadata": {"name": f"calm-{i:02d}"},
                    "spec": {"replicas": i % 2, "listeners": [{"name": "http", "port": 8080 + i % 3}]},
                }
                objects.create_namespaced_custom_object(
                    "k8slab.dev", "v1alpha1", namespace, "labservers", body
                )

            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(create, range(COUNT)))
            eventually(lambda: ready_count(objects, namespace) == COUNT, timeout=300, what="all Ready")
            eventually(
                lambda: idle_after_reconciling(first, COUNT), timeout=120, what="the first operator idle"
            )
        finally:
            first.stop()

        writes, events = operator_writes(full_cluster), operator_events(core, namespace)
        second = OperatorProcess(full_cluster.kubeconfig, Path(folder) / "second.log")
        second.start()
        try:
            eventually(
                lambda: idle_after_reconciling(second, COUNT), timeout=180, what="the restarted operator idle"
            )
            assert operator_writes(full_cluster) - writes == Counter()
            assert operator_events(core, namespace) == events
        finally:
            second.stop()

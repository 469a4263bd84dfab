"""A restart costs nothing: over LabServers already up to date, a restarted operator writes nothing.

Counted by the restarted operator itself: its ``rest_client_requests_total`` (client-go's metric,
counted where every write of the operator is sent, ``labop.transport``) stays at 0 for every
write method (POST, PUT, PATCH, DELETE) from its start until it has reconciled every LabServer
and is idle; and it posts no Event, nor does kopf in it (kopf's requests have a client of their
own, which that metric does not count; an Event is the only write kopf could make here, since
no handler of ours tracks state). The restarted operator reconciles every LabServer (the initial
list enqueues them all) and finds each child's desired-hash and owned field set as its apply
would leave them. The first operator's count proves the metric counts: one created child, one
201.

Why not the apiserver's ``apiserver_request_total`` any more (this test's first version counted
APPLYs of Deployments and Services and writes of LabServer status there): it is cluster-wide and
no label names the client (verb, resource, subresource, scope, component, code...), while
``full_cluster`` is the whole session's. Any other client's write of those kinds counted as the
operator's, so the count could not be made exact; it failed once in CI with 2 Deployment APPLYs
nobody could attribute.

Both operators watch only the test's namespace (kopf's ``-n``): a cluster-wide one would also
reconcile what earlier tests of the session left, e.g. a LabServer in a namespace still being
deleted whose Deployment the namespace controller removed first (it deletes kinds in no fixed
order); re-applying that child is a correct write (refused with NamespaceTerminating), but not
one about this test's LabServers.

On a failure the message carries the restarted operator's log lines about writes (``child
applied`` with the kind and why it was due, ``status written``, ...), read from its log before
the temp folder goes; it runs with ``--verbose`` so the DEBUG status lines are there too.
"""

from __future__ import annotations

import re
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
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Lines of the operator's log that say it wrote or tried to: ours (labop.reconciler, labop.recorder)
# and kopf's own patches (it logs each at DEBUG).
WRITE_LINE = re.compile(
    r"child applied|apply refused|status written|status not written|status conflict|ready changed"
    r"|event not posted|[Pp]atching"
)
# Who posts Events from the operator's process: our recorder, and kopf (its default component).
EVENT_SOURCES = frozenset({"k8s-lab", "kopf"})


def own_writes(op: OperatorProcess) -> Counter[tuple[str, str]]:
    """The operator's own count of its write requests since it started, by (method, code)."""
    counts: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(op.metrics_text()):
        for sample in family.samples:
            if sample.name == "rest_client_requests_total" and sample.labels["method"] in WRITE_METHODS:
                counts[(sample.labels["method"], sample.labels["code"])] += int(sample.value)
    return counts


def write_lines(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if WRITE_LINE.search(line)]
    return "\n".join(lines) or "(no line about a write)"


def operator_events(core: CoreV1Api, namespace: str) -> dict[str, str]:
    """The Events posted from the operator's process in ``namespace``: uid -> what they say."""
    return {
        str(e.metadata.uid): f"{e.reason} {e.involved_object.kind}/{e.involved_object.name}: {e.message}"
        for e in core.list_namespaced_event(namespace).items
        if e.reporting_component in EVENT_SOURCES
    }


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


def an_operator(cluster: Cluster, log: Path, namespace: str) -> OperatorProcess:
    op = OperatorProcess(cluster.kubeconfig, log)
    op.namespaces = (namespace,)
    return op


def test_a_restarted_operator_over_up_to_date_labservers_makes_no_write(
    full_cluster: Cluster, api: ApiClient, namespace: str
) -> None:
    objects, core = CustomObjectsApi(api), CoreV1Api(api)
    with tempfile.TemporaryDirectory(prefix="k8s-lab-operator-") as folder:
        first = an_operator(full_cluster, Path(folder) / "first.log", namespace)
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
            # The metric counts at all: each child was created by one apply (201).
            assert own_writes(first)[("PATCH", "201")] >= 2 * COUNT
        finally:
            first.stop()

        events = operator_events(core, namespace)
        second = an_operator(full_cluster, Path(folder) / "second.log", namespace)
        second.kopf_args = ("--verbose",)  # the DEBUG lines of status writes too
        second.start()
        try:
            eventually(
                lambda: idle_after_reconciling(second, COUNT), timeout=180, what="the restarted operator idle"
            )
            writes = own_writes(second)
            new_events = [said for uid, said in operator_events(core, namespace).items() if uid not in events]
        finally:
            second.stop()
        lines = write_lines(second.log)  # now: the folder goes with the block

    assert writes == Counter(), f"the restarted operator wrote {dict(writes)}; its log says:\n{lines}"
    assert new_events == [], f"the restarted operator posted Events {new_events}; its log says:\n{lines}"

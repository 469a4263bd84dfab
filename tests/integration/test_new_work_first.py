"""New work first: after a restart, a LabServer created then is reconciled before the relist's backlog.

With many LabServers already up to date, a restarted operator lists them all; their keys go in at
low priority (kopf's initial listing, observedGeneration == generation). A LabServer created right
after the restart goes in at normal priority and is handed out before them.

How the order is shown without timing anything: one worker, so reconciles happen one at a time.
As soon as the new LabServer's status has an observedGeneration (its first pass wrote it), the
operator's `controller_runtime_reconcile_total` is read. It only grows, so the value read is at
least what it was when the new LabServer got reconciled: if it is still well below the number of
old LabServers, most of them had not been reconciled since the restart when the new one was.
Then every old key still gets its turn (nothing starves): the low lane drains.

``NEW_WORK_FIRST_OLD=1000`` runs it with more LabServers; the seconds from the new LabServer's
creation to its first status are printed (run with ``-s``), for information only: the
benchmarks measure, tests do not.
"""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes.client import ApiClient, CustomObjectsApi
from prometheus_client.parser import text_string_to_metric_families
from tests.support.cluster import Cluster
from tests.support.lab import GROUP, PLURAL, VERSION, Lab, a_labserver
from tests.support.operator import OperatorProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.cluster
OLD = int(os.environ.get("NEW_WORK_FIRST_OLD", "200"))


def up_to_date(objects: CustomObjectsApi, ns: str) -> int:
    """How many LabServers of ``ns`` are Ready at their current generation."""
    # CustomObjectsApi's answers are typed `object`: they are the decoded JSON, a dict.
    listed = cast(dict[str, Any], objects.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL))
    return sum(
        1
        for ls in listed["items"]
        if ls.get("status", {}).get("observedGeneration") == ls["metadata"]["generation"]
        and any(c["type"] == "Ready" and c["status"] == "True" for c in ls["status"].get("conditions", []))
    )


def samples(op: OperatorProcess, name: str) -> dict[str, float]:
    """The values of metric ``name``, by their labels (as one string), from the operator's /metrics."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(op.metrics_text()):
        for sample in family.samples:
            if sample.name == name:
                found[",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))] = sample.value
    return found


def reconciles(op: OperatorProcess) -> int:
    return int(sum(samples(op, "controller_runtime_reconcile_total").values()))


def low_depth(op: OperatorProcess) -> int:
    return int(sum(v for labels, v in samples(op, "workqueue_depth").items() if "priority=low" in labels))


def test_a_labserver_created_after_a_restart_goes_before_the_relisted_backlog(
    full_cluster: Cluster, api: ApiClient, namespace: str
) -> None:
    lab = Lab(api, namespace)
    objects = CustomObjectsApi(api)
    with tempfile.TemporaryDirectory(prefix="k8s-lab-operator-") as folder:
        first = OperatorProcess(full_cluster.kubeconfig, Path(folder) / "first.log", workers="4")
        first.start()
        try:
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda i: lab.create(a_labserver(f"old-{i:03d}", replicas=0)), range(OLD)))
            eventually(
                lambda: up_to_date(objects, namespace) == OLD,
                timeout=300 + OLD,
                interval=1,
                what=f"all {OLD} LabServers Ready",
            )
        finally:
            first.stop()

        # One worker: reconciles happen one at a time, so their count tells the order.
        second = OperatorProcess(
            full_cluster.kubeconfig, Path(folder) / "second.log", workers="1", resync_seconds="0"
        )
        second.start()
        try:
            created = time.monotonic()
            lab.create(a_labserver("fresh", replicas=0))
            eventually(
                lambda: lab.get("fresh").get("status", {}).get("observedGeneration") == 1,
                # Generous: first kopf processes the whole relist (every LabServer, Deployment
                # and Service), which on a loaded 2-core machine takes a while at 1,000.
                timeout=120 + OLD // 2,
                interval=0.05,
                what="the new LabServer's first status",
            )
            seconds = time.monotonic() - created
            done_by_then = reconciles(second)
            print(
                f"new LabServer's first status {seconds:.2f} s after its creation (polled every 0.05 s);"
                f" reconciles by then: {done_by_then}; low keys waiting: {low_depth(second)}"
            )
            assert done_by_then < OLD // 2, (
                f"{done_by_then} reconciles had run when the new LabServer was reconciled"
                f" (low-priority keys still waiting: {low_depth(second)})"
            )
            # Nothing starves: every old key gets its turn.
            eventually(
                lambda: reconciles(second) >= OLD + 1 and low_depth(second) == 0,
                timeout=300 + OLD,
                interval=0.5,
                what="the relisted backlog drained",
            )
        finally:
            second.stop()
            print("--- second operator log tail ---\n" + second.log_tail())

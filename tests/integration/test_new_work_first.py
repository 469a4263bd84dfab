"""New work first: after a restart, new work is reconciled before the relist's backlog.

With many LabServers already up to date, a restarted operator lists them all; their keys go in at
low priority (kopf's initial listing, observedGeneration == generation). A LabServer created
while the operator was down is in the same listing, but it was never reconciled (no
observedGeneration): its key goes in at normal priority and is handed out before the others, even
though the listing (sorted by name) brings it last.

How the order is shown without timing anything: one worker, so reconciles happen one at a time,
and the restarted operator runs with ``--verbose``, so the workers log one DEBUG line
``reconciled`` per pass, naming the object. kopf holds every event handler back until each
watched kind was listed once, so the whole relist reaches the queue at about the same moment:
the new key's position among the logged passes is what the priorities made it, whatever the
machine's speed. Then every old key still gets its turn (nothing starves): the low lane drains.

``NEW_WORK_FIRST_OLD=1000`` runs it with more LabServers. The latency of a LabServer created
right after a restart is a benchmark's figure (`make bench-operator`, restart phase), not a test's.
"""

from __future__ import annotations

import os
import re
import tempfile
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
NEW = "zz-new"  # sorts after every "old-NNN": the listing brings it last
RECONCILED = re.compile(r"\breconciled\b.*\bname=(\S+)")


def reconciled_in_order(log: Path) -> list[str]:
    """The names of the objects the operator's workers finished a pass on, in order (its DEBUG lines)."""
    if not log.exists():
        return []
    return [m.group(1) for line in log.read_text().splitlines() if (m := RECONCILED.search(line))]


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


def test_a_labserver_created_while_the_operator_was_down_goes_before_the_relisted_backlog(
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
        # Created while no operator runs: new work, in the relist, listed after every old one.
        lab.create(a_labserver(NEW, replicas=0))

        # One worker: reconciles happen one at a time, so the order of the log lines is theirs.
        second = OperatorProcess(
            full_cluster.kubeconfig, Path(folder) / "second.log", workers="1", resync_seconds="0"
        )
        second.kopf_args = ("--verbose",)
        second.start()
        try:
            eventually(
                lambda: NEW in reconciled_in_order(second.log),
                timeout=120 + OLD // 2,
                interval=0.5,
                what="the new LabServer's first pass after the restart",
            )
            position = reconciled_in_order(second.log).index(NEW)
            print(f"the new LabServer was pass {position + 1} of the restarted operator ({OLD} old ones)")
            assert position < OLD // 2, f"{position} passes over old LabServers ran before the new one's"
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

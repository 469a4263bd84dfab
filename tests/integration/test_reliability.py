"""Reliability on the real control plane: problems users hit, each pinned by a test.

- every message the CRD accepts reaches the container byte for byte (emoji, ``$``, ``$(...)``);
- a namespace deleted with its LabServers gives no ERROR and no traceback in the operator log;
- a LabServer deleted and re-created under its name waits for the old children, no conflict;
- the local cluster has room for 10,000 LabServers (ClusterIPs and pods).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from kubernetes.client import ApiClient, CoreV1Api
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity
from tests.support.cluster import Cluster, or_none
from tests.support.expansion import expand
from tests.support.lab import Lab, a_labserver, container_env
from tests.support.operator import OperatorProcess
from tests.support.waiting import eventually
from tests.unit.test_messages import DEFINED, MESSAGES

from labop.builders import build_deployment
from labop.kubeapi import KubeApi
from labop.spec import parse_spec

pytestmark = pytest.mark.cluster
NASTY_MESSAGES = [
    "héllo 😀 costs $$5",
    "$(HOME) and $(",
    'quote " back\\slash\nnew line',
    "\x85\u2028\ufeff 𝄞",
]


def log_since(op: OperatorProcess, offset: int) -> str:
    return op.log.read_bytes()[offset:].decode(errors="replace")


def errors_in(text: str) -> list[str]:
    return [line for line in text.splitlines() if "[ERROR" in line or "Traceback" in line]


# --------------------------------------------------------------------------- messages


def test_every_message_the_crd_accepts_reaches_the_container_unchanged(
    control_plane: Cluster, api: ApiClient, namespace: str
) -> None:
    """Create (the CRD's schema decides what is valid), apply our Deployment, expand its env."""
    lab = Lab(api, namespace)
    kube = KubeApi(control_plane.api_client(), field_manager="k8s-lab", connections=1, timeout=30)
    names = (f"m{i}" for i in itertools.count())
    runner = asyncio.Runner()  # one loop for every apply: KubeApi's session lives on it

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(MESSAGES)
    def check(message: str) -> None:
        stored = lab.create(a_labserver(next(names), message=message))
        assert stored["spec"]["message"] == message  # the apiserver keeps it exactly
        spec = parse_spec(stored["spec"], default_image="labhttp:test")
        applied = runner.run(kube.apply(build_deployment(stored, spec)))
        # An empty value is omitted from the JSON; the container still gets the variable, empty.
        (container,) = applied.obj["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value", "") for e in container["env"]}
        assert expand(env["LABHTTP_MESSAGE"], DEFINED) == message.encode()

    try:
        check()
        for message in NASTY_MESSAGES:
            check.hypothesis.inner_test(message)  # type: ignore[attr-defined]
    finally:
        runner.run(kube.aclose())
        runner.close()


def test_a_message_with_a_nul_is_refused_by_the_crd(
    control_plane: Cluster, api: ApiClient, namespace: str
) -> None:
    with pytest.raises(ApiException) as refused:
        Lab(api, namespace).create(a_labserver("nul", message="a\x00b"))
    assert refused.value.status == 422
    assert "spec.message" in str(refused.value.body)


@pytest.mark.parametrize("message", NASTY_MESSAGES)
def test_a_labserver_with_emoji_and_dollars_in_its_message_gets_ready(lab: Lab, message: str) -> None:
    lab.create(a_labserver("nasty", message=message))
    eventually(lambda: lab.is_ready("nasty"), timeout=120, what="LabServer nasty Ready")
    assert expand(container_env(lab.deployment("nasty"))["LABHTTP_MESSAGE"], DEFINED) == message.encode()
    assert lab.condition("nasty", "Degraded")["status"] == "False"


# --------------------------------------------------------------------------- namespace deletion


def test_deleting_a_namespace_full_of_labservers_logs_no_error_and_no_traceback(
    operator: OperatorProcess, api: ApiClient
) -> None:
    core = CoreV1Api(api)
    ns = f"doomed-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})  # type: ignore[arg-type]  # the client sends a dict body as is; its hints name only the model class
    lab = Lab(api, ns)
    names = [f"ls-{i:02d}" for i in range(20)]
    for name in names:
        lab.create(a_labserver(name))
    eventually(lambda: all(lab.is_ready(n) for n in names), timeout=180, what="all 20 Ready")
    offset = operator.log.stat().st_size

    core.delete_namespace(ns)
    eventually(
        lambda: or_none(lambda: core.read_namespace(ns)) is None, timeout=180, what=f"namespace {ns} gone"
    )

    log = log_since(operator, offset)
    assert errors_in(log) == []
    # Quiet, not merely below ERROR: a namespace going away is nothing to retry or report.
    assert [line for line in log.splitlines() if "being terminated" in line] == []
    assert operator.ready()


# --------------------------------------------------------------------------- delete and re-create

HOLD = "k8slab.dev/test-hold"  # a finalizer that keeps the old Deployment until the test lets go


def test_a_labserver_recreated_under_its_name_waits_for_the_old_children_without_a_conflict(
    lab: Lab, operator: OperatorProcess
) -> None:
    old = lab.create(a_labserver("again"))
    eventually(lambda: lab.is_ready("again"), timeout=120, what="the first incarnation Ready")
    lab.apps.patch_namespaced_deployment("again", lab.ns, {"metadata": {"finalizers": [HOLD]}})
    offset = operator.log.stat().st_size

    lab.delete("again")
    new = lab.create(a_labserver("again"))
    assert new["metadata"]["uid"] != old["metadata"]["uid"]

    waiting = eventually(
        lambda: (
            lab.condition("again", "Progressing").get("reason") == "WaitingForCleanup"
            and lab.condition("again", "Progressing")
        ),
        timeout=120,
        what="Progressing=WaitingForCleanup",
    )
    assert waiting["status"] == "True"
    assert lab.condition("again", "Degraded")["status"] == "False"

    lab.apps.patch_namespaced_deployment("again", lab.ns, {"metadata": {"finalizers": None}})
    eventually(lambda: lab.is_ready("again"), timeout=120, what="the second incarnation Ready")
    owner = lab.deployment("again").metadata.owner_references[0]
    assert owner.uid == new["metadata"]["uid"]
    assert "ChildConflict" not in lab.event_reasons("again")
    assert errors_in(log_since(operator, offset)) == []


# --------------------------------------------------------------------------- cluster capacity


def test_the_local_cluster_has_room_for_more_than_250_cluster_ips(
    control_plane: Cluster, api: ApiClient, namespace: str
) -> None:
    if control_plane.local is None:
        pytest.skip("checks the local harness's own sizing")  # USE_EXISTING_CLUSTER only
    core = CoreV1Api(api)
    for i in range(300):  # a /24 Service range ran out at about 250
        core.create_namespaced_service(
            namespace,
            {"metadata": {"name": f"s{i}"}, "spec": {"ports": [{"port": 80}]}},  # type: ignore[arg-type]  # the client sends a dict body as is; its hints name only the model class
        )
    cidrs = control_plane.kubectl(
        "get", "servicecidrs", "kubernetes", "-o", "jsonpath={.spec.cidrs[0]}"
    ).stdout
    assert int(cidrs.split("/")[1]) <= 18, f"{cidrs} holds fewer than 10,000 ClusterIPs"


def test_the_local_clusters_nodes_take_ten_thousand_pods(full_cluster: Cluster, api: ApiClient) -> None:
    if full_cluster.local is None:
        pytest.skip("checks the local harness's own sizing")  # USE_EXISTING_CLUSTER only
    nodes: list[Any] = CoreV1Api(api).list_node().items
    kwok = [node for node in nodes if (node.metadata.labels or {}).get("type") == "kwok"]
    assert sum(parse_quantity(node.status.allocatable["pods"]) for node in kwok) >= 10_000  # type: ignore[no-untyped-call]  # kubernetes.utils.parse_quantity has no annotations

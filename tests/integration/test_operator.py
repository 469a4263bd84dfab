"""The operator on the full local cluster, run as users run it: ``kopf run operator/main.py -A``."""

from __future__ import annotations

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.support.cluster import CRDS, Cluster
from tests.support.lab import Lab, a_labserver, container_env
from tests.support.operator import OperatorProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.cluster


def test_a_new_labserver_gets_owned_children_and_kubectl_wait_sees_it_ready(
    lab: Lab, full_cluster: Cluster
) -> None:
    ls = lab.create(a_labserver("web", replicas=2, message="hi"))
    full_cluster.kubectl("wait", "-n", lab.ns, "--for=condition=Ready", "lsrv/web", "--timeout=120s")
    dep, svc = lab.deployment("web"), lab.service("web")
    for child in (dep, svc):
        (ref,) = child.metadata.owner_references
        assert (ref.kind, ref.name, ref.uid, ref.controller, ref.block_owner_deletion) == (
            "LabServer",
            "web",
            ls["metadata"]["uid"],
            True,
            True,
        )
    assert dep.status.ready_replicas == 2
    assert container_env(dep)["LABHTTP_MESSAGE"] == "hi"
    assert {p.name: p.port for p in svc.spec.ports} == {"api": 8080, "metrics": 9090}
    status = lab.get("web")["status"]
    assert status["readyReplicas"] == 2
    assert status["endpoints"]["host"].startswith(f"web.{lab.ns}.svc")
    # Events are posted after the status write that `kubectl wait` saw: wait for them too.
    eventually(
        lambda: {"Created", "Ready"} <= lab.event_reasons("web"), timeout=60, what="Created and Ready Events"
    )


def test_the_log_names_the_object_and_the_reconcile_in_kopfs_full_format(
    lab: Lab, operator: OperatorProcess
) -> None:
    lab.create(a_labserver("logged"))
    eventually(lambda: lab.is_ready("logged"), timeout=120, what="logged Ready")
    # kopf run's default --log-format (full): kopf's prefix, our message, then the fields.
    line = (
        r"\[[^]]+\] labop\.reconciler +\[INFO +\] ready changed controller=labserver"
        rf" namespace={lab.ns} name=logged reconcile_id=[0-9a-f]{{8}} ready=True reason=\w+"
    )
    eventually(
        lambda: re.search(line, operator.log.read_text()) is not None,
        timeout=30,
        what="the ready changed line",
    )


def test_editing_message_and_listeners_is_followed_by_the_children_and_observed_generation(lab: Lab) -> None:
    lab.create(a_labserver("edit"))
    eventually(lambda: lab.is_ready("edit"), timeout=120, what="edit Ready")
    lab.patch_spec("edit", {"message": "changed", "listeners": [{"name": "http", "port": 8081}]})
    eventually(
        lambda: container_env(lab.deployment("edit"))["LABHTTP_MESSAGE"] == "changed",
        timeout=60,
        what="the new message in the Deployment",
    )
    eventually(
        lambda: {p.name: p.port for p in lab.service("edit").spec.ports} == {"http": 8081},
        timeout=60,
        what="the Service to expose only the new listener",
    )
    eventually(
        lambda: lab.is_ready("edit") and lab.get("edit")["metadata"]["generation"] == 2,
        timeout=120,
        what="observedGeneration 2 and Ready",
    )
    ports = lab.deployment("edit").spec.template.spec.containers[0].ports
    assert [(p.name, p.container_port) for p in ports] == [("http", 8081)]


def test_kubectl_wait_right_after_an_edit_returns_once_the_edit_is_rolled_out(
    lab: Lab, full_cluster: Cluster
) -> None:
    lab.create(a_labserver("waited"))
    full_cluster.kubectl("wait", "-n", lab.ns, "--for=condition=Ready", "lsrv/waited", "--timeout=120s")
    lab.patch_spec("waited", {"message": "edited"})
    # Ready stays True from generation 1 until the pass after the operator's apply writes the
    # new status; kubectl must not take it as met: each condition carries observedGeneration.
    full_cluster.kubectl("wait", "-n", lab.ns, "--for=condition=Ready", "lsrv/waited", "--timeout=120s")
    ls = lab.get("waited")
    assert ls["status"]["observedGeneration"] == ls["metadata"]["generation"] == 2
    dep = lab.deployment("waited")
    assert container_env(dep)["LABHTTP_MESSAGE"] == "edited"
    assert dep.status.updated_replicas == 1


def test_kubectl_scale_reaches_three_ready_replicas(lab: Lab, full_cluster: Cluster) -> None:
    lab.create(a_labserver("scaled"))
    eventually(lambda: lab.is_ready("scaled"), timeout=120, what="scaled Ready")
    full_cluster.kubectl("scale", "-n", lab.ns, "lsrv/scaled", "--replicas=3")
    eventually(
        lambda: lab.is_ready("scaled") and lab.get("scaled")["status"]["readyReplicas"] == 3,
        timeout=120,
        what="3 ready replicas reported",
    )
    assert lab.deployment("scaled").spec.replicas == 3


def test_a_deleted_deployment_is_recreated(lab: Lab) -> None:
    lab.create(a_labserver("phoenix"))
    eventually(lambda: lab.is_ready("phoenix"), timeout=120, what="phoenix Ready")
    old_uid = lab.deployment("phoenix").metadata.uid
    lab.apps.delete_namespaced_deployment("phoenix", lab.ns)
    eventually(
        lambda: (d := lab.deployment("phoenix")) is not None and d.metadata.uid != old_uid,
        timeout=60,
        what="a new Deployment",
    )
    eventually(lambda: lab.is_ready("phoenix"), timeout=120, what="phoenix Ready again")


def test_a_hand_edited_owned_field_is_restored(lab: Lab) -> None:
    lab.create(a_labserver("drift", image="example/lab:1"))
    eventually(lambda: lab.is_ready("drift"), timeout=120, what="drift Ready")
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "server", "image": "evil/image:6"}]}}}}
    lab.apps.patch_namespaced_deployment("drift", lab.ns, patch)
    eventually(
        lambda: lab.deployment("drift").spec.template.spec.containers[0].image == "example/lab:1",
        timeout=60,
        what="the image to be restored",
    )


def test_a_hand_edited_service_port_is_restored(lab: Lab) -> None:
    lab.create(a_labserver("svc-drift"))
    eventually(lambda: lab.is_ready("svc-drift"), timeout=120, what="svc-drift Ready")
    edit = [{"op": "replace", "path": "/spec/ports/0/port", "value": 18080}]  # a JSON patch
    lab.core.patch_namespaced_service("svc-drift", lab.ns, edit)
    eventually(
        lambda: (
            {p.name: p.port for p in lab.service("svc-drift").spec.ports} == {"api": 8080, "metrics": 9090}
        ),
        timeout=60,
        what="the Service ports to be restored",
    )


def test_a_hand_edited_container_port_is_restored(lab: Lab) -> None:
    lab.create(a_labserver("port-drift"))
    eventually(lambda: lab.is_ready("port-drift"), timeout=120, what="port-drift Ready")
    edit = [
        {"op": "replace", "path": "/spec/template/spec/containers/0/ports/0/containerPort", "value": 18080}
    ]
    lab.apps.patch_namespaced_deployment("port-drift", lab.ns, edit)

    def container_ports() -> dict[str, int]:
        return {
            p.name: p.container_port
            for p in lab.deployment("port-drift").spec.template.spec.containers[0].ports
        }

    eventually(
        lambda: container_ports() == {"api": 8080, "metrics": 9090},
        timeout=60,
        what="the container ports to be restored",
    )
    eventually(lambda: lab.is_ready("port-drift"), timeout=120, what="port-drift Ready again")


def test_deleting_a_labserver_garbage_collects_its_children(lab: Lab) -> None:
    lab.create(a_labserver("brief"))
    eventually(
        lambda: lab.deployment("brief") is not None and lab.service("brief") is not None,
        timeout=60,
        what="children",
    )
    lab.delete("brief")
    eventually(
        lambda: lab.deployment("brief") is None and lab.service("brief") is None,
        timeout=120,
        what="children garbage-collected",
    )


def test_a_same_named_stranger_is_left_alone_and_reported_until_it_goes(lab: Lab) -> None:
    lab.core.create_namespaced_service(
        lab.ns,
        {"metadata": {"name": "taken"}, "spec": {"ports": [{"port": 80}], "selector": {"app": "other"}}},  # type: ignore[arg-type]  # the client sends a dict body as is; its hints name only the model class
    )
    lab.create(a_labserver("taken"))
    eventually(
        lambda: lab.condition("taken", "Degraded").get("reason") == "ChildConflict",
        timeout=60,
        what="Degraded ChildConflict",
    )
    assert lab.service("taken").spec.ports[0].port == 80  # untouched
    assert lab.deployment("taken") is None
    # The Warning Event goes out in the background, a moment after the status (labop.recorder).
    eventually(lambda: "ChildConflict" in lab.event_reasons("taken"), timeout=30, what="ChildConflict Event")
    lab.core.delete_namespaced_service("taken", lab.ns)
    eventually(lambda: lab.is_ready("taken"), timeout=120, what="Ready once the stranger is gone")


RESOURCES_RULE = (
    "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/resources/x-kubernetes-validations"
)


def test_an_object_stored_before_a_stricter_schema_is_reported_in_status_without_children(
    lab: Lab, full_cluster: Cluster
) -> None:
    # Today's CRD refuses a request above its limit (CEL). An object stored under an older,
    # laxer schema is still there: the operator must report it, not crash or retry forever.
    full_cluster.kubectl(
        "patch",
        "crd",
        "labservers.k8slab.dev",
        "--type=json",
        f'-p=[{{"op": "remove", "path": "{RESOURCES_RULE}"}}]',
    )
    try:
        resources = {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}
        eventually(
            lambda: lab.create(a_labserver("greedy", resources=resources)),
            timeout=30,
            what="the laxer schema to take effect",
        )
    finally:
        full_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    eventually(
        lambda: lab.condition("greedy", "Degraded").get("reason") == "InvalidSpec",
        timeout=60,
        what="Degraded InvalidSpec",
    )
    assert "requests.cpu" in lab.condition("greedy", "Degraded")["message"]
    assert lab.condition("greedy", "Ready")["status"] == "False"
    assert lab.deployment("greedy") is None
    # Fixing the spec is all it takes.
    lab.patch_spec("greedy", {"resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}})
    eventually(lambda: lab.is_ready("greedy"), timeout=120, what="Ready after the fix")


def test_the_operator_serves_controller_runtime_metrics(lab: Lab, operator: OperatorProcess) -> None:
    lab.create(a_labserver("measured"))
    eventually(lambda: lab.is_ready("measured"), timeout=120, what="measured Ready")
    families = {f.name: f for f in text_string_to_metric_families(operator.metrics_text())}
    for name in (
        "workqueue_depth",
        "workqueue_adds",
        "workqueue_queue_duration_seconds",
        "workqueue_work_duration_seconds",
        "workqueue_unfinished_work_seconds",
        "workqueue_longest_running_processor_seconds",
        "workqueue_retries",
        "controller_runtime_reconcile",
        "controller_runtime_reconcile_errors",
        "controller_runtime_reconcile_time_seconds",
        "controller_runtime_max_concurrent_reconciles",
        "controller_runtime_active_workers",
    ):
        assert name in families, name
    successes = [
        s.value
        for s in families["controller_runtime_reconcile"].samples
        if s.name == "controller_runtime_reconcile_total" and s.labels["result"] == "success"
    ]
    assert successes and successes[0] >= 1

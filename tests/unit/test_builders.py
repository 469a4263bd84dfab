"""labop.builders: the Deployment and Service a LabServer turns into."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import pytest
from tests.unit.factories import a_labserver, a_spec

from labop import naming
from labop.builders import DEFAULT_RESOURCES, build_deployment, build_service, listen_env
from labop.spec import Listener

ALLOWED_VOLUME_KINDS = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
# An IANA_SVC_NAME (container port names): validation.IsValidPortName.
IANA_SVC_NAME = re.compile(r"^(?=.*[a-z])(?!.*--)[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def restricted_violations(pod_spec: Mapping[str, Any]) -> list[str]:
    """What Pod Security "restricted" (baseline included) would refuse in this pod spec.

    The rules of pod-security-admission's checks, as summarised in the shared notes.
    """
    violations = []
    pod = pod_spec.get("securityContext") or {}
    containers = [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(host):
            violations.append(f"{host} is true")
    for volume in pod_spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_KINDS:
            violations.append(f"volume {volume['name']} uses {sorted(kinds - ALLOWED_VOLUME_KINDS)}")
    if pod.get("runAsUser") == 0:
        violations.append("pod runAsUser is 0")
    for container in containers:
        name, context = container["name"], container.get("securityContext") or {}
        if context.get("privileged"):
            violations.append(f"{name}: privileged")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            violations.append(f"{name}: hostPort")
        if context.get("allowPrivilegeEscalation") is not False:
            violations.append(f"{name}: allowPrivilegeEscalation is not false")
        if not (context.get("runAsNonRoot") is True or pod.get("runAsNonRoot") is True):
            violations.append(f"{name}: runAsNonRoot is not true")
        if context.get("runAsNonRoot") is False:
            violations.append(f"{name}: runAsNonRoot is false")
        if context.get("runAsUser") == 0:
            violations.append(f"{name}: runAsUser is 0")
        seccomp = (context.get("seccompProfile") or pod.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            violations.append(f"{name}: seccompProfile is {seccomp}")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in capabilities.get("drop", []):
            violations.append(f"{name}: capabilities do not drop ALL")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            violations.append(f"{name}: adds capabilities {capabilities['add']}")
    return violations


def deployment_of(**spec: Any) -> dict[str, Any]:
    ls = a_labserver(**spec)
    return build_deployment(ls, a_spec(ls))


def service_of(**spec: Any) -> dict[str, Any]:
    ls = a_labserver(**spec)
    return build_service(ls, a_spec(ls))


def pod_spec_of(deployment: Mapping[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def server_container(deployment: Mapping[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec_of(deployment)["containers"]
    return container  # type: ignore[no-any-return]


def env_of(deployment: Mapping[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in server_container(deployment)["env"]}


THREE_LISTENERS = [
    {"name": "web", "port": 8080},
    {"name": "metrics", "port": 9100},
    {"name": "admin", "port": 8081},
]


def test_the_deployment_passes_every_restricted_pod_security_rule() -> None:
    assert restricted_violations(pod_spec_of(deployment_of())) == []


def _drop_escalation_guard(pod: dict[str, Any]) -> None:
    del pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"]


def _keep_capabilities(pod: dict[str, Any]) -> None:
    pod["containers"][0]["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}


def _drop_seccomp(pod: dict[str, Any]) -> None:
    del pod["securityContext"]["seccompProfile"]


def _allow_root(pod: dict[str, Any]) -> None:
    del pod["securityContext"]["runAsNonRoot"]
    del pod["containers"][0]["securityContext"]["runAsNonRoot"]


def _use_host_network(pod: dict[str, Any]) -> None:
    pod["hostNetwork"] = True


def _mount_host_path(pod: dict[str, Any]) -> None:
    pod["volumes"] = [{"name": "host", "hostPath": {"path": "/"}}]


@pytest.mark.parametrize(
    "weaken",
    [
        _drop_escalation_guard,
        _keep_capabilities,
        _drop_seccomp,
        _allow_root,
        _use_host_network,
        _mount_host_path,
    ],
)
def test_the_restricted_check_itself_catches_a_weakened_pod(weaken: Any) -> None:
    pod_spec = pod_spec_of(deployment_of())
    weaken(pod_spec)
    assert restricted_violations(pod_spec) != []


def test_the_pod_hardening_beyond_the_profile() -> None:
    deployment = deployment_of()
    pod_spec, container = pod_spec_of(deployment), server_container(deployment)
    assert pod_spec["automountServiceAccountToken"] is False
    assert pod_spec["terminationGracePeriodSeconds"] == 30
    assert pod_spec["securityContext"]["runAsUser"] == pod_spec["securityContext"]["runAsGroup"] == 65532
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("build", [build_deployment, build_service], ids=["Deployment", "Service"])
def test_each_child_is_named_after_the_labserver_in_its_namespace_and_controlled_by_it(build: Any) -> None:
    ls = a_labserver("web", namespace="team-a", uid="uid-42")
    metadata = build(ls, a_spec(ls))["metadata"]
    assert (metadata["name"], metadata["namespace"]) == ("web", "team-a")
    assert metadata["ownerReferences"] == [
        {
            "apiVersion": "k8slab.dev/v1alpha1",
            "kind": "LabServer",
            "name": "web",
            "uid": "uid-42",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert naming.is_controlled_by(build(ls, a_spec(ls)), ls)


@pytest.mark.parametrize("build", [build_deployment, build_service], ids=["Deployment", "Service"])
def test_each_child_is_complete_and_labelled_for_apply(build: Any) -> None:
    ls = a_labserver("web")
    child = build(ls, a_spec(ls))
    assert child["apiVersion"] in ("apps/v1", "v1")
    assert child["kind"] in ("Deployment", "Service")
    assert child["metadata"]["labels"] == {
        "app.kubernetes.io/name": "labserver",
        "app.kubernetes.io/instance": "web",
        "app.kubernetes.io/managed-by": "k8s-lab",
        "app.kubernetes.io/component": "server",
    }
    assert all(LABEL_VALUE.match(value) for value in child["metadata"]["labels"].values())
    assert json.loads(json.dumps(child)) == child


def test_the_selector_picks_the_template_labels_and_the_service_uses_the_same_selector() -> None:
    deployment, service = deployment_of(), service_of()
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/name": "labserver", "app.kubernetes.io/instance": "hello"}
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["selector"] == selector


def test_the_deployment_runs_the_requested_replicas_of_the_spec_image() -> None:
    deployment = deployment_of(replicas=4, image="example.com/labhttp:2")
    assert deployment["spec"]["replicas"] == 4
    container = server_container(deployment)
    assert (container["name"], container["image"], container["imagePullPolicy"]) == (
        "server",
        "example.com/labhttp:2",
        "IfNotPresent",
    )


def test_scaled_to_zero_is_a_deployment_with_zero_replicas() -> None:
    assert deployment_of(replicas=0)["spec"]["replicas"] == 0


def test_the_environment_tells_labhttp_its_message_listeners_metrics_listener_and_shutdown_delay() -> None:
    assert env_of(deployment_of(message="Hi!")) == {
        "LABHTTP_MESSAGE": "Hi!",
        "LABHTTP_LISTEN": "api=0.0.0.0:8080,metrics=0.0.0.0:9090",
        "LABHTTP_METRICS_LISTENER": "metrics",
        "LABHTTP_SHUTDOWN_DELAY": "5",
    }
    env = env_of(deployment_of(listeners=THREE_LISTENERS))
    assert env["LABHTTP_LISTEN"] == "web=0.0.0.0:8080,metrics=0.0.0.0:9100,admin=0.0.0.0:8081"
    assert env["LABHTTP_METRICS_LISTENER"] == "metrics"


def test_without_a_metrics_listener_the_first_one_serves_metrics() -> None:
    env = env_of(deployment_of(listeners=[{"name": "web", "port": 8080}, {"name": "admin", "port": 8081}]))
    assert env["LABHTTP_METRICS_LISTENER"] == "web"


def test_listen_env_keeps_the_spec_order() -> None:
    assert listen_env((Listener("b", 2000), Listener("a", 1999))) == "b=0.0.0.0:2000,a=0.0.0.0:1999"


def test_each_listener_is_a_named_tcp_container_port() -> None:
    ports = server_container(deployment_of(listeners=THREE_LISTENERS))["ports"]
    assert ports == [
        {"name": "web", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9100, "protocol": "TCP"},
        {"name": "admin", "containerPort": 8081, "protocol": "TCP"},
    ]
    assert all(IANA_SVC_NAME.match(port["name"]) for port in ports)


def test_probes_hit_health_and_readyz_on_the_first_listener_by_name() -> None:
    container = server_container(deployment_of(listeners=THREE_LISTENERS))
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "web", "scheme": "HTTP"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "web", "scheme": "HTTP"}
    assert container["startupProbe"]["httpGet"]["port"] == "web"
    port_names = {port["name"] for port in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in port_names


def test_readiness_reacts_faster_than_liveness_and_startup_allows_a_slow_start() -> None:
    container = server_container(deployment_of())
    readiness, liveness, startup = (container[p] for p in ("readinessProbe", "livenessProbe", "startupProbe"))
    assert readiness["periodSeconds"] < liveness["periodSeconds"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30


def test_without_resources_in_the_spec_the_container_gets_the_defaults() -> None:
    assert server_container(deployment_of())["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"memory": "128Mi"},
    }


def test_resources_in_the_spec_replace_the_defaults_entirely() -> None:
    resources = {"requests": {"cpu": "250m"}, "limits": {"cpu": 1, "memory": "1Gi"}}
    assert server_container(deployment_of(resources=resources))["resources"] == {
        "requests": {"cpu": "250m"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    assert server_container(deployment_of(resources={}))["resources"] == {}


def test_changing_one_built_object_does_not_change_the_next_one() -> None:
    first = deployment_of()
    server_container(first)["resources"]["limits"]["memory"] = "1Ti"
    first["metadata"]["labels"]["extra"] = "x"
    second = deployment_of()
    assert server_container(second)["resources"]["limits"]["memory"] == "128Mi"
    assert "extra" not in second["metadata"]["labels"]
    assert DEFAULT_RESOURCES["limits"] == {"memory": "128Mi"}


def test_the_builders_are_deterministic() -> None:
    assert deployment_of() == deployment_of()
    assert service_of() == service_of()


def test_the_service_is_a_cluster_ip_with_one_named_tcp_port_per_listener() -> None:
    service = service_of(listeners=THREE_LISTENERS)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "web", "port": 8080, "targetPort": "web", "protocol": "TCP", "appProtocol": "http"},
        {"name": "metrics", "port": 9100, "targetPort": "metrics", "protocol": "TCP", "appProtocol": "http"},
        {"name": "admin", "port": 8081, "targetPort": "admin", "protocol": "TCP", "appProtocol": "http"},
    ]


def test_the_service_leaves_apiserver_owned_fields_alone() -> None:
    assert set(service_of()["spec"]) == {"type", "selector", "ports"}

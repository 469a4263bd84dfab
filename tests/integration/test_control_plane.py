"""The local control plane is the real thing: versions, CRDs, RBAC, scheduling, Ready pods, GC."""

from __future__ import annotations

import json
from typing import Any, cast

import kubernetes
import pytest
import yaml
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api, CustomObjectsApi
from localcluster.adminapi import ApiHttp
from tests.support.cluster import REPO, Cluster
from tests.support.waiting import eventually


def pinned_kubernetes_version() -> str:
    for line in (REPO / "hack" / "versions.env").read_text().splitlines():
        if line.startswith("K8S_VERSION="):
            return line.split("=", 1)[1].strip()
    raise AssertionError("K8S_VERSION missing from hack/versions.env")


@pytest.fixture(autouse=True)
def _only_local(control_plane: Cluster) -> None:
    if control_plane.local is None:
        pytest.skip("checks the local harness itself; USE_EXISTING_CLUSTER points elsewhere")


def test_the_apiserver_is_ready_and_reports_the_pinned_version(control_plane: Cluster) -> None:
    assert control_plane.local is not None
    assert control_plane.local.api.readyz()
    version = control_plane.local.api.get("/version")
    assert version is not None
    assert version["gitVersion"] == pinned_kubernetes_version()


def test_kubectl_reports_the_pinned_client_version(control_plane: Cluster) -> None:
    out = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert out["clientVersion"]["gitVersion"] == pinned_kubernetes_version()
    assert out["serverVersion"]["gitVersion"] == pinned_kubernetes_version()


def test_every_crd_in_the_repo_is_established(control_plane: Cluster, api: ApiClient) -> None:
    ext = kubernetes.client.ApiextensionsV1Api(api)
    for path in sorted((REPO / "crds").glob("*.yaml")):
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        crd = ext.read_custom_resource_definition(name)
        conditions = {c.type: c.status for c in (crd.status.conditions if crd.status else None) or []}
        assert conditions.get("Established") == "True", (name, conditions)


def test_a_labserver_round_trips_through_the_apiserver(api: ApiClient, namespace: str) -> None:
    objects = CustomObjectsApi(api)
    body = {
        "apiVersion": "k8slab.dev/v1alpha1",
        "kind": "LabServer",
        "metadata": {"name": "roundtrip"},
        "spec": {"replicas": 2, "message": "round and round"},
    }
    objects.create_namespaced_custom_object("k8slab.dev", "v1alpha1", namespace, "labservers", body)
    # CustomObjectsApi's answers are typed `object`: they are the decoded JSON, a dict.
    stored = cast(
        dict[str, Any],
        objects.get_namespaced_custom_object("k8slab.dev", "v1alpha1", namespace, "labservers", "roundtrip"),
    )
    assert stored["spec"]["replicas"] == 2
    assert stored["spec"]["message"] == "round and round"
    assert stored["metadata"]["uid"]
    # Defaults from the schema are applied by the apiserver, not by the operator.
    assert [x["port"] for x in stored["spec"]["listeners"]] == [8080, 9090]


def _token_for_new_service_account(core: CoreV1Api, namespace: str) -> str:
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})  # type: ignore[arg-type]  # the client sends a dict body as is; its hints name only the model class
    request = core.create_namespaced_service_account_token(
        "nobody",
        namespace,
        {"spec": {"expirationSeconds": 600}},  # type: ignore[arg-type]  # the client sends a dict body as is; its hints name only the model class
    )
    assert request.status is not None
    return str(request.status.token)


def test_rbac_denies_an_unprivileged_service_account(
    control_plane: Cluster, api: ApiClient, namespace: str
) -> None:
    assert control_plane.local is not None
    token = _token_for_new_service_account(CoreV1Api(api), namespace)
    local = control_plane.local
    http = ApiHttp(local.server, local.layout.pki.ca_cert.read_bytes(), token=token, timeout=10)
    # Authenticated (so not 401) but not authorised: RBAC is really on.
    assert http.request("GET", f"/api/v1/namespaces/{namespace}/secrets")[0] == 403
    assert http.request("GET", "/apis/k8slab.dev/v1alpha1/labservers")[0] == 403
    # Discovery is granted to every authenticated identity by the bootstrap roles.
    assert http.request("GET", "/version")[0] == 200


def _deployment(name: str, replicas: int) -> dict[str, object]:
    labels = {"app": name}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "example/web:1"}]},
            },
        },
    }


@pytest.mark.cluster
def test_every_node_of_the_full_cluster_is_ready(full_cluster: Cluster, api: ApiClient) -> None:
    nodes = CoreV1Api(api).list_node().items
    assert nodes
    for node in nodes:
        assert node.status is not None
        assert {c.type: c.status for c in node.status.conditions or []}["Ready"] == "True"


@pytest.mark.cluster
def test_a_plain_deployment_gets_two_ready_pods(
    full_cluster: Cluster, api: ApiClient, namespace: str
) -> None:
    apps = AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, _deployment("web", 2))  # type: ignore[arg-type]  # the client sends a dict body as is; its hints name only the model class
    eventually(
        lambda: (
            (
                getattr(apps.read_namespaced_deployment_status("web", namespace).status, "ready_replicas", 0)
                or 0
            )
            == 2
        ),
        timeout=120,
        what="deployment web to have 2 ready replicas",
    )
    pods = CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 2
    assert all(p.status and p.status.phase == "Running" and p.spec and p.spec.node_name for p in pods)


@pytest.mark.cluster
def test_deleting_a_deployment_garbage_collects_its_replicaset_and_pods(
    full_cluster: Cluster, api: ApiClient, namespace: str
) -> None:
    apps, core = AppsV1Api(api), CoreV1Api(api)
    apps.create_namespaced_deployment(namespace, _deployment("doomed", 2))  # type: ignore[arg-type]  # the client sends a dict body as is; its hints name only the model class
    eventually(
        lambda: len(core.list_namespaced_pod(namespace, label_selector="app=doomed").items) == 2,
        timeout=120,
        what="two pods",
    )
    # Background propagation: the apiserver deletes the owner now, the GC controller the rest.
    apps.delete_namespaced_deployment("doomed", namespace, propagation_policy="Background")
    eventually(
        lambda: not apps.list_namespaced_replica_set(namespace, label_selector="app=doomed").items,
        timeout=120,
        what="the ReplicaSet to be garbage-collected",
    )
    # kwok's pod-delete stage completes the graceful deletion a kubelet would do.
    eventually(
        lambda: not core.list_namespaced_pod(namespace, label_selector="app=doomed").items,
        timeout=120,
        what="the Pods to be garbage-collected",
    )


def test_a_user_added_by_the_harness_is_who_the_apiserver_says_and_rbac_decides_the_rest(
    control_plane: Cluster,
) -> None:
    local = control_plane.local
    assert local is not None
    nobody = local.add_user("harness-nobody", ["harness-testers"])
    whoami = json.loads(
        control_plane.kubectl(f"--kubeconfig={nobody}", "auth", "whoami", "-o", "json").stdout
    )
    assert whoami["status"]["userInfo"]["username"] == "harness-nobody"
    assert "harness-testers" in whoami["status"]["userInfo"]["groups"]
    status, answer = local.http(nobody).request("GET", "/api/v1/namespaces")
    assert status == 403, answer
    assert 'User "harness-nobody" cannot list resource "namespaces"' in answer["message"]

    admin = local.add_user("harness-admin", ["system:masters"])
    status, answer = local.http(admin).request("GET", "/api/v1/namespaces")
    assert status == 200 and answer["kind"] == "NamespaceList", answer

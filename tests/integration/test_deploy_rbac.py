"""The operator's identity from ``deploy/``: with nothing but its ServiceAccount's token it
reconciles a LabServer to Ready with no 403, and the same token is refused what its role does
not grant (by RBAC, as that user: not turned away as anonymous or with a bad token).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes.client import (
    ApiClient,
    AppsV1Api,
    Configuration,
    CoordinationV1Api,
    CoreV1Api,
    CustomObjectsApi,
)
from kubernetes.config.incluster_config import InClusterConfigLoader
from localcluster import kubeconfig
from tests.support.cluster import Cluster
from tests.support.deploy import GROUP, PLURAL, SA_USER, SYSTEM_NS, VERSION, Identity, a_labserver, refusals
from tests.support.operator import OperatorProcess
from tests.support.waiting import eventually

from labop.apierrors import ApiError
from labop.kubeapi import KubeApi


def is_ready(objects: Any, namespace: str, name: str) -> bool:
    ls = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    status = ls.get("status", {})
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
    return ready and status.get("observedGeneration") == ls["metadata"]["generation"]


def terminating_namespaces(api: ApiClient) -> list[str]:
    core: Any = CoreV1Api(api)
    return [ns.metadata.name for ns in core.list_namespace().items if ns.status.phase == "Terminating"]


@pytest.mark.cluster
def test_the_operator_reconciles_a_labserver_to_ready_with_nothing_but_its_service_account_token(
    full_cluster: Cluster,
    api: ApiClient,
    namespace: str,
    operator_identity: Identity,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    whoami = full_cluster.kubectl(
        f"--kubeconfig={operator_identity.kubeconfig}",
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    )
    assert whoami.stdout == SA_USER
    # In a pod (a CI runner), load_incluster_config would win over KUBECONFIG: take that away.
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    # The operator serves every namespace: a LabServer left in an earlier test's namespace, still
    # being deleted, would have its children refused with a 403 by NamespaceLifecycle admission
    # (not RBAC). Let those go first, so that any 403 in the log below is this role's fault.
    eventually(lambda: not terminating_namespaces(api), timeout=120, what="no namespace still terminating")
    # With leader election as deploy/ runs it: the Lease in its own namespace, through the Role.
    op = OperatorProcess(
        operator_identity.kubeconfig,
        tmp_path / "operator.log",
        leader_elect="true",
        leader_election_namespace=SYSTEM_NS,
    )
    op.start()
    objects: Any = CustomObjectsApi(api)
    try:
        ls = objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, a_labserver("rbac", replicas=2)
        )
        eventually(lambda: is_ready(objects, namespace, "rbac"), timeout=120, what="LabServer rbac Ready")
    finally:
        op.stop()
        log = op.log.read_text()
        print("--- operator log tail ---\n" + op.log_tail())
    apps: Any = AppsV1Api(api)
    core: Any = CoreV1Api(api)
    dep = apps.read_namespaced_deployment("rbac", namespace)
    svc = core.read_namespaced_service("rbac", namespace)
    for child in (dep, svc):
        (ref,) = child.metadata.owner_references
        assert (ref.uid, ref.controller, ref.block_owner_deletion) == (ls["metadata"]["uid"], True, True)
        assert "k8s-lab" in {m.manager for m in child.metadata.managed_fields}
    events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=rbac").items
    assert {"Created", "Ready"} <= {e.reason for e in events if e.involved_object.kind == "LabServer"}
    fields = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "rbac")["metadata"]
    status_managers = {m["manager"] for m in fields["managedFields"] if m.get("subresource") == "status"}
    assert status_managers == {"k8s-lab-status"}  # the status is applied under a manager of its own
    assert refusals(log) == []
    assert "Not enough permissions" not in log  # kopf's fallback when it may not list/watch CRDs
    assert "became leader" in log and "lease released" in log


LEASE = "k8s-lab-operator"
LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{SYSTEM_NS}/leases"


def a_lease(name: str, namespace: str = SYSTEM_NS) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"holderIdentity": "rbac-test", "leaseDurationSeconds": 1},
    }


REFUSED = {
    "list secrets in every namespace": ("GET", "/api/v1/secrets", None),
    "read secrets in its own namespace": ("GET", f"/api/v1/namespaces/{SYSTEM_NS}/secrets", None),
    "list namespaces": ("GET", "/api/v1/namespaces", None),
    "delete a node": ("DELETE", "/api/v1/nodes/kwok-node-0", None),
    "create a ClusterRole": (
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "mine"},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
        },
    ),
    "create a pod": (
        "POST",
        "/api/v1/namespaces/default/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
    ),
    "delete a Deployment": ("DELETE", "/apis/apps/v1/namespaces/default/deployments/any", None),
    "read another Lease": ("GET", f"{LEASES}/kube-scheduler-like", None),
    "list leases": ("GET", LEASES, None),
    "delete its Lease": ("DELETE", f"{LEASES}/{LEASE}", None),
    "create a Lease in another namespace": (
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/default/leases",
        a_lease("elsewhere", "default"),
    ),
    "change a LabServer's spec": (
        "PUT",
        f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}/any",
        a_labserver("any"),
    ),
}


@pytest.mark.parametrize("attempt", list(REFUSED))
def test_the_operators_identity_is_refused_what_its_role_does_not_grant(
    attempt: str, operator_identity: Identity
) -> None:
    method, path, body = REFUSED[attempt]
    status, answer = operator_identity.http().request(method, path, body)
    assert status == 403, answer
    # Refused by RBAC as *this* user, not turned away as anonymous or with a bad token.
    assert f'User "{SA_USER}" cannot' in answer["message"]


def test_the_operators_identity_may_list_labservers_everywhere(operator_identity: Identity) -> None:
    status, answer = operator_identity.http().request("GET", f"/apis/{GROUP}/{VERSION}/{PLURAL}")
    assert status == 200, answer


@pytest.mark.cluster
def test_the_operators_identity_may_create_get_and_update_its_one_lease(
    operator_identity: Identity, api: ApiClient
) -> None:
    http = operator_identity.http()
    CoordinationV1Api(api).delete_collection_namespaced_lease(SYSTEM_NS)
    status, created = http.request("POST", LEASES, a_lease(LEASE))
    assert status == 201, created
    status, read = http.request("GET", f"{LEASES}/{LEASE}")
    assert status == 200, read
    read["spec"]["holderIdentity"] = "rbac-test-2"
    status, updated = http.request("PUT", f"{LEASES}/{LEASE}", read)
    assert status == 200, updated
    # create cannot be restricted by name: another name in its namespace is allowed (deploy/README.md)
    status, other = http.request("POST", LEASES, a_lease("any-name"))
    assert status == 201, other
    status, answer = http.request("PUT", f"{LEASES}/any-name", other)
    assert status == 403, answer
    CoordinationV1Api(api).delete_collection_namespaced_lease(SYSTEM_NS)


def test_the_operators_writes_with_in_cluster_credentials_follow_a_rotated_token_file(
    control_plane: Cluster, api: ApiClient, namespace: str, operator_identity: Identity, tmp_path: Path
) -> None:
    """As in a pod: the token file and CA the kubelet mounts, read by the client's in-cluster
    loader. A token the apiserver refuses (401) is read again and the write sent once more; once
    the file holds the ServiceAccount's token again, the write goes through as that account."""
    admin = kubeconfig.Credentials.load(control_plane.kubeconfig)
    server = urlsplit(admin.server)
    (tmp_path / "ca.crt").write_bytes(admin.ca_pem)
    token_file = tmp_path / "token"
    token_file.write_text("not-a-token")
    environ = {"KUBERNETES_SERVICE_HOST": str(server.hostname), "KUBERNETES_SERVICE_PORT": str(server.port)}
    loader = InClusterConfigLoader(str(token_file), str(tmp_path / "ca.crt"), environ=environ)  # type: ignore[no-untyped-call]  # unannotated in the client
    config = Configuration()
    loader.load_and_set(config)  # type: ignore[no-untyped-call]  # unannotated in the client
    kube = KubeApi(ApiClient(config), field_manager="k8s-lab", connections=1, timeout=30)
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "in-cluster.1", "namespace": namespace},
        "involvedObject": {"kind": "LabServer", "name": "x", "namespace": namespace},
        "reason": "Test",
        "message": "sent with the mounted token",
        "type": "Normal",
    }
    with asyncio.Runner() as runner:
        try:
            with pytest.raises(ApiError) as refused:  # the file's token is refused, read again: still refused
                runner.run(kube.create_event(namespace, event))
            assert refused.value.status == 401
            token_file.write_text(operator_identity.token)  # the kubelet rotated it
            loader.token_expires_at = datetime.now()  # and the loader's minute is up
            runner.run(kube.create_event(namespace, event))  # 401 with the cached header, then read again
        finally:
            runner.run(kube.aclose())
    stored = CoreV1Api(api).read_namespaced_event("in-cluster.1", namespace)
    assert stored.message == "sent with the mounted token"

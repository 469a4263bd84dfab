"""Children with ``blockOwnerDeletion`` pass where OwnerReferencesPermissionEnforcement is on
(OpenShift and some distributions enable it; kube-apiserver does not), thanks to the role's
``labservers/finalizers`` rule: a second apiserver of the local cluster runs with the plugin, and
the same request without that rule, as a user of its own, is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import ApiClient, CustomObjectsApi, RbacAuthorizationV1Api
from localcluster.adminapi import APPLY_PATCH
from tests.support.cluster import Cluster
from tests.support.deploy import GROUP, PLURAL, VERSION, Identity, a_labserver, the_one

# Repeated, kube-apiserver adds the lists up; merged over the defaults, the last flag wins: so
# the default plugin is named again.
ENFORCING = "--enable-admission-plugins=NodeRestriction,OwnerReferencesPermissionEnforcement"


@pytest.fixture
def enforcing_apiserver(control_plane: Cluster) -> Iterator[str]:
    """A second kube-apiserver on the same etcd, with OwnerReferencesPermissionEnforcement on."""
    if control_plane.local is None:
        pytest.skip("needs the local control plane's binaries and etcd")
    with control_plane.local.extra_apiserver("kube-apiserver-enforcing", [ENFORCING]) as server:
        yield server


def a_child(owner: dict[str, Any], name: str) -> dict[str, Any]:
    meta = owner["metadata"]
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "LabServer",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "example/lab:1"}]},
            },
        },
    }


def test_children_with_block_owner_deletion_pass_owner_references_permission_enforcement_thanks_to_finalizers(
    control_plane: Cluster,
    api: ApiClient,
    namespace: str,
    operator_identity: Identity,
    rendered: list[dict[str, Any]],
    enforcing_apiserver: str,
) -> None:
    assert control_plane.local is not None  # enforcing_apiserver skipped otherwise
    objects: Any = CustomObjectsApi(api)
    rbac: Any = RbacAuthorizationV1Api(api)
    owner = objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, a_labserver("owner"))
    apply_path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{{}}?fieldManager=k8s-lab&force=true"

    status, answer = operator_identity.http(enforcing_apiserver).request(
        "PATCH", apply_path.format("kept"), a_child(owner, "kept"), content_type=APPLY_PATCH
    )
    assert status == 201, answer

    # The same role without the labservers/finalizers rule, bound to a user of its own: refused.
    role = the_one(rendered, "ClusterRole")
    weaker = "k8s-lab-no-finalizers"
    rules = [r for r in role["rules"] if r["resources"] != ["labservers/finalizers"]]
    assert len(rules) == len(role["rules"]) - 1
    user = control_plane.local.add_user(weaker)
    rbac.create_cluster_role({"metadata": {"name": weaker}, "rules": rules})
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": weaker},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": weaker},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": weaker}],
        }
    )
    try:
        status, answer = control_plane.local.http(user, server=enforcing_apiserver).request(
            "PATCH", apply_path.format("refused"), a_child(owner, "refused"), content_type=APPLY_PATCH
        )
        assert status == 403, answer
        assert "cannot set blockOwnerDeletion" in answer["message"]
    finally:
        rbac.delete_cluster_role_binding(weaker)
        rbac.delete_cluster_role(weaker)

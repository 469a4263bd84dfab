"""The operator's pod from ``deploy/`` is admitted under Pod Security "restricted" (its
namespace's enforce level), where a root pod is not."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException
from tests.support.cluster import Cluster
from tests.support.deploy import SA, SYSTEM_NS, Identity, apply, the_one
from tests.support.waiting import eventually


@pytest.mark.cluster
def test_the_operator_pod_is_admitted_under_pod_security_restricted_where_a_root_pod_is_not(
    full_cluster: Cluster, api: ApiClient, operator_identity: Identity, rendered: list[dict[str, Any]]
) -> None:
    core: Any = CoreV1Api(api)
    root_pod = {"metadata": {"name": "root"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(SYSTEM_NS, root_pod, dry_run="All")
    assert refused.value.status == 403 and "violates PodSecurity" in str(refused.value.body)

    # The real Deployment: the ReplicaSet controller creates its pod, which PodSecurity admission
    # checks against "restricted" (kwok then plays the node; the image is never pulled).
    apply(full_cluster, [the_one(rendered, "Deployment")])
    try:
        selector = "app.kubernetes.io/name=k8s-lab,app.kubernetes.io/component=operator"
        pods = eventually(
            lambda: core.list_namespaced_pod(SYSTEM_NS, label_selector=selector).items,
            timeout=60,
            what="the operator's pod to be created",
        )
        assert pods[0].spec.security_context.run_as_user == 65532
        failed = [
            e.message for e in core.list_namespaced_event(SYSTEM_NS).items if e.reason == "FailedCreate"
        ]
        assert failed == []
    finally:
        apps: Any = AppsV1Api(api)
        apps.delete_namespaced_deployment(SA, SYSTEM_NS)

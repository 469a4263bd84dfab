"""The apply-skip's ground truth, against the real apiserver (no operator running).

``ownedfields.applied_fields`` must be exactly the field set the apiserver records for our
field manager after applying what the builders make, for every spec shape; and the skip
(``reconciler.up_to_date`` over the cache's projection of the live child) must see every drift
an apply would repair, and only those.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api
from tests.support.cluster import Cluster

from labop.builders import build_deployment, build_service
from labop.cache import child_entry
from labop.kubeapi import KubeApi
from labop.naming import FIELD_MANAGER
from labop.ownedfields import applied_fields, fields_of
from labop.reconciler import up_to_date
from labop.spec import parse_spec

SHAPES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "scaled to zero": {"replicas": 0},
    "three listeners, metrics named": {
        "replicas": 2,
        "listeners": [
            {"name": "http", "port": 8080},
            {"name": "admin", "port": 8443},
            {"name": "metrics", "port": 9090},
        ],
    },
    "resources, limits only": {"resources": {"limits": {"memory": "256Mi", "cpu": "1"}}},
    "resources, both": {"resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi"}}},
    "message with dollars and emoji, own image": {
        "message": "$(HOME) costs $$ 😀",
        "image": "example.com/x:1",
    },
}


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    """One event loop for a test's applies: KubeApi's connections live on it."""
    with asyncio.Runner() as loop:
        yield loop


@pytest.fixture
def kube(control_plane: Cluster, runner: asyncio.Runner) -> Iterator[KubeApi]:
    api = KubeApi(control_plane.api_client(), field_manager=FIELD_MANAGER, connections=2, timeout=30)
    yield api
    runner.run(api.aclose())


def owner(namespace: str, name: str, uid: str = "9a1f0c2e-0000-4000-8000-000000000001") -> dict[str, Any]:
    # The owner need not exist: no garbage collector runs in this tier.
    return {
        "apiVersion": "k8slab.dev/v1alpha1",
        "kind": "LabServer",
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
    }


def desired(namespace: str, name: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    ls, parsed = owner(namespace, name), parse_spec(spec, default_image="img:1")
    return [build_deployment(ls, parsed), build_service(ls, parsed)]


def our_apply_entry(live: dict[str, Any]) -> dict[str, Any]:
    (entry,) = [
        m
        for m in live["metadata"]["managedFields"]
        if m["manager"] == FIELD_MANAGER and m["operation"] == "Apply" and not m.get("subresource")
    ]
    return dict(entry["fieldsV1"])


@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_computed_field_set_is_the_one_the_apiserver_records(
    kube: KubeApi, runner: asyncio.Runner, namespace: str, shape: str
) -> None:
    for obj in desired(namespace, "shape", SHAPES[shape]):
        live = runner.run(kube.apply(obj)).obj
        assert fields_of(our_apply_entry(live)) == applied_fields(obj), obj["kind"]
        assert up_to_date(json.loads(child_entry(live)), obj, FIELD_MANAGER)


# --------------------------------------------------------------------------- drift


def as_dict(api: ApiClient, model: Any) -> dict[str, Any]:
    live: dict[str, Any] = api.sanitize_for_serialization(model)  # type: ignore[no-untyped-call]  # unannotated in the client
    return live


def live_deployment(api: ApiClient, namespace: str) -> dict[str, Any]:
    live = as_dict(api, AppsV1Api(api).read_namespaced_deployment("drift", namespace))
    return live


def patch(cluster: Cluster, namespace: str, body: Any, kind: str, subresource: str = "") -> None:
    """``kubectl patch`` as a person would, under a field manager of its own."""
    extra = [f"--subresource={subresource}"] if subresource else []
    cluster.kubectl(
        "patch",
        "deployment",
        "drift",
        "-n",
        namespace,
        f"--type={kind}",
        "-p",
        json.dumps(body),
        "--field-manager=hand",
        *extra,
    )


MERGE, JSON_PATCH = "merge", "json"
CONTAINER = "/spec/template/spec/containers/0"
DRIFTS: dict[str, tuple[bool, Callable[[Cluster, str], None]]] = {
    # name: (an apply must repair it, how it is done)
    "an owned field updated by hand (kubectl edit)": (
        True,
        lambda api, ns: patch(
            api, ns, [{"op": "replace", "path": f"{CONTAINER}/image", "value": "x:2"}], JSON_PATCH
        ),
    ),
    "an env entry removed": (
        True,
        lambda api, ns: patch(api, ns, [{"op": "remove", "path": f"{CONTAINER}/env/0"}], JSON_PATCH),
    ),
    "a label of ours edited": (
        True,
        lambda api, ns: patch(api, ns, {"metadata": {"labels": {"app.kubernetes.io/component": "x"}}}, MERGE),
    ),
    "scaled (kubectl scale)": (
        True,
        lambda api, ns: patch(api, ns, {"spec": {"replicas": 5}}, MERGE, subresource="scale"),
    ),
    "the revision annotation set (as the Deployment controller does)": (
        False,
        lambda api, ns: patch(
            api, ns, {"metadata": {"annotations": {"deployment.kubernetes.io/revision": "1"}}}, MERGE
        ),
    ),
    "a label of someone else's added": (
        False,
        lambda api, ns: patch(api, ns, {"metadata": {"labels": {"team": "a"}}}, MERGE),
    ),
    "the status written": (
        False,
        lambda api, ns: patch(api, ns, {"status": {"observedGeneration": 1}}, MERGE, subresource="status"),
    ),
}


@pytest.mark.parametrize("drift", list(DRIFTS))
def test_a_drift_is_seen_by_the_skip_exactly_when_an_apply_would_repair_it(
    kube: KubeApi, runner: asyncio.Runner, api: ApiClient, control_plane: Cluster, namespace: str, drift: str
) -> None:
    repair, do = DRIFTS[drift]
    (deployment, _) = desired(namespace, "drift", {"replicas": 1})
    runner.run(kube.apply(deployment))
    assert up_to_date(json.loads(child_entry(live_deployment(api, namespace))), deployment, FIELD_MANAGER)
    do(control_plane, namespace)
    assert (
        up_to_date(json.loads(child_entry(live_deployment(api, namespace))), deployment, FIELD_MANAGER)
        is not repair
    )
    if repair:  # and the apply does repair it: afterwards, up to date again
        runner.run(kube.apply(deployment))
        assert up_to_date(json.loads(child_entry(live_deployment(api, namespace))), deployment, FIELD_MANAGER)


def test_nothing_but_our_apply_changes_a_services_owned_set(
    kube: KubeApi, runner: asyncio.Runner, api: ApiClient, namespace: str
) -> None:
    (_, service) = desired(namespace, "svc", {})
    runner.run(kube.apply(service))
    core = CoreV1Api(api)
    core.patch_namespaced_service("svc", namespace, {"metadata": {"annotations": {"note": "x"}}})
    live = as_dict(api, core.read_namespaced_service("svc", namespace))
    assert up_to_date(json.loads(child_entry(live)), service, FIELD_MANAGER)
    core.patch_namespaced_service(
        "svc", namespace, {"spec": {"ports": [{"port": 8080, "protocol": "TCP", "name": "other"}]}}
    )
    live = as_dict(api, core.read_namespaced_service("svc", namespace))
    assert not up_to_date(json.loads(child_entry(live)), service, FIELD_MANAGER)

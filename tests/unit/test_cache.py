"""labop.cache: what the kopf indexes store, the owner mapping, and reads through ``Cache``.

kopf's ``Index`` is a mapping from key to a collection of values; a dict of key -> list stands in.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from tests.support.caches import a_synced_cache
from tests.unit.factories import a_deployment, a_labserver, a_service

from labop.cache import Cache, Key, child_entry, labserver_entry, owner_key
from labop.naming import DESIRED_HASH
from labop.ownedfields import fields_of, fingerprint

KEY: Key = ("lab", "hello")


def a_child(*refs: dict[str, Any], name: str = "hello", namespace: str = "lab") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": "child-uid", "ownerReferences": list(refs)}
    }


def a_ref(
    *,
    kind: str = "LabServer",
    api_version: str = "k8slab.dev/v1alpha1",
    name: str = "owner",
    controller: bool | None = True,
) -> dict[str, Any]:
    ref: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "name": name, "uid": "owner-uid"}
    if controller is not None:
        ref["controller"] = controller
    return ref


# --------------------------------------------------------------------------- owner_key


def test_a_child_controlled_by_a_labserver_maps_to_that_labserver_in_its_namespace() -> None:
    assert owner_key(a_child(a_ref(name="owner"), namespace="team")) == ("team", "owner")


def test_the_built_children_map_back_to_their_labserver() -> None:
    ls = a_labserver("web", namespace="team")
    assert owner_key(a_deployment(ls)) == ("team", "web")
    assert owner_key(a_service(ls)) == ("team", "web")


def test_any_version_of_the_group_counts() -> None:
    assert owner_key(a_child(a_ref(api_version="k8slab.dev/v1"))) == ("lab", "owner")


def test_an_owner_reference_that_is_not_the_controller_does_not_count() -> None:
    assert owner_key(a_child(a_ref(controller=False))) is None
    assert owner_key(a_child(a_ref(controller=None))) is None


def test_a_controller_of_another_kind_does_not_count() -> None:
    assert owner_key(a_child(a_ref(kind="ReplicaSet", api_version="apps/v1"))) is None


def test_a_labserver_of_another_group_does_not_count() -> None:
    assert owner_key(a_child(a_ref(api_version="example.com/v1alpha1"))) is None
    assert owner_key(a_child(a_ref(api_version="sub.k8slab.dev/v1alpha1"))) is None


def test_the_controller_is_found_among_other_owner_references() -> None:
    refs = (a_ref(name="not-controller", controller=False), a_ref(name="boss"))
    assert owner_key(a_child(*refs)) == ("lab", "boss")


def test_a_child_without_owner_references_or_metadata_has_no_owner() -> None:
    assert owner_key(a_child()) is None
    assert owner_key({"metadata": {"name": "x"}}) is None
    assert owner_key({}) is None


# --------------------------------------------------------------------------- entries


def unpacked(entry: bytes) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(entry)
    return value


def test_a_labserver_entry_keeps_identity_spec_and_status() -> None:
    ls = a_labserver(replicas=3, status={"replicas": 2})
    assert unpacked(labserver_entry(ls)) == {
        "apiVersion": "k8slab.dev/v1alpha1",
        "kind": "LabServer",
        "metadata": ls["metadata"],
        "spec": {"replicas": 3},
        "status": {"replicas": 2},
    }


def test_a_labserver_entry_leaves_out_what_nothing_reads() -> None:
    ls = a_labserver()
    ls["metadata"].update(
        labels={"a": "1"},
        annotations={"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
        managedFields=[{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        finalizers=["x"],
    )
    assert set(unpacked(labserver_entry(ls))["metadata"]) == {
        "name",
        "namespace",
        "uid",
        "generation",
        "resourceVersion",
    }


def test_a_labserver_entry_keeps_a_deletion_timestamp() -> None:
    ls = a_labserver()
    ls["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert unpacked(labserver_entry(ls))["metadata"]["deletionTimestamp"] == "2026-01-01T00:00:00Z"


def test_a_labserver_entry_has_empty_spec_and_status_when_the_body_has_none() -> None:
    ls = a_labserver()
    ls["spec"] = None
    entry = unpacked(labserver_entry(ls))
    assert (entry["spec"], entry["status"]) == ({}, {})


def test_a_labserver_entry_does_not_change_with_the_body() -> None:
    ls = a_labserver(listeners=[{"name": "api", "port": 8080}], status={"conditions": [{"type": "Ready"}]})
    entry = labserver_entry(ls)
    before = copy.deepcopy(unpacked(entry))

    ls["metadata"]["name"] = "renamed"
    ls["spec"]["listeners"][0]["port"] = 9999
    ls["status"]["conditions"][0]["type"] = "Changed"

    assert unpacked(entry) == before


def test_a_child_entry_keeps_identity_owners_replicas_and_rollout_status_but_not_the_pod_template() -> None:
    deployment = a_deployment(a_labserver())
    deployment["metadata"].update(uid="dep-uid", generation=3, resourceVersion="7")
    deployment["status"] = {
        "readyReplicas": 1,
        "observedGeneration": 3,
        "collisionCount": 0,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "R", "message": "m", "lastUpdateTime": "t"}
        ],
    }
    entry = unpacked(child_entry(deployment))
    assert entry["metadata"] == {
        "name": "hello",
        "namespace": "lab",
        "uid": "dep-uid",
        "generation": 3,
        "resourceVersion": "7",
        "ownerReferences": [
            {k: v for k, v in ref.items() if k != "blockOwnerDeletion"}
            for ref in deployment["metadata"]["ownerReferences"]
        ],
        "annotations": {DESIRED_HASH: deployment["metadata"]["annotations"][DESIRED_HASH]},
    }
    assert entry["spec"] == {"replicas": deployment["spec"]["replicas"]}
    assert entry["status"] == {
        "readyReplicas": 1,
        "observedGeneration": 3,
        "conditions": [{"type": "Available", "status": "True", "reason": "R", "message": "m"}],
    }


def test_a_child_entry_keeps_a_fingerprint_of_each_managers_apply_and_nothing_else_of_managed_fields() -> (
    None
):
    deployment = a_deployment(a_labserver())
    ours: dict[str, Any] = {"f:spec": {"f:replicas": {}}}
    deployment["metadata"]["managedFields"] = [
        {"manager": "k8s-lab", "operation": "Apply", "fieldsV1": ours},
        {"manager": "k8s-lab", "operation": "Apply", "subresource": "status", "fieldsV1": {"f:status": {}}},
        {"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {"f:paused": {}}}},
    ]
    assert unpacked(child_entry(deployment))["fields"] == {"k8s-lab": fingerprint(fields_of(ours))}


def test_a_service_entry_keeps_the_name_and_number_of_its_ports_for_the_endpoints() -> None:
    service = a_service(a_labserver())
    ports = [{"name": port["name"], "port": port["port"]} for port in service["spec"]["ports"]]
    assert unpacked(child_entry(service))["spec"] == {"ports": ports}


def test_a_child_entry_keeps_only_the_controller_reference() -> None:
    service = a_service(a_labserver())
    service["metadata"]["ownerReferences"].append(a_ref(controller=False))
    refs = unpacked(child_entry(service))["metadata"]["ownerReferences"]
    assert [ref["uid"] for ref in refs] == [service["metadata"]["ownerReferences"][0]["uid"]]


def test_a_child_entry_of_an_unowned_object_has_an_empty_owner_list() -> None:
    entry = unpacked(child_entry({"metadata": {"name": "x", "namespace": "y"}}))
    assert entry["metadata"]["ownerReferences"] == []


def test_a_child_entry_still_maps_to_its_owner() -> None:
    assert owner_key(unpacked(child_entry(a_deployment(a_labserver("web"))))) == ("lab", "web")


# --------------------------------------------------------------------------- Cache


@pytest.fixture
def populated() -> Cache:
    ls = a_labserver()
    return a_synced_cache(
        labservers=[ls, a_labserver("other", uid="other-uid")],
        deployments=[a_deployment(ls)],
        services=[a_service(ls)],
    )


def test_the_cache_reads_each_kind_from_its_own_store(populated: Cache) -> None:
    labserver, deployment, service = (
        populated.labserver(KEY),
        populated.deployment(KEY),
        populated.service(KEY),
    )
    assert labserver is not None and labserver["kind"] == "LabServer"
    assert deployment is not None and deployment["metadata"]["name"] == "hello"
    assert service is not None and owner_key(service) == KEY


def test_every_read_is_a_copy_of_its_own(populated: Cache) -> None:
    first = populated.labserver(KEY)
    assert first is not None
    first["spec"]["replicas"] = 99
    again = populated.labserver(KEY)
    assert again is not None and again["spec"] != first["spec"]


def test_a_key_missing_from_a_store_reads_as_none(populated: Cache) -> None:
    missing: Key = ("lab", "nope")
    assert populated.labserver(missing) is None
    assert populated.deployment(missing) is None
    assert populated.service(missing) is None
    assert populated.deployment(("lab", "other")) is None


def test_the_labserver_keys_are_a_snapshot_of_the_store() -> None:
    cache = a_synced_cache(labservers=[a_labserver()])
    keys = cache.labserver_keys()
    cache.labservers.apply("ADDED", a_labserver("late", uid="late-uid"))
    assert keys == [KEY]
    assert sorted(cache.labserver_keys()) == [("lab", "hello"), ("lab", "late")]


def test_a_strangers_entry_keeps_only_identity_and_owner_references() -> None:
    stranger = {
        "kind": "Deployment",
        "metadata": {"name": "hello", "namespace": "lab", "uid": "u", "generation": 4},
        "spec": {"replicas": 3, "template": {}},
        "status": {"readyReplicas": 3},
    }
    assert unpacked(child_entry(stranger)) == {
        "metadata": {"name": "hello", "namespace": "lab", "uid": "u", "ownerReferences": []}
    }

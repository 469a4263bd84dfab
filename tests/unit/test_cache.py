"""labop.cache: what the kopf indexes store, the owner mapping, and reads through ``Cache``.

kopf's ``Index`` is a mapping from key to a collection of values; a dict of key -> list stands in.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from tests.unit.factories import a_deployment, a_labserver, a_service

from labop.cache import Cache, Key, child_entry, labserver_entry, owner_key

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


def test_a_labserver_entry_keeps_identity_spec_and_status() -> None:
    ls = a_labserver(replicas=3, status={"replicas": 2})
    entry = labserver_entry(ls)
    assert entry == {
        "apiVersion": "k8slab.dev/v1alpha1",
        "kind": "LabServer",
        "metadata": ls["metadata"],
        "spec": {"replicas": 3},
        "status": {"replicas": 2},
    }


def test_a_labserver_entry_has_empty_spec_and_status_when_the_body_has_none() -> None:
    ls = a_labserver()
    ls["spec"] = None
    entry = labserver_entry(ls)
    assert (entry["spec"], entry["status"]) == ({}, {})


def test_a_labserver_entry_is_a_deep_copy_of_the_body() -> None:
    ls = a_labserver(listeners=[{"name": "api", "port": 8080}], status={"conditions": [{"type": "Ready"}]})
    ls["metadata"]["labels"] = {"a": "1"}
    entry = labserver_entry(ls)
    before = copy.deepcopy(entry)

    ls["metadata"]["labels"]["a"] = "2"
    ls["metadata"]["name"] = "renamed"
    ls["spec"]["listeners"][0]["port"] = 9999
    ls["spec"]["replicas"] = 7
    ls["status"]["conditions"][0]["type"] = "Changed"

    assert entry == before


def test_a_child_entry_keeps_identity_owners_replicas_and_status_but_not_the_pod_template() -> None:
    deployment = a_deployment(a_labserver())
    deployment["metadata"].update(uid="dep-uid", generation=3, managedFields=[{"manager": "x"}])
    deployment["status"] = {"readyReplicas": 1, "observedGeneration": 3}
    assert child_entry(deployment) == {
        "metadata": {
            "name": "hello",
            "namespace": "lab",
            "uid": "dep-uid",
            "generation": 3,
            "resourceVersion": deployment["metadata"].get("resourceVersion"),
            "ownerReferences": deployment["metadata"]["ownerReferences"],
        },
        "spec": {"replicas": deployment["spec"]["replicas"]},
        "status": {"readyReplicas": 1, "observedGeneration": 3},
    }


def test_a_service_entry_keeps_its_ports_for_the_endpoints() -> None:
    service = a_service(a_labserver())
    assert child_entry(service)["spec"] == {"ports": service["spec"]["ports"]}


def test_a_child_entry_is_a_deep_copy_of_the_owner_references() -> None:
    service = a_service(a_labserver())
    entry = child_entry(service)
    service["metadata"]["ownerReferences"][0]["controller"] = False
    service["metadata"]["ownerReferences"].append(a_ref())
    assert entry["metadata"]["ownerReferences"] == [
        a_service(a_labserver())["metadata"]["ownerReferences"][0]
    ]


def test_a_child_entry_of_an_unowned_object_has_an_empty_owner_list() -> None:
    assert child_entry({"metadata": {"name": "x", "namespace": "y"}})["metadata"]["ownerReferences"] == []


def test_a_child_entry_still_maps_to_its_owner() -> None:
    assert owner_key(child_entry(a_deployment(a_labserver("web")))) == ("lab", "web")


# --------------------------------------------------------------------------- Cache


@pytest.fixture
def populated() -> Cache:
    ls = a_labserver()
    return Cache(
        labservers={KEY: [labserver_entry(ls)], ("lab", "other"): [labserver_entry(a_labserver("other"))]},
        deployments={KEY: [child_entry(a_deployment(ls))]},
        services={KEY: [child_entry(a_service(ls))]},
    )


def test_the_cache_reads_each_kind_from_its_own_index(populated: Cache) -> None:
    labserver, deployment, service = (
        populated.labserver(KEY),
        populated.deployment(KEY),
        populated.service(KEY),
    )
    assert labserver is not None and labserver["kind"] == "LabServer"
    assert deployment is not None and deployment["metadata"]["name"] == "hello"
    assert service is not None and owner_key(service) == KEY


def test_a_key_missing_from_an_index_reads_as_none(populated: Cache) -> None:
    missing: Key = ("lab", "nope")
    assert populated.labserver(missing) is None
    assert populated.deployment(missing) is None
    assert populated.service(missing) is None
    assert populated.deployment(("lab", "other")) is None


def test_a_key_whose_store_is_empty_reads_as_none() -> None:
    cache = Cache(labservers={KEY: []}, deployments={}, services={})
    assert cache.labserver(KEY) is None


def test_the_labserver_keys_are_a_snapshot_of_the_index() -> None:
    labservers: dict[Key, list[dict[str, Any]]] = {KEY: [labserver_entry(a_labserver())]}
    cache = Cache(labservers=labservers, deployments={}, services={})
    keys = cache.labserver_keys()
    labservers[("lab", "late")] = [labserver_entry(a_labserver("late"))]
    assert keys == [KEY]
    assert sorted(cache.labserver_keys()) == [("lab", "hello"), ("lab", "late")]


def test_a_strangers_entry_keeps_only_identity_and_owner_references() -> None:
    stranger = {
        "kind": "Deployment",
        "metadata": {"name": "hello", "namespace": "lab", "uid": "u", "generation": 4},
        "spec": {"replicas": 3, "template": {}},
        "status": {"readyReplicas": 3},
    }
    assert child_entry(stranger) == {
        "metadata": {"name": "hello", "namespace": "lab", "uid": "u", "ownerReferences": []}
    }

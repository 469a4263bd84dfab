"""labop.ownedfields: the field set an apply of our children owns, and reading fieldsV1 back.

The rules are proven against the real apiserver in tests/integration/test_owned_fields.py; these
tests pin the pure parts: the shapes the rules give, and that reading and writing fieldsV1 agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tests.unit.factories import a_labserver, a_spec

from labop import ownedfields
from labop.builders import build_deployment, build_service, desired_hash
from labop.naming import DESIRED_HASH
from labop.ownedfields import applied_fields, apply_fingerprints, fields_of, fields_v1, fingerprint

CONTAINER = ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"server"}')


def test_identity_fields_are_owned_by_nobody() -> None:
    fields = applied_fields(build_service(a_labserver(), a_spec(a_labserver())))
    assert not any(
        path[-1] in ("f:apiVersion", "f:kind", "f:name", "f:namespace") for path in fields if len(path) <= 2
    )


def test_an_atomic_selector_is_one_leaf() -> None:
    fields = applied_fields(build_deployment(a_labserver(), a_spec(a_labserver())))
    assert ("f:spec", "f:selector") in fields
    assert not any(path[:2] == ("f:spec", "f:selector") and len(path) > 2 for path in fields)


def test_a_keyed_list_item_is_a_member_beside_its_fields() -> None:
    fields = applied_fields(build_deployment(a_labserver(), a_spec(a_labserver())))
    env = (*CONTAINER, "f:env", 'k:{"name":"LABHTTP_MESSAGE"}')
    assert {CONTAINER, env, (*env, "f:value")} <= fields


def test_container_and_service_ports_are_keyed_by_number_and_protocol() -> None:
    ls = a_labserver(listeners=[{"name": "api", "port": 8080}])
    deployment = applied_fields(build_deployment(ls, a_spec(ls)))
    service = applied_fields(build_service(ls, a_spec(ls)))
    assert (*CONTAINER, "f:ports", 'k:{"containerPort":8080,"protocol":"TCP"}') in deployment
    assert ("f:spec", "f:ports", 'k:{"port":8080,"protocol":"TCP"}') in service


def test_an_owner_reference_is_one_leaf_keyed_by_uid() -> None:
    ls = a_labserver()
    fields = applied_fields(build_service(ls, a_spec(ls)))
    ref = ("f:metadata", "f:ownerReferences", f'k:{{"uid":"{ls["metadata"]["uid"]}"}}')
    assert ref in fields
    assert not any(path[: len(ref)] == ref and len(path) > len(ref) for path in fields)


def test_a_list_of_scalars_is_atomic() -> None:
    fields = applied_fields(build_deployment(a_labserver(), a_spec(a_labserver())))
    assert (*CONTAINER, "f:securityContext", "f:capabilities", "f:drop") in fields


def test_fields_v1_reads_back_as_the_same_set() -> None:
    ls = a_labserver(listeners=[{"name": "a", "port": 1234}, {"name": "metrics", "port": 9090}])
    for obj in (build_deployment(ls, a_spec(ls)), build_service(ls, a_spec(ls))):
        fields = applied_fields(obj)
        assert fields_of(fields_v1(fields)) == fields


def test_key_order_and_spacing_in_fields_v1_do_not_matter() -> None:
    written: dict[str, Any] = {
        "f:spec": {"f:ports": {'k:{"protocol": "TCP", "port": 80}': {".": {}, "f:port": {}}}}
    }
    assert fields_of(written) == {
        ("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}'),
        ("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}', "f:port"),
    }


def test_only_apply_entries_on_the_object_itself_are_fingerprinted() -> None:
    ours: dict[str, Any] = {"f:spec": {"f:replicas": {}}}
    managed = [
        {"manager": "k8s-lab", "operation": "Apply", "fieldsV1": ours},
        {"manager": "k8s-lab", "operation": "Apply", "subresource": "status", "fieldsV1": {}},
        {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:metadata": {}}},
    ]
    assert apply_fingerprints(managed) == {"k8s-lab": fingerprint(fields_of(ours))}
    assert apply_fingerprints(None) == {}


def test_a_fingerprint_differs_when_one_field_changes_hands() -> None:
    fields = applied_fields(build_deployment(a_labserver(), a_spec(a_labserver())))
    assert fingerprint(fields) != fingerprint(fields - {("f:spec", "f:replicas")})


def test_each_child_records_the_hash_of_itself_without_the_annotation() -> None:
    ls = a_labserver()
    deployment = build_deployment(ls, a_spec(ls))
    recorded = deployment["metadata"]["annotations"][DESIRED_HASH]
    assert recorded == desired_hash(deployment)
    other = build_deployment(ls, a_spec(a_labserver(replicas=3)))
    assert other["metadata"]["annotations"][DESIRED_HASH] != recorded


def test_a_remembered_child_fingerprint_still_follows_a_change_of_its_fields() -> None:
    fields = applied_fields(build_deployment(a_labserver(), a_spec(a_labserver())))
    entry = {"manager": "k8s-lab", "operation": "Apply", "fieldsV1": fields_v1(fields)}
    first = apply_fingerprints([entry])
    assert apply_fingerprints([entry]) == first == {"k8s-lab": fingerprint(fields)}
    taken = fields - {("f:spec", "f:replicas")}  # another manager took one field
    entry = {**entry, "fieldsV1": fields_v1(taken)}
    assert apply_fingerprints([entry]) == {"k8s-lab": fingerprint(taken)}


def test_the_desired_fingerprint_is_remembered_by_the_desired_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    desired = build_deployment(a_labserver(), a_spec(a_labserver()))
    expected = fingerprint(applied_fields(desired))
    assert ownedfields.applied_fingerprint(desired) == expected
    walks: list[object] = []

    def walk(obj: object) -> frozenset[tuple[str, ...]]:
        walks.append(obj)
        return frozenset()

    monkeypatch.setattr(ownedfields, "applied_fields", walk)
    assert ownedfields.applied_fingerprint(desired) == expected, "remembered, not walked again"
    assert walks == []
    edited = build_deployment(a_labserver(replicas=3), a_spec(a_labserver(replicas=3)))
    ownedfields.applied_fingerprint(edited)  # another hash: walked
    assert walks == [edited]


def test_without_a_desired_hash_the_fingerprint_is_computed_each_time() -> None:
    desired = build_deployment(a_labserver(), a_spec(a_labserver()))
    del desired["metadata"]["annotations"][DESIRED_HASH]
    assert ownedfields.applied_fingerprint(desired) == fingerprint(applied_fields(desired))


def test_a_full_memo_drops_the_fingerprint_used_least_recently() -> None:
    memo = ownedfields.Memo(size=2)
    made: list[str] = []

    def make(value: str) -> Callable[[], str]:
        def made_now() -> str:
            made.append(value)
            return value

        return made_now

    memo.get(b"a", make("A"))
    memo.get(b"b", make("B"))
    assert memo.get(b"a", make("A again")) == "A", "a hit: not made again"
    memo.get(b"c", make("C"))  # full: b, used least recently, goes
    assert len(memo) == 2
    assert memo.get(b"b", make("B again")) == "B again"
    assert made == ["A", "B", "C", "B again"]

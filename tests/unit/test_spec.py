"""labop.spec: defaults, validation by the API models (labop.api), and quantities."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest

from labop.runtime import PermanentError
from labop.spec import (
    DEFAULT_IMAGE,
    DEFAULT_LISTENERS,
    DEFAULT_MESSAGE,
    LabServerSpec,
    Listener,
    Resources,
    parse_quantity,
    parse_spec,
)


def parse(obj: Any) -> LabServerSpec:
    return parse_spec(obj, default_image=DEFAULT_IMAGE)


def refusal(obj: Any) -> str:
    with pytest.raises(PermanentError) as caught:
        parse(obj)
    return str(caught.value)


def test_an_empty_spec_gets_the_crd_defaults_and_the_operators_image() -> None:
    assert parse({}) == LabServerSpec(
        replicas=1, message=DEFAULT_MESSAGE, listeners=DEFAULT_LISTENERS, image=DEFAULT_IMAGE, resources=None
    )


def test_a_missing_spec_is_an_empty_spec() -> None:
    assert parse(None) == parse({})


def test_null_fields_are_defaulted_like_absent_ones() -> None:
    nulls = {"replicas": None, "message": None, "listeners": None, "image": None, "resources": None}
    assert parse(nulls) == parse({})


def test_the_default_image_is_the_one_the_operator_passes_in() -> None:
    assert parse_spec({}, default_image="registry.local/labhttp:dev").image == "registry.local/labhttp:dev"
    assert parse_spec({"image": "mine:1"}, default_image="registry.local/labhttp:dev").image == "mine:1"


def test_every_field_is_read_into_a_frozen_hashable_spec() -> None:
    parsed = parse(
        {
            "replicas": 3,
            "message": "hi",
            "listeners": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9100}],
            "image": "example.com/labhttp:1",
            "resources": {"requests": {"cpu": "100m", "memory": 64}, "limits": {"memory": "128Mi"}},
        }
    )
    assert parsed == LabServerSpec(
        replicas=3,
        message="hi",
        listeners=(Listener("http", 8080), Listener("metrics", 9100)),
        image="example.com/labhttp:1",
        resources=Resources(limits=(("memory", "128Mi"),), requests=(("cpu", "100m"), ("memory", "64"))),
    )
    assert hash(parsed) == hash(dataclasses.replace(parsed))
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.replicas = 4  # type: ignore[misc]


def test_unknown_fields_are_ignored_as_the_apiserver_prunes_them() -> None:
    assert parse({"colour": "blue"}) == parse({})


def test_resources_as_dict_leaves_out_empty_sections() -> None:
    assert Resources(requests=(("cpu", "1"),)).as_dict() == {"requests": {"cpu": "1"}}
    assert parse({"resources": {}}).resources == Resources()


def test_the_metrics_listener_is_the_one_called_metrics_else_the_first() -> None:
    assert parse({}).metrics_listener == Listener("metrics", 9090)
    no_metrics = {"listeners": [{"name": "web", "port": 8080}, {"name": "admin", "port": 8081}]}
    assert parse(no_metrics).metrics_listener == Listener("web", 8080)


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ({"replicas": 101}, "spec.replicas: Input should be less than or equal to 100, got 101"),
        ({"replicas": -1}, "spec.replicas: Input should be greater than or equal to 0, got -1"),
        ({"replicas": True}, "spec.replicas: Input should be a valid integer, got True"),
        ({"replicas": "2"}, "spec.replicas: Input should be a valid integer, got '2'"),
        ({"message": "x" * 1025}, "spec.message: String should have at most 1024 characters"),
        ({"message": 7}, "spec.message: Input should be a valid string, got 7"),
        ({"listeners": []}, "spec.listeners: must have 1 to 8 items, got 0"),
        ({"listeners": {"name": "api"}}, "spec.listeners: Input should be a valid list, got dict"),
        (
            {"listeners": [{"name": f"p{i}", "port": 8000 + i} for i in range(9)]},
            "spec.listeners: must have 1 to 8 items, got 9",
        ),
        ({"listeners": [{"port": 8080}]}, "spec.listeners[0].name: Field required"),
        ({"listeners": [{"name": "api"}]}, "spec.listeners[0].port: Field required"),
        ({"listeners": ["api"]}, "spec.listeners[0]: Input should be a valid object, got 'api'"),
        (
            {"listeners": [{"name": "api", "port": 80}]},
            "spec.listeners[0].port: Input should be greater than or equal to 1024, got 80",
        ),
        (
            {"listeners": [{"name": "api", "port": 65536}]},
            "spec.listeners[0].port: Input should be less than or equal to 65535, got 65536",
        ),
        (
            {"listeners": [{"name": "api", "port": "8080"}]},
            "spec.listeners[0].port: Input should be a valid integer, got '8080'",
        ),
        (
            {"listeners": [{"name": "API", "port": 8080}]},
            "spec.listeners[0].name: String should match pattern "
            "'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', got 'API'",
        ),
        (
            {"listeners": [{"name": "metrics-exporter", "port": 8080}]},
            "spec.listeners[0].name: String should have at most 15 characters",
        ),
        (
            {"listeners": [{"name": "a", "port": 8080}, {"name": "a", "port": 8081}]},
            "spec.listeners: listener names must be unique, duplicated: a",
        ),
        (
            {"listeners": [{"name": "a", "port": 8080}, {"name": "b", "port": 8080}]},
            "spec.listeners: listener ports must be unique, duplicated: 8080",
        ),
        ({"image": ""}, "spec.image: String should have at least 1 character, got ''"),
        ({"image": 3}, "spec.image: Input should be a valid string, got 3"),
        ({"resources": []}, "spec.resources: Input should be a valid object, got list"),
        (
            {"resources": {"limits": {"memory": "128MB"}}},
            "spec.resources.limits.memory: '128MB' is not a quantity (e.g. 100m, 64Mi, 1)",
        ),
        (
            {"resources": {"limits": {"memory": 1.5}}},
            "spec.resources.limits.memory: must be an integer or a string, got float",
        ),
        (
            {"resources": {"requests": {"cpu": "-1"}}},
            "spec.resources.requests.cpu: must not be negative, got '-1'",
        ),
        (
            {"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}},
            "spec.resources.requests: each resource request must be less than or equal to its limit, "
            "requests.memory 1Gi > limits.memory 512Mi",
        ),
    ],
)
def test_an_invalid_spec_is_a_permanent_error_naming_the_field(spec: dict[str, Any], complaint: str) -> None:
    assert complaint in refusal(spec)


def test_a_spec_that_is_not_an_object_is_a_permanent_error() -> None:
    assert refusal(["replicas", 1]) == "invalid spec: spec must be an object, got list"


def test_every_problem_is_reported_at_once() -> None:
    message = refusal({"replicas": 500, "message": 1, "listeners": [{"name": "API", "port": 1}]})
    for field in ("spec.replicas", "spec.message", "spec.listeners[0].name", "spec.listeners[0].port"):
        assert field in message


def test_a_request_up_to_its_limit_is_fine() -> None:
    resources = {"requests": {"memory": "128Mi", "cpu": "1"}, "limits": {"memory": "128Mi", "cpu": "1500m"}}
    assert parse({"resources": resources}).resources is not None


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("api", None),
        ("metrics", None),
        ("a", None),
        ("web-2", None),
        ("x" * 15, None),
        ("x" * 16, "String should have at most 15 characters"),
        ("", "String should have at least 1 character"),
        ("-api", "String should match pattern"),
        ("api-", "String should match pattern"),
        ("Api", "String should match pattern"),
        ("a_b", "String should match pattern"),
        ("8080", "listener name must contain at least one letter"),
        ("a--b", "listener name must not contain '--'"),
        (7, "Input should be a valid string"),
    ],
)
def test_listener_names_follow_the_iana_service_name_rules(name: object, problem: str | None) -> None:
    listeners = {"listeners": [{"name": name, "port": 8080}]}
    if problem is None:
        assert parse(listeners).listeners == (Listener(str(name), 8080),)
    else:
        assert f"spec.listeners[0].name: {problem}" in refusal(listeners)


@pytest.mark.parametrize(
    ("quantity", "value"),
    [
        (1, Decimal(1)),
        ("1", Decimal(1)),
        ("50m", Decimal("0.05")),
        ("64Mi", Decimal(64 * 2**20)),
        ("1Gi", Decimal(2**30)),
        ("1G", Decimal(10**9)),
        ("1E", Decimal(10**18)),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        (".5", Decimal("0.5")),
        ("1.5k", Decimal(1500)),
        ("+2", Decimal(2)),
        ("-2", Decimal(-2)),
        ("100n", Decimal("1E-7")),
        ("3u", Decimal("0.000003")),
    ],
)
def test_quantities_parse_like_resource_quantity(quantity: object, value: Decimal) -> None:
    assert parse_quantity(quantity) == value


@pytest.mark.parametrize(
    "quantity", ["", "128MB", "1e", "Mi", "1 Gi", "1.5.1", "1e1.5", "0x10", 1.5, True, None]
)
def test_anything_else_is_not_a_quantity(quantity: object) -> None:
    with pytest.raises(ValueError, match="is not a quantity"):
        parse_quantity(quantity)

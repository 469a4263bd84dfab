"""Bad input is refused by the apiserver itself (schema first, CEL next), with a clear message.

The CRD is generated from labop.api, whose models the operator also parses stored specs with;
these tests ask a real apiserver what it accepts, and check that the operator agrees: every spec
the apiserver refuses, ``parse_spec`` refuses too, at the same field; every spec it accepts
(after its pruning and defaulting), ``parse_spec`` takes, to the same value it makes of the spec
as sent. Two documented exceptions where the operator is stricter: quantities the Deployment
would be refused with (a sign, a fractional exponent).

Each file in ``examples/invalid/`` carries the message it must produce on an ``# Expect:`` line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import kubernetes
import pytest
from tests.support.cluster import REPO, Cluster
from tests.unit.factories import a_labserver

from labop import api
from labop.naming import GROUP, PLURAL, VERSION
from labop.runtime import PermanentError
from labop.spec import DEFAULT_IMAGE, LabServerSpec, parse_spec

INVALID = sorted((REPO / "examples" / "invalid").glob("*.yaml"))
QUANTITY = f"'{api.QUANTITY_PATTERN.pattern}'"
LISTENER_NAME = f"'{api.LISTENER_NAME_PATTERN.pattern}'"
OVER_LIMIT = (
    "spec.resources.requests: Invalid value: each resource request must be less than or equal to its limit"
)


def expected_detail(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# Expect:"):
            return line.split(" is invalid: ", 1)[1].strip()
    raise AssertionError(f"{path.name} has no '# Expect:' line")


def test_there_are_invalid_examples_to_check() -> None:
    assert len(INVALID) >= 10


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_an_invalid_labserver_is_rejected_with_its_message(
    path: Path, control_plane: Cluster, namespace: str
) -> None:
    done = control_plane.kubectl("create", "-n", namespace, "-f", str(path), check=False)
    assert done.returncode != 0, f"{path.name} was accepted"
    assert expected_detail(path) in done.stderr
    assert control_plane.kubectl("get", "lsrv", "-n", namespace, "-o", "name").stdout == ""


@pytest.mark.parametrize("example", ["labserver.yaml", "labserver-full.yaml"])
def test_the_valid_examples_are_accepted(example: str, control_plane: Cluster, namespace: str) -> None:
    control_plane.kubectl("create", "-n", namespace, "-f", str(REPO / "examples" / example))


def test_kubectl_explain_teaches_the_spec(control_plane: Cluster) -> None:
    out = control_plane.kubectl("explain", "labserver.spec.listeners").stdout
    assert "port" in out and "name" in out
    assert "DESCRIPTION" in out or "description" in out.lower()


# --------------------------------------------------------------------------- corner cases


@dataclass(frozen=True)
class Case:
    spec: dict[str, Any]
    refused: str | None = None  # the apiserver's message (after 'is invalid: '), None if accepted
    operator_refuses: str | None = None  # accepted by the apiserver, refused by the operator: why


def listeners(*pairs: tuple[object, object]) -> dict[str, Any]:
    return {"listeners": [{"name": name, "port": port} for name, port in pairs]}


CASES: dict[str, Case] = {
    # replicas
    "replicas-0": Case({"replicas": 0}),
    "replicas-100": Case({"replicas": 100}),
    "replicas-101": Case(
        {"replicas": 101},
        "spec.replicas: Invalid value: 101: spec.replicas in body should be less than or equal to 100",
    ),
    "replicas-negative": Case(
        {"replicas": -1},
        "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0",
    ),
    "replicas-string": Case(
        {"replicas": "2"},
        'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"',
    ),
    "replicas-boolean": Case(
        {"replicas": True},
        'spec.replicas: Invalid value: "boolean": spec.replicas in body must be of type integer: "boolean"',
    ),
    # message: characters are counted, not bytes (whatever the message says)
    "message-1024": Case({"message": "x" * 1024}),
    "message-1024-two-byte-characters": Case({"message": "é" * 1024}),
    "message-1025": Case({"message": "x" * 1025}, "spec.message: Too long: may not be more than 1024 bytes"),
    "message-nul": Case(
        {"message": "a\x00b"},
        r"""spec.message: Invalid value: "a\x00b": spec.message in body should match '^[^\x00]*$'""",
    ),
    "message-integer": Case(
        {"message": 7},
        'spec.message: Invalid value: "integer": spec.message in body must be of type string: "integer"',
    ),
    # listeners
    "listeners-empty": Case(
        {"listeners": []},
        "spec.listeners: Invalid value: 0: spec.listeners in body should have at least 1 items",
    ),
    "listeners-9": Case(
        listeners(*((f"p{i}", 8000 + i) for i in range(9))),
        "spec.listeners: Too many: 9: must have at most 8 items",
    ),
    "listeners-object": Case(
        {"listeners": {"name": "api"}},
        'spec.listeners: Invalid value: "object": spec.listeners in body must be of type array: "object"',
    ),
    "listener-string": Case(
        {"listeners": ["api"]},
        'spec.listeners[0]: Invalid value: "string": '
        'spec.listeners[0] in body must be of type object: "string"',
    ),
    "listener-without-name": Case({"listeners": [{"port": 8080}]}, "spec.listeners[0].name: Required value"),
    "listener-without-port": Case({"listeners": [{"name": "api"}]}, "spec.listeners[0].port: Required value"),
    "port-80": Case(
        listeners(("api", 80)),
        "spec.listeners[0].port: Invalid value: 80: "
        "spec.listeners[0].port in body should be greater than or equal to 1024",
    ),
    "port-1023": Case(
        listeners(("api", 1023)),
        "spec.listeners[0].port: Invalid value: 1023: "
        "spec.listeners[0].port in body should be greater than or equal to 1024",
    ),
    "port-1024": Case(listeners(("api", 1024))),
    "port-65535": Case(listeners(("api", 65535))),
    "port-65536": Case(
        listeners(("api", 65536)),
        "spec.listeners[0].port: Invalid value: 65536: "
        "spec.listeners[0].port in body should be less than or equal to 65535",
    ),
    "port-string": Case(
        listeners(("api", "8080")),
        'spec.listeners[0].port: Invalid value: "string": '
        'spec.listeners[0].port in body must be of type integer: "string"',
    ),
    "name-15": Case(listeners(("x" * 15, 8080))),
    "name-16": Case(
        listeners(("x" * 16, 8080)), "spec.listeners[0].name: Too long: may not be more than 15 bytes"
    ),
    "name-empty": Case(
        listeners(("", 8080)),
        'spec.listeners[0].name: Invalid value: "": '
        "spec.listeners[0].name in body should be at least 1 chars long",
    ),
    "name-uppercase": Case(
        listeners(("API", 8080)),
        'spec.listeners[0].name: Invalid value: "API": '
        f"spec.listeners[0].name in body should match {LISTENER_NAME}",
    ),
    "name-leading-hyphen": Case(
        listeners(("-a", 8080)),
        'spec.listeners[0].name: Invalid value: "-a": '
        f"spec.listeners[0].name in body should match {LISTENER_NAME}",
    ),
    "name-digits-only": Case(
        listeners(("8080", 8080)),
        'spec.listeners[0].name: Invalid value: "8080": listener name must contain at least one letter',
    ),
    "name-double-hyphen": Case(
        listeners(("a--b", 8080)),
        "spec.listeners[0].name: Invalid value: \"a--b\": listener name must not contain '--'",
    ),
    "names-duplicated": Case(
        listeners(("a", 8080), ("a", 8081)), "spec.listeners: Invalid value: listener names must be unique"
    ),
    "ports-duplicated": Case(
        listeners(("a", 8080), ("b", 8080)), "spec.listeners: Invalid value: listener ports must be unique"
    ),
    # image
    "image-empty": Case(
        {"image": ""}, 'spec.image: Invalid value: "": spec.image in body should be at least 1 chars long'
    ),
    "image-512": Case({"image": "i" * 512}),
    "image-513": Case({"image": "i" * 513}, "spec.image: Too long: may not be more than 512 bytes"),
    "image-integer": Case(
        {"image": 3},
        'spec.image: Invalid value: "integer": spec.image in body must be of type string: "integer"',
    ),
    # resources
    "resources-array": Case(
        {"resources": []},
        'spec.resources: Invalid value: "array": spec.resources in body must be of type object: "array"',
    ),
    "resources-empty": Case({"resources": {}}),
    "quantity-bad-unit": Case(
        {"resources": {"limits": {"memory": "128MB"}}},
        'spec.resources.limits.memory: Invalid value: "128MB": '
        f"spec.resources.limits.memory in body should match {QUANTITY}",
    ),
    "quantity-float": Case(
        {"resources": {"limits": {"memory": 1.5}}},
        'spec.resources.limits.memory: Invalid value: "number": '
        'spec.resources.limits.memory in body must be of type integer,string: "number"',
    ),
    "quantity-65-characters": Case(
        {"resources": {"limits": {"memory": "1" * 65}}},
        "spec.resources.limits.memory: Too long: may not be more than 64 bytes",
    ),
    "resources-9-names": Case(
        {"resources": {"limits": {f"example.com/r{i}": "1" for i in range(9)}}},
        "spec.resources.limits: Too many: 9: must have at most 8 items",
    ),
    "request-above-limit": Case(
        {"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}},
        OVER_LIMIT,
    ),
    "request-integer-above-limit-string": Case(
        {"resources": {"requests": {"cpu": 2}, "limits": {"cpu": "1500m"}}},
        OVER_LIMIT,
    ),
    "request-up-to-limit": Case(
        {
            "resources": {
                "requests": {"memory": "128Mi", "cpu": "1"},
                "limits": {"memory": "128Mi", "cpu": "1500m"},
            }
        }
    ),
    "request-without-limit": Case({"resources": {"requests": {"cpu": "50m"}, "limits": {"memory": "1Gi"}}}),
    "quantity-negative": Case(
        {"resources": {"requests": {"cpu": "-1"}}},
        operator_refuses="spec.resources.requests.cpu: must not be negative",
    ),
    "quantity-fractional-exponent": Case(
        {"resources": {"limits": {"cpu": "1e1.5"}}},
        operator_refuses="spec.resources.limits.cpu: '1e1.5' is not a quantity",
    ),
    # what the apiserver prunes and defaults
    "empty": Case({}),
    "unknown-field": Case({"colour": "blue"}),
    "nulls": Case({"replicas": None, "message": None, "listeners": None, "image": None, "resources": None}),
}


def dry_run_create(api: kubernetes.client.ApiClient, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LabServer",
        "metadata": {"name": "corner-case"},
        "spec": spec,
    }
    custom = kubernetes.client.CustomObjectsApi(api)
    # CustomObjectsApi's answers are typed `object`: they are the decoded JSON, a dict.
    created = cast(
        dict[str, Any],
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body, dry_run="All"),
    )
    return created


def parse(spec: Any) -> LabServerSpec:
    return parse_spec(spec, default_image=DEFAULT_IMAGE)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_apiserver_and_parse_spec_agree_on_each_corner_case(
    case: Case, api: kubernetes.client.ApiClient, namespace: str
) -> None:
    if case.refused is None:
        stored = dry_run_create(api, namespace, case.spec)["spec"]
        if case.operator_refuses is None:
            assert parse(stored) == parse(case.spec)
        else:
            with pytest.raises(PermanentError, match=case.operator_refuses):
                parse(stored)
        return
    with pytest.raises(kubernetes.client.ApiException) as refusal:
        dry_run_create(api, namespace, case.spec)
    assert refusal.value.status == 422
    message = json.loads(refusal.value.body or "{}")["message"]
    assert f'LabServer.{GROUP} "corner-case" is invalid: ' in message
    assert case.refused in message
    field = case.refused.split(": ", 1)[0]
    with pytest.raises(PermanentError) as ours:
        parse(case.spec)
    assert f"{field}: " in str(ours.value)


def test_a_labserver_from_the_unit_tests_factory_is_valid(
    api: kubernetes.client.ApiClient, namespace: str
) -> None:
    labserver = a_labserver()
    stored = dry_run_create(api, namespace, labserver["spec"])["spec"]
    assert parse(stored) == parse(labserver["spec"])


def test_an_empty_spec_is_stored_with_the_defaults_parse_spec_gives(
    control_plane: Cluster, api: kubernetes.client.ApiClient, namespace: str
) -> None:
    manifest = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LabServer", "metadata": {"name": "empty"}}
    control_plane.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    stored = cast(
        dict[str, Any],
        kubernetes.client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "empty"
        ),
    )
    assert stored["spec"] == {
        "replicas": 1,
        "message": "Hello, Kubernetes and Istio!",
        "listeners": [{"name": "api", "port": 8080}, {"name": "metrics", "port": 9090}],
    }
    assert parse(stored["spec"]) == parse({}) == parse(None)

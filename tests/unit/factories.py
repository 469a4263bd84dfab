"""Test helpers for the LabServer API: object factories and the CRD's validation, in Python.

Neighbours: used by tests/unit/test_{spec,builders,status,crd}.py. Two parts:

* factories: `a_labserver(...)`, `a_deployment(...)`, `a_service(...)` build the dicts the
  operator sees from the API, with sensible defaults and keyword overrides;
* the CRD in Python: `validate(obj)` checks a LabServer against crds/labservers.yaml the way
  the apiserver would (prune nulls, apply defaults, OpenAPI keywords, then the CEL rules through
  hand-written Python twins in `CEL_TWINS`). No CEL engine is available offline, so each rule's
  twin is reviewed by hand; test_crd.py fails if a rule has no twin.
"""

from __future__ import annotations

import copy
import functools
import pathlib
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import yaml

from labop.builders import build_deployment, build_service
from labop.spec import DEFAULT_IMAGE, LabServerSpec, parse_quantity, parse_spec

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "labservers.yaml"
EXAMPLES = ROOT / "examples"

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
NOW_TEXT = "2030-01-02T03:04:05Z"


# ---------------------------------------------------------------------------------------------
# Factories


def a_labserver(
    name: str = "hello",
    *,
    namespace: str = "lab",
    uid: str = "0b3f6a52-1111-4c3e-9d6a-000000000001",
    generation: int = 1,
    status: Mapping[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A LabServer as read from the API; keyword arguments become spec fields."""
    obj: dict[str, Any] = {
        "apiVersion": "k8slab.dev/v1alpha1",
        "kind": "LabServer",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "generation": generation,
            "resourceVersion": "1",
        },
        "spec": {"replicas": 1, **spec},
    }
    if status is not None:
        obj["status"] = dict(status)
    return obj


def a_spec(ls: Mapping[str, Any] | None = None, **spec: Any) -> LabServerSpec:
    """The parsed spec of `ls` (or of a LabServer with these spec fields)."""
    ls = ls if ls is not None else a_labserver(**spec)
    return parse_spec(ls["spec"], default_image=DEFAULT_IMAGE)


def a_deployment(
    ls: Mapping[str, Any],
    *,
    generation: int = 1,
    observed_generation: int | None = 1,
    replicas: int | None = None,
    updated: int | None = None,
    ready: int | None = None,
    available: int | None = None,
    conditions: list[dict[str, Any]] | None = None,
    owner_uid: str | None = None,
) -> dict[str, Any]:
    """The Deployment of `ls` as the API returns it, with a status; counts default to "all done".

    Zero counts are left out, as the Deployment's JSON (omitempty) does.
    """
    deployment = build_deployment(ls, a_spec(ls))
    desired = deployment["spec"]["replicas"]
    deployment["metadata"]["generation"] = generation
    if owner_uid is not None:
        deployment["metadata"]["ownerReferences"][0]["uid"] = owner_uid
    counts = {
        "replicas": desired if replicas is None else replicas,
        "updatedReplicas": desired if updated is None else updated,
        "readyReplicas": desired if ready is None else ready,
        "availableReplicas": desired if available is None else available,
    }
    status: dict[str, Any] = {key: value for key, value in counts.items() if value}
    if observed_generation is not None:
        status["observedGeneration"] = observed_generation
    if conditions:
        status["conditions"] = conditions
    deployment["status"] = status
    return deployment


def a_service(ls: Mapping[str, Any], *, owner_uid: str | None = None) -> dict[str, Any]:
    """The Service of `ls` as the API returns it (with a cluster IP)."""
    service = build_service(ls, a_spec(ls))
    service["spec"]["clusterIP"] = "10.0.0.17"
    if owner_uid is not None:
        service["metadata"]["ownerReferences"][0]["uid"] = owner_uid
    return service


def controlled_by_a_stranger(child: dict[str, Any]) -> dict[str, Any]:
    """``child`` with its controller reference pointing at an object of another kind (not ours)."""
    child["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "example.com/v1",
            "kind": "Other",
            "name": "hello",
            "uid": "someone-else",
            "controller": True,
        }
    ]
    return child


def a_deployment_condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


# ---------------------------------------------------------------------------------------------
# The CRD, in Python


def load_crd() -> dict[str, Any]:
    """A fresh copy of the parsed CRD (parsed once: the property tests ask for it often)."""
    return copy.deepcopy(_parsed_crd())


@functools.cache
def _parsed_crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())  # type: ignore[no-any-return]


def version_of(crd: Mapping[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    return version  # type: ignore[no-any-return]


def root_schema(crd: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return version_of(crd or load_crd())["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def _unique_by(key: str) -> Callable[[Any], bool]:
    def check(items: Any) -> bool:
        return all(sum(1 for other in items if other.get(key) == item.get(key)) == 1 for item in items)

    return check


# Python twins of the CRD's CEL rules, keyed by the exact rule text.
CEL_TWINS: dict[str, Callable[[Any], bool]] = {
    "self.all(l, self.exists_one(m, m.name == l.name))": _unique_by("name"),
    "self.all(l, self.exists_one(m, m.port == l.port))": _unique_by("port"),
    "self.matches('[a-z]')": lambda value: re.search("[a-z]", value) is not None,
    "!self.contains('--')": lambda value: "--" not in value,
    (
        "!has(self.requests) || !has(self.limits) || self.requests.all(name, !(name in self.limits) || "
        "quantity(string(self.requests[name])).compareTo(quantity(string(self.limits[name]))) <= 0)"
    ): lambda value: _requests_within_limits(value),
}


def _requests_within_limits(resources: Any) -> bool:
    requests, limits = resources.get("requests"), resources.get("limits")
    if requests is None or limits is None:
        return True
    return all(
        name not in limits or parse_quantity(requests[name]) <= parse_quantity(limits[name])
        for name in requests
    )


def defaulted(schema: Mapping[str, Any], value: Any) -> Any:
    """`value` after the apiserver's pruning of nulls and defaulting, recursively."""
    if isinstance(value, dict) and schema.get("type") == "object":
        result = {}
        for key, item in value.items():
            if item is None and not schema.get("properties", {}).get(key, {}).get("nullable"):
                continue  # nulls of non-nullable fields are pruned before defaulting
            result[key] = item
        for key, prop in schema.get("properties", {}).items():
            if key not in result and "default" in prop:
                result[key] = copy.deepcopy(prop["default"])
            if key in result:
                result[key] = defaulted(prop, result[key])
        if isinstance(schema.get("additionalProperties"), dict):
            result = {key: defaulted(schema["additionalProperties"], item) for key, item in result.items()}
        return result
    if isinstance(value, list) and "items" in schema:
        return [defaulted(schema["items"], item) for item in value]
    return value


def validate(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field path, message) for every way the apiserver would refuse this LabServer."""
    schema = root_schema()
    return schema_errors(schema, defaulted(schema, copy.deepcopy(dict(obj))), "")


def schema_errors(schema: Mapping[str, Any], value: Any, path: str) -> list[tuple[str, str]]:
    """The OpenAPI v3 keywords the CRD uses, then its CEL rules (via `CEL_TWINS`)."""
    type_error = _type_error(schema, value)
    if type_error:
        return [(path, type_error)]
    errors = _value_errors(schema, value, path) + _child_errors(schema, value, path)
    for validation in schema.get("x-kubernetes-validations", []):
        if not CEL_TWINS[validation["rule"]](value):
            where = _join(path, validation["fieldPath"].lstrip(".")) if "fieldPath" in validation else path
            errors.append((where, validation["message"]))
    return errors


def _type_error(schema: Mapping[str, Any], value: Any) -> str | None:
    if schema.get("x-kubernetes-int-or-string"):
        ok = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
        return None if ok else "must be an integer or a string"
    checks: dict[str, Callable[[Any], bool]] = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }
    kind = schema.get("type")
    return None if kind is None or checks[kind](value) else f"must be of type {kind}"


def _value_errors(schema: Mapping[str, Any], value: Any, path: str) -> list[tuple[str, str]]:
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append((path, f"Unsupported value: {value!r}"))
    if "minimum" in schema and value < schema["minimum"]:
        errors.append((path, f"should be greater than or equal to {schema['minimum']}"))
    if "maximum" in schema and value > schema["maximum"]:
        errors.append((path, f"should be less than or equal to {schema['maximum']}"))
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append((path, f"should be at least {schema['minLength']} chars long"))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append((path, f"Too long: may not be more than {schema['maxLength']}"))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append((path, f"should match {schema['pattern']!r}"))
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append((path, f"should have at least {schema['minItems']} items"))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append((path, f"Too many: {len(value)}: must have at most {schema['maxItems']} items"))
    if isinstance(value, dict):
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            errors.append(
                (path, f"Too many: {len(value)}: must have at most {schema['maxProperties']} items")
            )
        errors += [
            (_join(path, key), "Required value") for key in schema.get("required", []) if key not in value
        ]
    return errors


def _child_errors(schema: Mapping[str, Any], value: Any, path: str) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(properties[key], item, _join(path, key))
            elif isinstance(extra, dict):
                errors += schema_errors(extra, item, _join(path, key))
            # anything else is pruned by the apiserver, not refused
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += schema_errors(schema["items"], item, f"{path}[{index}]")
    return errors


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def load_example(path: pathlib.Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())  # type: ignore[no-any-return]


def expected_error(path: pathlib.Path) -> tuple[str, str]:
    """(field path, full message) from an invalid example's `# Expect:` comment."""
    for line in path.read_text().splitlines():
        if line.startswith("# Expect: "):
            message = line.removeprefix("# Expect: ")
            field = message.split(" is invalid: ", 1)[1].split(": ", 1)[0]
            return field, message
    raise AssertionError(f"{path.name} has no '# Expect:' line")

"""Test helpers for the LabServer API: object factories, and the CRD and examples as data.

* factories: `a_labserver(...)`, `a_deployment(...)`, `a_service(...)` build the dicts the
  operator sees from the API, with sensible defaults and keyword overrides;
* `load_crd()`, `root_schema()`: the committed CRD, parsed; `load_example`, `expected_error`:
  the examples and the message each invalid one must get.

Whether the apiserver accepts an object is asked of a real apiserver, never of a Python copy of
the schema: tests/integration/test_crd_validation.py.
"""

from __future__ import annotations

import copy
import functools
import pathlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import yaml

from labop.builders import build_deployment, build_service
from labop.spec import DEFAULT_IMAGE, LabServerSpec, parse_spec

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
# The CRD and the examples, as data


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

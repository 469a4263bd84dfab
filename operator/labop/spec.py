"""The operator's view of a LabServer spec: `parse_spec` turns the stored `.spec` into a frozen
`LabServerSpec`, the value the builders work from.

Why a parse at all, when the apiserver validated the object: an object stored before a schema
change (or written with validation off) must not crash the operator. The rules are the API
models' (`labop.api`, the source of the CRD); anything invalid raises `PermanentError`, which
the workers report (InvalidSpec) and do not retry. This module only resolves what the API
leaves open: the operator's default image, and resources as sorted, hashable pairs.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, Final

from pydantic import ValidationError

from labop import api
from labop.api import DEFAULT_MESSAGE, DEFAULT_REPLICAS, parse_quantity
from labop.runtime import PermanentError

__all__ = [
    "DEFAULT_IMAGE",
    "DEFAULT_LISTENERS",
    "DEFAULT_MESSAGE",
    "DEFAULT_REPLICAS",
    "METRICS_LISTENER_NAME",
    "LabServerSpec",
    "Listener",
    "Resources",
    "parse_quantity",
    "parse_spec",
]

DEFAULT_IMAGE: Final = "ghcr.io/k8s-lab/labhttp:0.1.0"
METRICS_LISTENER_NAME: Final = "metrics"


@dataclasses.dataclass(frozen=True)
class Listener:
    """One named TCP port the server listens on; the name names the container and Service port."""

    name: str
    port: int


DEFAULT_LISTENERS: Final = tuple(Listener(item.name, item.port) for item in api.DEFAULT_LISTENERS)


@dataclasses.dataclass(frozen=True)
class Resources:
    """A container's resource requirements: (resource name, quantity) pairs, sorted by name.

    Tuples rather than dicts keep the spec immutable and hashable.
    """

    limits: tuple[tuple[str, str], ...] = ()
    requests: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, dict[str, str]]:
        """The core/v1 ResourceRequirements shape; empty sections are left out."""
        sections = {"limits": self.limits, "requests": self.requests}
        return {key: dict(pairs) for key, pairs in sections.items() if pairs}


@dataclasses.dataclass(frozen=True)
class LabServerSpec:
    """A validated, defaulted LabServer spec. `resources` None means "the operator's defaults"."""

    replicas: int
    message: str
    listeners: tuple[Listener, ...]
    image: str
    resources: Resources | None = None

    @property
    def metrics_listener(self) -> Listener:
        """The listener that serves /metrics: the one called `metrics`, else the first one."""
        named = [listener for listener in self.listeners if listener.name == METRICS_LISTENER_NAME]
        return named[0] if named else self.listeners[0]


def parse_spec(obj: Mapping[str, Any] | None, *, default_image: str) -> LabServerSpec:
    """Validate and default a LabServer's `.spec` (the spec mapping, not the whole object).

    Absent and null fields get the CRD's defaults (the apiserver prunes nulls, then defaults);
    unknown fields are ignored (the apiserver prunes them). Every problem found is reported at
    once, with its field path, in one PermanentError.
    """
    if obj is None:
        obj = {}
    if not isinstance(obj, Mapping):
        raise PermanentError(f"invalid spec: spec must be an object, got {type(obj).__name__}")
    try:
        spec = api.LabServerSpec.model_validate(obj)
    except ValidationError as error:
        raise PermanentError("invalid spec: " + "; ".join(_problems(error))) from None
    resources = spec.resources
    return LabServerSpec(
        replicas=spec.replicas,
        message=spec.message,
        listeners=tuple(Listener(item.name, item.port) for item in spec.listeners),
        image=default_image if spec.image is None else spec.image,
        resources=None
        if resources is None
        else Resources(limits=_pairs(resources.limits), requests=_pairs(resources.requests)),
    )


def _pairs(quantities: Mapping[str, int | str] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((name, str(amount)) for name, amount in (quantities or {}).items()))


def _problems(error: ValidationError) -> list[str]:
    """`spec.listeners[0].port: <what is wrong>` for every error, in the model's field order."""
    problems = []
    for detail in error.errors(include_url=False):
        path = "spec" + "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in detail["loc"]
        )
        path += str(detail.get("ctx", {}).get("field_path", ""))
        # pydantic speaks of Python types; the object's reader knows JSON's.
        text = re.sub(r" or instance of \w+", "", detail["msg"])
        text = text.replace("valid tuple", "valid list").replace("valid dictionary", "valid object")
        given = detail.get("input")
        if detail["type"] in ("cel", "quantity", "size", "missing"):
            pass  # the message says it all
        elif isinstance(given, int | float) or (isinstance(given, str) and len(given) <= 64):
            text += f", got {given!r}"
        elif detail["type"].endswith("_type"):
            text += f", got {type(given).__name__}"
        problems.append(f"{path}: {text}")
    return problems

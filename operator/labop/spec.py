"""The typed LabServer spec: `parse_spec` turns the stored `.spec` into a frozen `LabServerSpec`.

Neighbours: the CRD (`crds/labservers.yaml`) validates and defaults the spec in the apiserver;
this module applies the same defaults and re-checks the same constraints, because an object
stored before a schema change (or written with validation off) must not crash the operator.
Anything invalid raises `labop.errors.PermanentError`, which the workers report (InvalidSpec)
and do not retry. `labop.builders` turns a `LabServerSpec` into the children.

Keep the constants here in step with the CRD: `tests/unit/test_crd.py` compares them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from kubernetes.utils import parse_quantity as client_parse_quantity

from labop.runtime import PermanentError

DEFAULT_IMAGE: Final = "ghcr.io/k8s-lab/labhttp:0.1.0"

DEFAULT_REPLICAS: Final = 1
MIN_REPLICAS: Final = 0
MAX_REPLICAS: Final = 100

DEFAULT_MESSAGE: Final = "Hello, Kubernetes and Istio!"
MAX_MESSAGE_LENGTH: Final = 1024

MIN_LISTENERS: Final = 1
MAX_LISTENERS: Final = 8
# A listener name becomes a container port name, an IANA_SVC_NAME: at most 15 characters.
MAX_LISTENER_NAME_LENGTH: Final = 15
LISTENER_NAME_PATTERN: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Unprivileged ports only: the pods run as a non-root user without NET_BIND_SERVICE.
MIN_PORT: Final = 1024
MAX_PORT: Final = 65535

MAX_IMAGE_LENGTH: Final = 512
# The CRD's bounds on spec.resources.{limits,requests}; they keep the CEL rule's cost in budget.
MAX_RESOURCE_NAMES: Final = 8
MAX_QUANTITY_LENGTH: Final = 64

# resource.Quantity's regular expression, as controller-gen writes it into CRDs.
QUANTITY_PATTERN: Final = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


@dataclasses.dataclass(frozen=True)
class Listener:
    """One named TCP port the server listens on; the name names the container and Service port."""

    name: str
    port: int


DEFAULT_LISTENERS: Final = (Listener("api", 8080), Listener("metrics", 9090))
METRICS_LISTENER_NAME: Final = "metrics"


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
        raise PermanentError(f"invalid spec: spec must be an object, got {_kind(obj)}")
    errors: list[str] = []
    spec = LabServerSpec(
        replicas=_parse_replicas(obj.get("replicas"), errors),
        message=_parse_message(obj.get("message"), errors),
        listeners=_parse_listeners(obj.get("listeners"), errors),
        image=_parse_image(obj.get("image"), default_image, errors),
        resources=_parse_resources(obj.get("resources"), errors),
    )
    if errors:
        raise PermanentError("invalid spec: " + "; ".join(errors))
    return spec


def listener_name_problem(name: object) -> str | None:
    """Why `name` is not a valid listener (= container port) name, or None if it is.

    The rules of IANA_SVC_NAME (Kubernetes' validation.IsValidPortName).
    """
    if not isinstance(name, str):
        return f"must be a string, got {_kind(name)}"
    if not 1 <= len(name) <= MAX_LISTENER_NAME_LENGTH:
        return f"must be 1 to {MAX_LISTENER_NAME_LENGTH} characters long, got {len(name)}"
    if not LISTENER_NAME_PATTERN.match(name):
        return (
            f"{name!r} must consist of lowercase letters, digits and '-', "
            "and start and end with a letter or digit"
        )
    if not re.search("[a-z]", name):
        return f"{name!r} must contain at least one letter"
    if "--" in name:
        return f"{name!r} must not contain two consecutive hyphens"
    return None


def parse_quantity(value: object) -> Decimal:
    """The numeric value of a resource.Quantity (an int or a string such as `64Mi`, `50m`, `1e3`).

    Raises ValueError for anything Kubernetes would not parse. The CRD's pattern decides the
    syntax (as the apiserver does); the kubernetes client's parser does the arithmetic.
    """
    # bool is an int subclass in Python, but `true` is not a number in JSON.
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if not isinstance(value, str) or not QUANTITY_PATTERN.match(value):
        raise ValueError(f"{value!r} is not a quantity")
    try:
        return Decimal(client_parse_quantity(value))  # type: ignore[no-untyped-call]  # unannotated
    except ValueError:  # e.g. a fractional exponent: the pattern allows it, Go's parser does not
        raise ValueError(f"{value!r} is not a quantity") from None


def _parse_replicas(value: object, errors: list[str]) -> int:
    if value is None:
        return DEFAULT_REPLICAS
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(f"spec.replicas: must be an integer, got {_kind(value)}")
        return DEFAULT_REPLICAS
    if not MIN_REPLICAS <= value <= MAX_REPLICAS:
        errors.append(f"spec.replicas: must be between {MIN_REPLICAS} and {MAX_REPLICAS}, got {value}")
    return value


def _parse_message(value: object, errors: list[str]) -> str:
    if value is None:
        return DEFAULT_MESSAGE
    if not isinstance(value, str):
        errors.append(f"spec.message: must be a string, got {_kind(value)}")
        return DEFAULT_MESSAGE
    if len(value) > MAX_MESSAGE_LENGTH:
        errors.append(f"spec.message: must be at most {MAX_MESSAGE_LENGTH} characters, got {len(value)}")
    if "\x00" in value:
        errors.append("spec.message: must not contain NUL (an environment variable cannot hold it)")
    return value


def _parse_listeners(value: object, errors: list[str]) -> tuple[Listener, ...]:
    if value is None:
        return DEFAULT_LISTENERS
    if not isinstance(value, list):
        errors.append(f"spec.listeners: must be a list, got {_kind(value)}")
        return DEFAULT_LISTENERS
    if not MIN_LISTENERS <= len(value) <= MAX_LISTENERS:
        errors.append(f"spec.listeners: must have {MIN_LISTENERS} to {MAX_LISTENERS} items, got {len(value)}")
    listeners = tuple(
        _parse_listener(item, f"spec.listeners[{index}]", errors) for index, item in enumerate(value)
    )
    _check_unique(listeners, errors)
    return listeners if listeners else DEFAULT_LISTENERS


def _parse_listener(item: object, path: str, errors: list[str]) -> Listener:
    if not isinstance(item, Mapping):
        errors.append(f"{path}: must be an object with name and port, got {_kind(item)}")
        return Listener("", 0)
    return Listener(
        name=_parse_listener_name(item.get("name"), f"{path}.name", errors),
        port=_parse_port(item.get("port"), f"{path}.port", errors),
    )


def _parse_listener_name(name: object, path: str, errors: list[str]) -> str:
    # An invalid name becomes "" (after reporting it) so that the uniqueness check skips it.
    if name is None:
        errors.append(f"{path}: is required")
        return ""
    if problem := listener_name_problem(name):
        errors.append(f"{path}: {problem}")
        return ""
    assert isinstance(name, str)  # listener_name_problem checked it
    return name


def _parse_port(port: object, path: str, errors: list[str]) -> int:
    # An invalid port becomes 0 (after reporting it) so that the uniqueness check skips it.
    if port is None:
        errors.append(f"{path}: is required")
        return 0
    if isinstance(port, bool) or not isinstance(port, int):
        errors.append(f"{path}: must be an integer, got {_kind(port)}")
        return 0
    if not MIN_PORT <= port <= MAX_PORT:
        errors.append(f"{path}: must be between {MIN_PORT} and {MAX_PORT}, got {port}")
    return port


def _check_unique(listeners: tuple[Listener, ...], errors: list[str]) -> None:
    # Mirrors the CRD's two CEL rules; invalid (placeholder) names and ports are already reported.
    names = [listener.name for listener in listeners if listener.name]
    ports = [listener.port for listener in listeners if listener.port]
    if duplicates := sorted({name for name in names if names.count(name) > 1}):
        errors.append(f"spec.listeners: listener names must be unique, duplicated: {', '.join(duplicates)}")
    if duplicate_ports := sorted({str(port) for port in ports if ports.count(port) > 1}, key=int):
        errors.append(
            f"spec.listeners: listener ports must be unique, duplicated: {', '.join(duplicate_ports)}"
        )


def _parse_image(value: object, default_image: str, errors: list[str]) -> str:
    if value is None:
        return default_image
    if not isinstance(value, str):
        errors.append(f"spec.image: must be a string, got {_kind(value)}")
        return default_image
    if not 1 <= len(value) <= MAX_IMAGE_LENGTH:
        errors.append(f"spec.image: must be 1 to {MAX_IMAGE_LENGTH} characters long, got {len(value)}")
    return value


def _parse_resources(value: object, errors: list[str]) -> Resources | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        errors.append(f"spec.resources: must be an object, got {_kind(value)}")
        return None
    limits = _parse_resource_list(value.get("limits"), "spec.resources.limits", errors)
    requests = _parse_resource_list(value.get("requests"), "spec.resources.requests", errors)
    _check_requests_within_limits(dict(requests), dict(limits), errors)
    return Resources(limits=limits, requests=requests)


def _parse_resource_list(value: object, path: str, errors: list[str]) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        errors.append(f"{path}: must be an object of quantities, got {_kind(value)}")
        return ()
    if len(value) > MAX_RESOURCE_NAMES:
        errors.append(f"{path}: at most {MAX_RESOURCE_NAMES} resource names, got {len(value)}")
    pairs: list[tuple[str, str]] = []
    for name, quantity in value.items():
        if isinstance(quantity, str) and len(quantity) > MAX_QUANTITY_LENGTH:
            errors.append(f"{path}.{name}: at most {MAX_QUANTITY_LENGTH} characters")
            continue
        try:
            amount = parse_quantity(quantity)
        except ValueError:
            errors.append(f"{path}.{name}: {quantity!r} is not a quantity (e.g. 100m, 64Mi, 1)")
            continue
        if amount < 0:
            # The pattern allows a sign, but the Deployment would be refused with it.
            errors.append(f"{path}.{name}: must not be negative, got {quantity!r}")
            continue
        pairs.append((str(name), str(quantity)))
    return tuple(sorted(pairs))


def _check_requests_within_limits(
    requests: dict[str, str], limits: dict[str, str], errors: list[str]
) -> None:
    # The apiserver refuses a pod template whose request exceeds its limit; say so up front
    # instead of failing every apply with the same 422.
    for name in sorted(requests.keys() & limits.keys()):
        if parse_quantity(requests[name]) > parse_quantity(limits[name]):
            errors.append(
                f"spec.resources.requests.{name}: {requests[name]!r} must be less than or equal to "
                f"the limit {limits[name]!r}"
            )


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__

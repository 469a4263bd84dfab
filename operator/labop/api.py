"""The LabServer API (k8slab.dev/v1alpha1) as typed models: the one source of the CRD.

Why: the API used to be written three times (the CRD's YAML, the spec parser, and a Python
twin of the schema in the tests), and a field added in one place and forgotten in another is
the bug that kubebuilder's markers and kube-rs' `CustomResource` derive prevent. Here each
field is declared once, as a pydantic model field with its default, bounds, description and
CEL rules (`Rule`); `hack/gen_crd.py` (`make manifests`) writes `crds/labservers.yaml` from
these models and `RESOURCE`, and `labop.spec.parse_spec` validates a stored spec with them.

What the models accept is what the CRD accepts, with the apiserver's handling of the rest:
unknown fields are ignored (pruned), null and absent fields get their default, every problem is
reported at once with its field path. A `Rule` carries its CEL expression (for the apiserver)
next to a Python check of the same rule (for the operator, which must not trust an object
stored under an older, laxer schema); the integration tier checks each rule on a real apiserver.
Quantities get two checks the schema does not make (no sign, Go's parser accepts them): the
Deployment built from them would be refused anyway.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

from kubernetes.utils import parse_quantity as client_parse_quantity
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainValidator,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from labop import naming

# --------------------------------------------------------------------------------------------
# Bounds and defaults (the operator's code reads them from here too)

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
# Bounds on spec.resources.{limits,requests}; they keep the CEL rule's cost in budget.
MAX_RESOURCE_NAMES: Final = 8
MAX_QUANTITY_LENGTH: Final = 64

# resource.Quantity's regular expression, as controller-gen writes it into CRDs.
QUANTITY_PATTERN: Final = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
# The Service is named after the LabServer, so the name must be a DNS-1035 label.
NAME_PATTERN: Final = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
MAX_NAME_LENGTH: Final = 63

INT32: Final = {"format": "int32"}
INT64: Final = {"format": "int64"}


# --------------------------------------------------------------------------------------------
# Building blocks: CEL rules and quantities


@dataclass(frozen=True)
class Rule:
    """A CEL validation rule (`x-kubernetes-validations`) and its Python twin, declared together.

    `check(value)` returns None when the rule holds, else a detail for the operator's message
    (the apiserver says `message` only). Used as `Annotated[T, Rule(...)]`.
    """

    rule: str
    message: str
    check: Callable[[Any], str | None]
    field_path: str | None = None

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self._validate, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        entry: dict[str, str] = {"rule": self.rule, "message": self.message}
        if self.field_path is not None:
            entry["fieldPath"] = self.field_path
        json_schema.setdefault("x-kubernetes-validations", []).append(entry)
        return json_schema

    def _validate(self, value: Any) -> Any:
        detail = self.check(value)
        if detail is not None:
            message = f"{self.message}, {detail}" if detail else self.message
            # The apiserver reports the error at fieldPath; so does labop.spec, from the context.
            raise PydanticCustomError("cel", message, {"field_path": self.field_path or ""})
        return value


@dataclass(frozen=True)
class Size:
    """Bounds on the number of items of a list (`minItems`/`maxItems`) or of the entries of a
    map (`maxProperties`), checked on the input, as the apiserver does.

    pydantic's own length check counts what validated, so one bad item would also make a list
    "too short" (and hide a list too long); this one counts what was sent, and says "list", not
    "tuple".
    """

    max: int
    min: int = 0

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_before_validator_function(self._validate, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        if json_schema.get("type") == "object":
            return {**json_schema, "maxProperties": self.max}
        return {**json_schema, "minItems": self.min, "maxItems": self.max}

    def _validate(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            what = "entries"
        elif isinstance(value, list | tuple):
            what = "items"
        else:
            return value  # the type's own validation says what is wrong
        if not self.min <= len(value) <= self.max:
            raise PydanticCustomError(
                "size",
                "must have {min} to {max} {what}, got {count}",
                {"min": self.min, "max": self.max, "what": what, "count": len(value)},
            )
        return value


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


def _quantity(value: Any) -> int | str:
    # One check, one message (a union of int and str would report a failure for each).
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PydanticCustomError(
            "quantity", "must be an integer or a string, got {kind}", {"kind": _kind(value)}
        )
    if isinstance(value, str) and len(value) > MAX_QUANTITY_LENGTH:
        raise PydanticCustomError(
            "quantity", "must be at most {limit} characters", {"limit": MAX_QUANTITY_LENGTH}
        )
    try:
        amount = parse_quantity(value)
    except ValueError:
        raise PydanticCustomError(
            "quantity", "{value} is not a quantity (e.g. 100m, 64Mi, 1)", {"value": repr(value)}
        ) from None
    if amount < 0:
        # The pattern allows a sign, but the Deployment would be refused with it.
        raise PydanticCustomError("quantity", "must not be negative, got {value}", {"value": repr(value)})
    return value


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


# core/v1 resource.Quantity in a CRD: an integer or a string of the quantity syntax.
Quantity = Annotated[
    int | str,
    PlainValidator(_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN.pattern,
            "maxLength": MAX_QUANTITY_LENGTH,
            "x-kubernetes-int-or-string": True,
        }
    ),
]


def _unique(attribute: str) -> Callable[[Any], str | None]:
    def check(items: Any) -> str | None:
        values = [getattr(item, attribute) for item in items]
        duplicates = sorted({value for value in values if values.count(value) > 1})
        return f"duplicated: {', '.join(map(str, duplicates))}" if duplicates else None

    return check


def _requests_within_limits(resources: Any) -> str | None:
    requests, limits = dict(resources.requests or {}), dict(resources.limits or {})
    over = [
        f"requests.{name} {requests[name]} > limits.{name} {limits[name]}"
        for name in sorted(requests.keys() & limits.keys())
        if parse_quantity(requests[name]) > parse_quantity(limits[name])
    ]
    return ", ".join(over) if over else None


class Model(BaseModel):
    """The models' common configuration: frozen values; unknown fields are ignored, as the
    apiserver prunes them."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class SpecModel(Model):
    """A part of the spec, which the operator reads back: a null is an absent field."""

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_absent(cls, data: Any) -> Any:
        # The apiserver prunes nulls of non-nullable fields before defaulting.
        if isinstance(data, Mapping):
            return {key: value for key, value in data.items() if value is not None}
        return data


# --------------------------------------------------------------------------------------------
# The spec


class Listener(SpecModel):
    """One named TCP port."""

    name: Annotated[
        StrictStr,
        Field(
            min_length=1,
            max_length=MAX_LISTENER_NAME_LENGTH,
            pattern=LISTENER_NAME_PATTERN.pattern,
            description=(
                "The port's name, used for the container port and the Service port: an IANA "
                "service name (lowercase letters, digits and '-', at most 15 characters, at least "
                "one letter, no '--', starting and ending with a letter or digit), e.g. `api` or "
                "`metrics`."
            ),
        ),
        Rule(
            "self.matches('[a-z]')",
            "listener name must contain at least one letter",
            lambda name: None if re.search("[a-z]", name) else "",
        ),
        Rule(
            "!self.contains('--')",
            "listener name must not contain '--'",
            lambda name: None if "--" not in name else "",
        ),
    ]
    port: Annotated[
        StrictInt,
        Field(
            ge=MIN_PORT,
            le=MAX_PORT,
            json_schema_extra=INT32,
            description=(
                "The TCP port, 1024 to 65535 (the pods run as a non-root user and cannot bind "
                "lower ports). Also the Service port."
            ),
        ),
    ]


DEFAULT_LISTENERS: Final = (Listener(name="api", port=8080), Listener(name="metrics", port=9090))

ResourceList = Annotated[dict[StrictStr, Quantity], Size(MAX_RESOURCE_NAMES)]


class ResourceRequirements(SpecModel):
    """Compute resources of the server container (core ResourceRequirements)."""

    limits: ResourceList | None = Field(
        default=None,
        description=(
            "The most the container may use, by resource name (e.g. memory: 128Mi). More info: "
            "https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/"
        ),
    )
    requests: ResourceList | None = Field(
        default=None,
        description=(
            "What the scheduler reserves for the container, by resource name (e.g. cpu: 50m). "
            "Each request must not exceed its limit. More info: "
            "https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/"
        ),
    )


Resources = Annotated[
    ResourceRequirements,
    Rule(
        "!has(self.requests) || !has(self.limits) || self.requests.all(name, !(name in self.limits) || "
        "quantity(string(self.requests[name])).compareTo(quantity(string(self.limits[name]))) <= 0)",
        "each resource request must be less than or equal to its limit",
        _requests_within_limits,
        field_path=".requests",
    ),
]


class LabServerSpec(SpecModel):
    """The desired state of the server. Every field has a default, so `spec: {}` runs one
    replica of the default image on ports 8080 (api) and 9090 (metrics)."""

    replicas: Annotated[
        StrictInt,
        Field(
            ge=MIN_REPLICAS,
            le=MAX_REPLICAS,
            json_schema_extra=INT32,
            description=(
                "Number of server pods, 0 to 100. Also settable through the scale subresource "
                "(`kubectl scale labserver/NAME --replicas=N`). 0 stops every pod and keeps the "
                "Service."
            ),
        ),
    ] = DEFAULT_REPLICAS
    message: Annotated[
        StrictStr,
        # No NUL: the message travels in an environment variable, which cannot hold one.
        Field(
            max_length=MAX_MESSAGE_LENGTH,
            pattern=r"^[^\x00]*$",
            description=(
                "The text the server answers with on `/`, byte for byte (passed to the pods as "
                "LABHTTP_MESSAGE, `$` escaped so that Kubernetes expands nothing). At most 1024 "
                "characters, any Unicode but NUL."
            ),
        ),
    ] = DEFAULT_MESSAGE
    listeners: Annotated[
        tuple[Listener, ...],
        Size(MAX_LISTENERS, MIN_LISTENERS),
        Field(
            json_schema_extra={"x-kubernetes-list-type": "atomic"},
            description=(
                "The named TCP ports the server listens on, 1 to 8 of them. Each becomes a "
                "container port and a Service port of the same name. The first one carries the "
                "health probes; the one called `metrics` (else the first) serves /metrics. Names "
                "and ports must be unique."
            ),
        ),
        Rule(
            "self.all(l, self.exists_one(m, m.name == l.name))",
            "listener names must be unique",
            _unique("name"),
        ),
        Rule(
            "self.all(l, self.exists_one(m, m.port == l.port))",
            "listener ports must be unique",
            _unique("port"),
        ),
    ] = DEFAULT_LISTENERS
    image: (
        Annotated[
            StrictStr,
            Field(
                min_length=1,
                max_length=MAX_IMAGE_LENGTH,
                description=(
                    "The server's container image. Leave it out to use the operator's default "
                    "(ghcr.io/k8s-lab/labhttp at the operator's version). The image must run as a "
                    "non-root user (the pods use uid 65532) and serve labhttp's endpoints."
                ),
            ),
        ]
        | None
    ) = None
    resources: Resources | None = Field(
        default=None,
        description=(
            "Compute resources of the server container (core ResourceRequirements). Leave it out "
            "for the defaults: requests cpu 50m, memory 64Mi; limits memory 128Mi. When given, it "
            "replaces the defaults entirely (`{}` means none)."
        ),
    )


# --------------------------------------------------------------------------------------------
# The status (written by the operator: labop.status builds it as plain dicts)


class ServicePort(Model):
    """One Service port."""

    name: str | None = Field(default=None, description="The listener's (and the Service port's) name.")
    port: Annotated[int, Field(json_schema_extra=INT32)] | None = Field(
        default=None, description="The Service port number."
    )


class Endpoints(Model):
    """Where the server is reachable inside the cluster: the Service's DNS name and its ports.
    Absent while the Service does not exist."""

    host: str | None = Field(
        default=None,
        description=(
            "The Service's DNS name, NAME.NAMESPACE.svc (resolvable from any pod whatever the "
            "cluster domain)."
        ),
    )
    ports: list[ServicePort] | None = Field(
        default=None, description="The Service's ports, one per listener."
    )


class Condition(Model):
    """One aspect of the current state (the shape of metav1.Condition)."""

    type: Annotated[
        str,
        Field(
            max_length=316,
            pattern=(
                r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
            ),
            description="The condition's type, in CamelCase (Ready, Progressing, Degraded).",
        ),
    ]
    status: Literal["True", "False", "Unknown"] = Field(
        description="Whether the condition holds (True, False or Unknown)."
    )
    observedGeneration: Annotated[int, Field(ge=0, json_schema_extra=INT64)] | None = Field(
        default=None, description="The metadata.generation the condition was computed for."
    )
    lastTransitionTime: Annotated[
        datetime,
        # Not strict even in a strict validation: the wire form of a date-time is a string.
        Field(strict=False, description="When the status last changed (not when it was last checked)."),
    ]
    reason: Annotated[
        str,
        Field(
            min_length=1,
            max_length=1024,
            pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
            description=(
                "A CamelCase, machine-readable reason for the status, e.g. Available, RollingOut, "
                "ScaledToZero, InvalidSpec, ChildConflict."
            ),
        ),
    ]
    message: Annotated[
        str, Field(max_length=32768, description="A human-readable explanation of the status.")
    ]


class LabServerStatus(Model):
    """The observed state, written by the operator only (through the status subresource)."""

    observedGeneration: Annotated[int, Field(ge=0, json_schema_extra=INT64)] | None = Field(
        default=None,
        description=(
            "The metadata.generation this status describes. Older than metadata.generation means "
            "the operator has not acted on the latest spec yet."
        ),
    )
    replicas: Annotated[int, Field(ge=0, json_schema_extra=INT32)] | None = Field(
        default=None,
        description=(
            "Server pods that exist (the Deployment's status.replicas); read by the scale subresource."
        ),
    )
    readyReplicas: Annotated[int, Field(ge=0, json_schema_extra=INT32)] | None = Field(
        default=None, description="Server pods that pass their readiness probe."
    )
    selector: str | None = Field(
        default=None,
        description=(
            "The label selector of the server pods, in string form (for the scale subresource, "
            "e.g. the HorizontalPodAutoscaler)."
        ),
    )
    endpoints: Endpoints | None = None
    conditions: list[Condition] | None = Field(
        default=None,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description=(
            "The latest observations of the LabServer's state. Ready (the current spec runs with "
            "every replica ready, or is scaled to zero), Progressing (a rollout, scale or retry is "
            "under way) and Degraded (something is wrong: invalid spec, a same-named child not "
            "owned by this LabServer, failing API calls, pods that cannot be created, or a "
            "stalled rollout)."
        ),
    )


# --------------------------------------------------------------------------------------------
# The object


class ObjectMeta(Model):
    # Only name restrictions are allowed in a CRD's metadata schema (and no description).

    name: Annotated[str, Field(max_length=MAX_NAME_LENGTH, pattern=NAME_PATTERN)] | None = None


class LabServer(Model):
    """A LabServer runs a small HTTP server (labhttp) as a Deployment with a ClusterIP Service in
    front of it. The operator creates both, owns them, and reports progress in status.conditions
    (Ready, Progressing, Degraded), so that `kubectl wait --for=condition=Ready labserver/NAME`
    works."""

    apiVersion: str | None = Field(
        default=None,
        description=(
            "APIVersion defines the versioned schema of this representation of an object. Servers "
            "should convert recognized schemas to the latest internal value, and may reject "
            "unrecognized values. More info: "
            "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"
        ),
    )
    kind: str | None = Field(
        default=None,
        description=(
            "Kind is a string value representing the REST resource this object represents. Servers "
            "may infer this from the endpoint the client submits requests to. Cannot be updated. In "
            "CamelCase. More info: "
            "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"
        ),
    )
    metadata: ObjectMeta | None = None
    # The CRD defaults spec to {} (then each field's own default applies).
    spec: LabServerSpec = Field(default_factory=LabServerSpec, json_schema_extra={"default": {}})
    status: LabServerStatus | None = None


# --------------------------------------------------------------------------------------------
# The resource: names, subresources, printer columns (what controller-gen's markers declare)


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    categories: tuple[str, ...]
    scope: str
    model: type[BaseModel]
    scale: Mapping[str, str] | None
    printer_columns: tuple[PrinterColumn, ...]
    labels: Mapping[str, str]


RESOURCE: Final = Resource(
    group=naming.GROUP,
    version=naming.VERSION,
    kind=naming.KIND,
    plural=naming.PLURAL,
    singular="labserver",
    short_names=("lsrv",),
    categories=("k8slab", "all"),
    scope="Namespaced",
    model=LabServer,
    scale={
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    },
    printer_columns=(
        PrinterColumn("Replicas", "integer", ".spec.replicas", "Desired number of server pods."),
        PrinterColumn(
            "Ready", "integer", ".status.readyReplicas", "Server pods that pass their readiness probe."
        ),
        PrinterColumn(
            "Status",
            "string",
            '.status.conditions[?(@.type=="Ready")].reason',
            "Reason of the Ready condition.",
        ),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since the LabServer was created."),
        PrinterColumn("Message", "string", ".spec.message", "The message the server answers with.", 1),
        PrinterColumn("Ports", "string", ".spec.listeners[*].port", "Ports the server listens on.", 1),
    ),
    labels={"app.kubernetes.io/name": "k8s-lab", "app.kubernetes.io/part-of": "k8s-lab"},
)

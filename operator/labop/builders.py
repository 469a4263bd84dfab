"""Pure builders of a LabServer's children: the Deployment and the Service, apply-ready.

Pure, from a parsed `LabServerSpec`, so that what the operator asks for can be tested without
an API. The pods run labhttp (servers/labhttp), configured by the LABHTTP_* variables set here.

Every object is complete (apiVersion, kind, metadata, spec) and lists only the fields the
operator owns: with server-side apply, a field we stop sending is removed, and a field we never
send (e.g. a Service's clusterIP, a Deployment's strategy) stays with the apiserver's defaults.

Each child carries ``k8slab.dev/desired-hash``: a digest of the object as built, this annotation
left out. The child itself so records what our last apply sent, and a restarted operator can
tell from its cache alone that an apply would change nothing (``Reconciler._apply_if_changed``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

from labop import naming
from labop.spec import LabServerSpec, Listener

CONTAINER_NAME: Final = "server"
# The labhttp image's non-root user (USER 65532 in servers/Dockerfile).
RUN_AS_USER: Final = 65532
TERMINATION_GRACE_PERIOD_SECONDS: Final = 30
DEFAULT_RESOURCES: Final[dict[str, dict[str, str]]] = {
    "requests": {"cpu": "50m", "memory": "64Mi"},
    # No CPU limit on purpose: CPU throttling hurts latency and memory is what needs a cap.
    "limits": {"memory": "128Mi"},
}

READINESS_PATH: Final = "/readyz"
LIVENESS_PATH: Final = "/health"

ENV_MESSAGE: Final = "LABHTTP_MESSAGE"
ENV_LISTEN: Final = "LABHTTP_LISTEN"
ENV_METRICS_LISTENER: Final = "LABHTTP_METRICS_LISTENER"


def build_deployment(ls: Mapping[str, Any], spec: LabServerSpec) -> dict[str, Any]:
    """The Deployment that runs `spec.replicas` labhttp pods for the LabServer `ls`."""
    name = naming.child_name(ls)
    return with_desired_hash(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _metadata(ls),
            "spec": {
                "replicas": spec.replicas,
                "selector": {"matchLabels": naming.selector_labels(name)},
                "template": {
                    "metadata": {"labels": naming.labels(name)},
                    "spec": _pod_spec(spec),
                },
            },
        }
    )


def build_service(ls: Mapping[str, Any], spec: LabServerSpec) -> dict[str, Any]:
    """The ClusterIP Service with one port per listener, in front of the LabServer's pods."""
    return with_desired_hash(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _metadata(ls),
            "spec": {
                "type": "ClusterIP",
                "selector": naming.selector_labels(naming.child_name(ls)),
                "ports": [_service_port(listener) for listener in spec.listeners],
            },
        }
    )


def desired_hash(obj: Mapping[str, Any]) -> str:
    """The digest ``with_desired_hash`` records: of ``obj`` without its desired-hash annotation."""
    meta = dict(obj.get("metadata") or {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != naming.DESIRED_HASH}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    text = json.dumps({**obj, "metadata": meta}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def with_desired_hash(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` annotated with its own ``desired_hash`` (128 bits of sha256, hex)."""
    obj["metadata"].setdefault("annotations", {})[naming.DESIRED_HASH] = desired_hash(obj)
    return obj


def listen_env(listeners: tuple[Listener, ...]) -> str:
    """LABHTTP_LISTEN's value: `NAME=0.0.0.0:PORT` per listener, comma-separated, in spec order."""
    return ",".join(f"{listener.name}=0.0.0.0:{listener.port}" for listener in listeners)


def env_literal(text: str) -> str:
    """``text`` as an env value that reaches the container unchanged.

    The kubelet expands env values: ``$(VAR)`` becomes VAR's value, ``$$`` becomes ``$``, and a
    ``$`` before a non-ASCII character even loses bytes. Doubling every ``$`` leaves nothing to
    expand: each ``$$`` turns back into the ``$`` it was. (An env var is the channel rather than
    a file or the downward API because labhttp reads all its settings from env or flags; the
    escape is the whole cost.)
    """
    return text.replace("$", "$$")


def _metadata(ls: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": naming.child_name(ls),
        "namespace": ls["metadata"]["namespace"],
        "labels": naming.labels(naming.child_name(ls)),
        "ownerReferences": [naming.owner_reference(ls)],
    }


def _pod_spec(spec: LabServerSpec) -> dict[str, Any]:
    return {
        # The server never talks to the API: no token in the pod, nothing to steal.
        "automountServiceAccountToken": False,
        # No *_SERVICE_HOST/PORT variables for every Service in the namespace; labhttp uses none.
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_PERIOD_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(spec)],
    }


ENV_SHUTDOWN_DELAY = "LABHTTP_SHUTDOWN_DELAY"
SHUTDOWN_DELAY_SECONDS = "5"


def _container(spec: LabServerSpec) -> dict[str, Any]:
    probe_port = spec.listeners[0].name
    return {
        "name": CONTAINER_NAME,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "env": [
            {"name": ENV_MESSAGE, "value": env_literal(spec.message)},
            {"name": ENV_LISTEN, "value": listen_env(spec.listeners)},
            {"name": ENV_METRICS_LISTENER, "value": spec.metrics_listener.name},
            # Keep serving (readiness already 503) while the endpoints controller removes the pod,
            # then drain: 5 s delay + labhttp's 10 s drain fit the 30 s termination grace period.
            {"name": ENV_SHUTDOWN_DELAY, "value": SHUTDOWN_DELAY_SECONDS},
        ],
        "ports": [
            {"name": listener.name, "containerPort": listener.port, "protocol": "TCP"}
            for listener in spec.listeners
        ],
        # Startup gives a slow start up to 60 s before liveness may kill the container.
        "startupProbe": _http_probe(LIVENESS_PATH, probe_port, period=2, failures=30),
        # Readiness turns 503 as soon as labhttp starts shutting down: out of the Service first.
        "readinessProbe": _http_probe(READINESS_PATH, probe_port, period=5, failures=3),
        "livenessProbe": _http_probe(LIVENESS_PATH, probe_port, period=10, failures=3),
        "resources": spec.resources.as_dict() if spec.resources is not None else _default_resources(),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        },
        # A crash's last log lines show up in `kubectl describe pod`.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _http_probe(path: str, port: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port, "scheme": "HTTP"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _default_resources() -> dict[str, dict[str, str]]:
    # A fresh copy: callers (and the apply machinery) may mutate what they get.
    return {section: dict(amounts) for section, amounts in DEFAULT_RESOURCES.items()}


def _service_port(listener: Listener) -> dict[str, Any]:
    return {
        "name": listener.name,
        "port": listener.port,
        "targetPort": listener.name,
        "protocol": "TCP",
        # Lets a mesh (Istio) treat the port as HTTP whatever its name.
        "appProtocol": "http",
    }

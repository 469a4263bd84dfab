"""Names and labels shared by a LabServer and the children the operator makes for it.

Why one module: the labels, the selector (published as `.status.selector` for the scale
subresource, e.g. `kubectl scale` and the HPA) and the owner reference must agree wherever they
are written or read, and `is_controlled_by` is how the operator tells its own children from
same-named objects someone else made.

Pure functions only: no API calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

GROUP: Final = "k8slab.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "LabServer"
PLURAL: Final = "labservers"

# The field manager for server-side apply: the owner of every field the builders emit.
FIELD_MANAGER: Final = "k8s-lab"

# On each child: the digest of the object our last apply sent (see builders.with_desired_hash).
DESIRED_HASH: Final = "k8slab.dev/desired-hash"

LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"

APP_NAME: Final = "labserver"
MANAGED_BY: Final = "k8s-lab"
COMPONENT: Final = "server"


def selector_labels(name: str) -> dict[str, str]:
    """The labels that select a LabServer's pods.

    Only name + instance: a Deployment's selector is immutable, so it must not contain anything
    we might want to change later (such as the component or a version).
    """
    return {LABEL_NAME: APP_NAME, LABEL_INSTANCE: name}


def labels(name: str) -> dict[str, str]:
    """All labels the operator puts on the children and on the pod template."""
    return {
        **selector_labels(name),
        LABEL_COMPONENT: COMPONENT,
        LABEL_MANAGED_BY: MANAGED_BY,
    }


def selector_string(name: str) -> str:
    """The pod selector in the label-selector string form `.status.selector` needs.

    Keys are sorted, as `labels.SelectorFromSet(...).String()` does in Go, so that the value
    is stable and does not cause a status write on every reconcile.
    """
    return ",".join(f"{key}={value}" for key, value in sorted(selector_labels(name).items()))


def child_name(ls: Mapping[str, Any]) -> str:
    """The name of the Deployment and of the Service: the LabServer's own name."""
    return str(ls["metadata"]["name"])


def owner_reference(ls: Mapping[str, Any]) -> dict[str, Any]:
    """A controller owner reference to the LabServer, for its children.

    `controller: true` makes the garbage collector delete the children with their LabServer and
    lets the controller map a child's events back to it; `blockOwnerDeletion: true` keeps a
    foreground deletion of the LabServer waiting until the children are gone.
    """
    metadata = ls["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def is_controlled_by(child: Mapping[str, Any], ls: Mapping[str, Any]) -> bool:
    """Whether `child`'s controller owner reference points at this very LabServer (by uid).

    The uid, not the name, decides: a LabServer deleted and re-created under the same name is
    another object, and the old one's children are not its children.
    """
    uid = (ls.get("metadata") or {}).get("uid")
    if not uid:
        return False
    refs = (child.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("controller") is True and ref.get("uid") == uid for ref in refs)


def is_previous_incarnation(child: Mapping[str, Any], ls: Mapping[str, Any]) -> bool:
    """Whether ``child`` is controlled by an earlier LabServer of the same name (another uid).

    That happens when a LabServer is deleted and re-created under its name before the garbage
    collector removed the old one's children: the new one waits for them, it does not fight.
    """
    meta = ls.get("metadata") or {}
    for ref in (child.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") is True:
            group = str(ref.get("apiVersion", "")).split("/", 1)[0]
            return (
                group == GROUP
                and ref.get("kind") == KIND
                and ref.get("name") == meta.get("name")
                and ref.get("uid") != meta.get("uid")
            )
    return False

"""The read cache: kopf indexes of LabServers and of the children, and the key mapping.

Role: the index functions (registered in ``handlers``) store what the reconciler reads: each
LabServer whole (it is small and the reconciler needs spec, metadata and status), and of every
Deployment and Service a small projection (see ``child_entry``; the live child comes back from
the apply). ``Cache`` reads them by key; ``owner_key`` maps a child's event to its
LabServer's key. Why kopf's indexes and not reads from the API: every reconcile would cost
requests, and the watches kopf keeps anyway already hold the objects.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from labop.naming import GROUP, KIND
from labop.runtime import GroupKind, Key
from labop.runtime.controller import controller_owner_key

__all__ = ["Cache", "Key", "child_entry", "labserver_entry", "owner_key"]


class IndexLike(Protocol):
    """What the cache needs of a ``kopf.Index``: a mapping from key to a collection of values."""

    def __getitem__(self, key: Any) -> Any: ...
    def __contains__(self, key: object) -> bool: ...
    def __iter__(self) -> Iterator[Any]: ...


LABSERVER = GroupKind(GROUP, KIND)


def labserver_entry(body: Mapping[str, Any]) -> dict[str, Any]:
    """A private deep copy: kopf's body is a live view that later events change under us."""
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": copy.deepcopy(dict(body.get("metadata", {}))),
        "spec": copy.deepcopy(dict(body.get("spec") or {})),
        "status": copy.deepcopy(dict(body.get("status") or {})),
    }


def child_entry(body: Mapping[str, Any]) -> dict[str, Any]:
    """Identity and owners of every Deployment and Service (to tell ours from a same-named
    stranger); for ours also generation, replicas, ports and status, so that a problem's status
    keeps the real numbers. Never the pod template or managed fields: watching every
    Deployment and Service in the cluster stays cheap."""
    meta = body.get("metadata", {})
    entry: dict[str, Any] = {
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "ownerReferences": copy.deepcopy(list(meta.get("ownerReferences") or [])),
        },
    }
    if owner_key(body) is None:
        return entry
    spec = body.get("spec") or {}
    entry["metadata"]["generation"] = meta.get("generation")
    entry["metadata"]["resourceVersion"] = meta.get("resourceVersion")
    entry["status"] = copy.deepcopy(dict(body.get("status") or {}))
    if "replicas" in spec:
        entry["spec"] = {"replicas": spec["replicas"]}
    if "ports" in spec:  # a Service: its ports make the status's endpoints
        entry["spec"] = {"ports": copy.deepcopy(list(spec["ports"]))}
    return entry


def owner_key(child: Mapping[str, Any]) -> Key | None:
    """The key of the LabServer that controls ``child``, or None if no LabServer does."""
    return controller_owner_key(child, LABSERVER)


def _one(index: IndexLike, key: Key) -> dict[str, Any] | None:
    if key not in index:
        return None
    return next(iter(index[key]), None)


class Cache:
    def __init__(self, labservers: IndexLike, deployments: IndexLike, services: IndexLike) -> None:
        self._labservers = labservers
        self._deployments = deployments
        self._services = services

    def labserver(self, key: Key) -> dict[str, Any] | None:
        return _one(self._labservers, key)

    def deployment(self, key: Key) -> dict[str, Any] | None:
        return _one(self._deployments, key)

    def service(self, key: Key) -> dict[str, Any] | None:
        return _one(self._services, key)

    def labserver_keys(self) -> list[Key]:
        # A snapshot: the index changes while the resync walks it.
        return list(self._labservers)

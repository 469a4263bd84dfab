"""The read cache: a store per watched kind (LabServers, Deployments, Services), and the key mapping.

Role: what the reconciler reads, and only that: of each LabServer its identity, spec and status;
of every Deployment and Service its identity and controller; for ours also what the status is
computed from (generation, replicas, ports, the Deployment's rollout status) and what tells
whether an apply would change anything (our desired-hash annotation, and per field manager a
fingerprint of its Apply entry in managedFields, see ``ownedfields``). The kopf event handlers
put every watch event into its kind's store (``labop.runtime.store``) before they enqueue its
key; ``Cache`` reads them by key; ``owner_key`` maps a child's event to its LabServer's key.
Why a cache and not reads from the API: every reconcile would cost requests, and the watches
kopf keeps anyway already bring every object.

Why each entry is compact JSON (bytes) and parsed on every read: memory. A LabServer with its two
children as nested dicts costs some 10 KB of Python objects (managedFields and
kubectl's last-applied annotation alone most of it); the projection as bytes is well under 2 KB
(bench/memory.md), parsing it costs some microseconds, and every read gets a private copy for
free (the reconciler may mutate what it reads).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from labop.naming import DESIRED_HASH, GROUP, KIND
from labop.ownedfields import apply_fingerprints
from labop.runtime import GroupKind, Key
from labop.runtime.controller import controller_owner_key
from labop.runtime.store import ListingSync, Store

__all__ = [
    "DEPLOYMENTS",
    "LABSERVERS",
    "SERVICES",
    "Cache",
    "Key",
    "child_entry",
    "labserver_entry",
    "owner_key",
]


LABSERVER = GroupKind(GROUP, KIND)


def _pack(entry: Mapping[str, Any]) -> bytes:
    return json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode()


def _present(mapping: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {name: mapping[name] for name in names if mapping.get(name) is not None}


LABSERVER_METADATA = ("name", "namespace", "uid", "generation", "resourceVersion", "deletionTimestamp")
DEPLOYMENT_STATUS = (
    "observedGeneration",
    "replicas",
    "updatedReplicas",
    "readyReplicas",
    "availableReplicas",
)
CONDITION = ("type", "status", "reason", "message")


def labserver_entry(body: Mapping[str, Any]) -> bytes:
    """What the reconciler reads of a LabServer: identity, spec and status (not managedFields,
    labels or annotations, which nothing reads)."""
    return _pack(
        {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "metadata": _present(body.get("metadata") or {}, *LABSERVER_METADATA),
            "spec": body.get("spec") or {},
            "status": body.get("status") or {},
        }
    )


def _controller_refs(meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    # Only a controller reference says whose child this is (is_controlled_by, owner_key).
    return [
        _present(ref, "apiVersion", "kind", "name", "uid", "controller")
        for ref in meta.get("ownerReferences") or []
        if ref.get("controller") is True
    ]


def child_entry(body: Mapping[str, Any]) -> bytes:
    """Identity and controller of every Deployment and Service (to tell ours from a same-named
    stranger); for ours also what the status is computed from and what ``_apply_if_changed``
    compares: our desired-hash annotation and the Apply fingerprints (``fields``). Never the
    pod template or managed fields themselves: watching every Deployment and Service in the
    cluster stays cheap."""
    meta = body.get("metadata") or {}
    entry: dict[str, Any] = {"metadata": {**_present(meta, "name", "namespace", "uid")}}
    entry["metadata"]["ownerReferences"] = _controller_refs(meta)
    if owner_key(body) is None:
        return _pack(entry)
    entry["metadata"].update(_present(meta, "generation", "resourceVersion"))
    if (desired := (meta.get("annotations") or {}).get(DESIRED_HASH)) is not None:
        entry["metadata"]["annotations"] = {DESIRED_HASH: desired}
    entry["fields"] = apply_fingerprints(meta.get("managedFields"))
    spec, status = body.get("spec") or {}, body.get("status") or {}
    if "replicas" in spec:  # a Deployment: its rollout makes the status's conditions
        entry["spec"] = {"replicas": spec["replicas"]}
        entry["status"] = _present(status, *DEPLOYMENT_STATUS)
        entry["status"]["conditions"] = [_present(c, *CONDITION) for c in status.get("conditions") or []]
    if "ports" in spec:  # a Service: its ports make the status's endpoints
        entry["spec"] = {"ports": [_present(port, "name", "port") for port in spec["ports"]]}
    return _pack(entry)


def owner_key(child: Mapping[str, Any]) -> Key | None:
    """The key of the LabServer that controls ``child``, or None if no LabServer does."""
    return controller_owner_key(child, LABSERVER)


def _one(store: Store, key: Key) -> dict[str, Any] | None:
    packed = store.get(key)
    if packed is None:
        return None
    entry: dict[str, Any] = json.loads(packed)  # a fresh copy on every read
    return entry


# The stores' kinds, as kubectl names the resources (and ``kopfsync.resource_name``).
LABSERVERS, DEPLOYMENTS, SERVICES = f"labservers.{GROUP}", "deployments.apps", "services"


class Cache:
    """The three stores, filled from watch events (``Store.apply``); ``sync.synced`` once each
    holds its kind's initial listing (see ``labop.runtime.store``). Tests may pass stores of
    their own."""

    def __init__(
        self,
        labservers: Store | None = None,
        deployments: Store | None = None,
        services: Store | None = None,
    ) -> None:
        self.sync = ListingSync((LABSERVERS, DEPLOYMENTS, SERVICES))
        self.labservers = (
            labservers if labservers is not None else Store(LABSERVERS, labserver_entry, self.sync)
        )
        self.deployments = (
            deployments if deployments is not None else Store(DEPLOYMENTS, child_entry, self.sync)
        )
        self.services = services if services is not None else Store(SERVICES, child_entry, self.sync)

    def labserver(self, key: Key) -> dict[str, Any] | None:
        return _one(self.labservers, key)

    def deployment(self, key: Key) -> dict[str, Any] | None:
        return _one(self.deployments, key)

    def service(self, key: Key) -> dict[str, Any] | None:
        return _one(self.services, key)

    def labserver_keys(self) -> list[Key]:
        # A snapshot: the store changes while the resync walks it.
        return list(self.labservers)

"""Fakes shared by the unit tests: stand-ins for ``labop.kubeapi.KubeApi`` and for a Lease."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from labop.apierrors import Conflict
from labop.kubeapi import Applied
from labop.naming import FIELD_MANAGER
from labop.ownedfields import applied_fields, fields_v1
from labop.runtime.leaderelection import LeaseConflict, LeaseRecord

COUNTS = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")


class FakeApi:
    """A KubeApi stand-in: records apply/apply_status/create_event, raises what a test scripts.

    ``apply`` answers with the applied object as the apiserver would return it: a uid, generation
    1, a Service's cluster IP, and a Deployment's status (``deployment_status``, or by default
    every replica of generation 1 updated, ready and available).
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []  # (method, its arguments), in call order
        self.deployment_status: dict[str, Any] | None = None
        self.apply_errors: dict[str, BaseException] = {}  # by kind
        self.status_error: BaseException | None = None
        self.event_error: BaseException | None = None
        self.status_written = asyncio.Event()  # set by every status write, for tests with workers
        self.closed = False
        self.existing: set[tuple[str, str, str]] = set()  # (kind, namespace, name) on the "server"
        self.live: dict[tuple[str, str, str], dict[str, Any]] = {}  # what the last apply returned
        # The resourceVersion of each LabServer on the "server", once a status write moved it:
        # a status write based on another version is refused with 409, as the apiserver does.
        self.labserver_versions: dict[tuple[str, str], str] = {}
        self.stored: list[dict[str, Any]] = []  # the statuses that passed their precondition
        # Called with each apply's watch event type and object, as a watch brings it back: a
        # controller test feeds them to the controller, whose reconciler writes the status of a
        # new LabServer only in the pass that this event brings.
        self.watchers: list[Callable[[str, dict[str, Any]], None]] = []
        # Kinds whose apply of an existing object changes nothing: the apiserver answers with
        # the stored object, same resourceVersion, and no watch event follows.
        self.unchanged_by_apply: set[str] = set()

    async def apply(self, obj: dict[str, Any]) -> Applied:
        self.calls.append(("apply", copy.deepcopy(obj)))
        if obj["kind"] in self.apply_errors:
            raise self.apply_errors[obj["kind"]]
        identity = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        if obj["kind"] in self.unchanged_by_apply and identity in self.live:
            return Applied(obj=copy.deepcopy(self.live[identity]), created=False)
        created = identity not in self.existing
        self.existing.add(identity)
        live = copy.deepcopy(obj)
        live["metadata"]["uid"] = f"{obj['kind'].lower()}-uid"
        live["metadata"]["generation"] = 1
        if obj["kind"] == "Deployment":
            replicas = obj["spec"]["replicas"]
            all_ready = {"observedGeneration": 1, **{count: replicas for count in COUNTS if replicas}}
            live["status"] = copy.deepcopy(self.deployment_status) or all_ready
        else:
            live["spec"]["clusterIP"] = "10.0.0.17"
        live["metadata"]["resourceVersion"] = str(len(self.calls))
        # What the apiserver records of the apply; ownedfields' rules, which the integration
        # test test_owned_fields proves against the real one.
        owned = fields_v1(applied_fields(obj))
        live["metadata"]["managedFields"] = [
            {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": owned}
        ]
        self.live[identity] = copy.deepcopy(live)
        for watcher in self.watchers:
            watcher("ADDED" if created else "MODIFIED", copy.deepcopy(live))
        return Applied(obj=live, created=created)

    async def json_patch(self, obj: dict[str, Any], operations: list[dict[str, Any]]) -> None:
        self.calls.append(("json_patch", (obj["kind"], copy.deepcopy(operations))))
        self.apply_errors.pop(obj["kind"], None)  # the reset clears what made the apply fail

    async def apply_status(self, labserver: dict[str, Any], status: dict[str, Any]) -> None:
        meta = labserver["metadata"]
        key, precondition = (meta["namespace"], meta["name"]), str(meta["resourceVersion"])
        self.calls.append(("apply_status", (*key, copy.deepcopy(status), precondition)))
        self.status_written.set()
        if self.status_error is not None:
            raise self.status_error
        if self.labserver_versions.get(key, precondition) != precondition:
            raise Conflict(
                409, "the object has been modified; please apply your changes to the latest version"
            )
        self.labserver_versions[key] = f"status-{len(self.calls)}"  # what the write produced
        self.stored.append(copy.deepcopy(status))

    async def create_event(self, namespace: str, event: dict[str, Any]) -> None:
        if self.event_error is not None:
            raise self.event_error
        self.calls.append(("create_event", (namespace, copy.deepcopy(event))))

    async def aclose(self) -> None:
        self.closed = True

    # --- what the tests read -----------------------------------------------------------

    def arguments(self, method: str) -> list[Any]:
        return [args for called, args in self.calls if called == method]

    @property
    def applied(self) -> list[dict[str, Any]]:
        return self.arguments("apply")

    @property
    def applied_kinds(self) -> list[str]:
        return [obj["kind"] for obj in self.applied]

    @property
    def statuses(self) -> list[dict[str, Any]]:
        """The statuses sent, in order, refused ones included (the rest: ``arguments("apply_status")``)."""
        return [status for _, _, status, _ in self.arguments("apply_status")]

    @property
    def events(self) -> list[tuple[str, str, str]]:
        """(type, reason, message) of every Event posted, in order."""
        return [(e["type"], e["reason"], e["message"]) for _, e in self.arguments("create_event")]


class FakeLeases:
    """One Lease; ``down`` makes every call fail as an unreachable apiserver would."""

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.version = 0
        self.down = False
        self.writes: list[str] = []

    def _check(self) -> None:
        if self.down:
            raise OSError("connection refused")

    async def get(self) -> LeaseRecord | None:
        self._check()
        return self.record

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        self._check()
        if self.record is not None:
            raise LeaseConflict("exists")
        return self._store(record)

    async def update(self, record: LeaseRecord) -> LeaseRecord:
        self._check()
        if self.record is None or record.resource_version != self.record.resource_version:
            raise LeaseConflict("stale")
        return self._store(record)

    def _store(self, record: LeaseRecord) -> LeaseRecord:
        self.version += 1
        self.record = replace(record, resource_version=str(self.version))
        self.writes.append(record.holder)
        return self.record

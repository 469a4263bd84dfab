"""A controller: one bounded work queue, one worker pool, a periodic resync, and the wiring.

controller-runtime's `Controller` and its builder, for an operator whose watches are kopf's
(and whose caches are `store`'s: start the controller once they are synced).
The event source (kopf handlers, a test, anything) hands keys to `enqueue` or objects
to `enqueue_owner`, each with a priority (`event_priority` maps a watch event to one); the
`WorkQueue` dedupes them, new work first, and the `WorkerPool` runs the reconcile function on
them; `stop` drains in-flight reconciles within the grace period.

The resync: every `resync_seconds` one pass adds every primary key of the caller's cache at
low priority. Low adds never wait and are never refused (see `workqueue`), so a pass reaches
every key whatever their number and the queue's bound, and holds back no new work: a key
already waiting is counted and left where it is, a key being processed is marked to go again.
A pass is over when the queue has handed out every key it found waiting or put in the low lane
(`WorkQueue.wait_low_drained`); the next period starts then. So if reconciling the keys of a
pass takes longer than the period, passes do not pile up or overlap: the next one starts a
period after the previous one got through, and the queue never holds more than one entry per
key anyway. Each pass counts `controller_resync_keys_total` and `controller_resync_passes_total`
and logs `resync done` at DEBUG (every period: routine), at INFO when the pass took longer than
its period (the operator is behind its own resync, worth a line).

Built the way controller-runtime reads::

    controller = (
        ControllerBuilder("configmaps")
        .for_("", "ConfigMap")
        .owns("apps", "Deployment")
        .with_options(workers=2, queue_size=100)
        .complete(reconcile, primary_keys=cache.keys)  # cache: the caller's, e.g. a store
    )

`for_` names the primary kind: its keys are what the reconcile function gets, and a child's
controller reference to it is how `enqueue_owner` maps the child's events (`owns`).
Nothing here knows what is being reconciled, and nothing here imports kopf.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client import CollectorRegistry

from labkit.logs import log_event
from labop.runtime.clock import Clock
from labop.runtime.metrics import ControllerMetrics, QueueMetrics
from labop.runtime.reconcile import Key, ReconcileFunc
from labop.runtime.workers import WorkerPool
from labop.runtime.workqueue import LOW, NORMAL, Priority, WorkQueue

__all__ = [
    "Controller",
    "ControllerBuilder",
    "GroupKind",
    "Options",
    "controller_owner_key",
    "event_priority",
    "key_of",
]

log = logging.getLogger("labop.runtime.controller")


@dataclass(frozen=True)
class GroupKind:
    """An API group ("" for the core group) and a kind, as owner references name them."""

    group: str
    kind: str


@dataclass(frozen=True)
class Options:
    """How a controller runs (controller-runtime's `controller.Options`, plus the resync)."""

    workers: int = 2  # MaxConcurrentReconciles
    queue_size: int = 1000  # distinct normal keys waiting at most (bounded, unlike client-go's queue)
    resync_seconds: float = 0.0  # re-add every primary key this often; 0 = never
    shutdown_timeout: float = 30.0  # grace for in-flight reconciles on stop
    registry: CollectorRegistry | None = None  # where the workqueue_* and controller_runtime_* go
    logger: logging.Logger | None = None  # the worker pool's
    clock: Clock | None = None  # the queue's, the metrics' and the resync's (tests: a FakeClock)


def key_of(obj: Mapping[str, Any]) -> Key:
    """The key of an object: (namespace, name), namespace "" when cluster-scoped."""
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name")))


def event_priority(event_type: str | None, obj: Mapping[str, Any], *, owned: bool = False) -> Priority:
    """The priority of the key a watch event maps to (see `workqueue`, "Priorities").

    `event_type` is the watch event's type, None for an object of the initial listing (kopf's
    convention: its `on.event` handlers get `type=None` there). `owned`: the event is a child's,
    mapped to its owner's key.

    * ADDED and DELETED: normal. A creation or a deletion is new work.
    * A child's listing: low (its owner is listed too and decides); any other child event:
      normal, since a child's status change (a Deployment becoming available) can change the
      owner's status.
    * A primary's listing or MODIFIED: low when `status.observedGeneration` equals
      `metadata.generation`, i.e. the controller already handled this spec (our own status
      writes, a label edit, a relist after a restart); normal otherwise (a spec change bumps
      the generation; an object created or edited while the operator was down was listed
      with an older or no observedGeneration, and is new work too). A level test on the object
      itself, so it needs no memory of the previous version.
    * A primary with no `metadata.generation` (a kind without that convention, e.g. a
      ConfigMap): as a child, since there is nothing to compare.
    """
    if event_type in ("ADDED", "DELETED"):
        return NORMAL
    generation = (obj.get("metadata") or {}).get("generation")
    if owned or generation is None:
        return LOW if event_type is None else NORMAL
    observed = (obj.get("status") or {}).get("observedGeneration")
    return LOW if observed == generation else NORMAL


def controller_owner_key(child: Mapping[str, Any], owner: GroupKind) -> Key | None:
    """The key of the `owner`-kind object that controls `child`, or None (EnqueueRequestForOwner)."""
    meta = child.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        api_version = str(ref.get("apiVersion", ""))
        group = api_version.split("/", 1)[0] if "/" in api_version else ""
        if ref.get("controller") and ref.get("kind") == owner.kind and group == owner.group:
            return (str(meta.get("namespace")), str(ref.get("name")))
    return None


class Controller:
    """A running controller; build it with `ControllerBuilder`."""

    def __init__(
        self,
        name: str,
        reconcile: ReconcileFunc,
        *,
        primary: GroupKind,
        owned: tuple[GroupKind, ...] = (),
        options: Options = Options(),
        primary_keys: Callable[[], Iterable[Key]] = tuple,
        primary_exists: Callable[[Key], bool] | None = None,
        namesakes: bool = False,
    ) -> None:
        self.name = name
        self.primary = primary
        self.owned = owned
        self.options = options
        self.registry = options.registry or CollectorRegistry()
        self._primary_keys = primary_keys
        self._primary_exists = primary_exists or (lambda key: key in set(primary_keys()))
        self._namesakes = namesakes
        queue_metrics = QueueMetrics(self.registry, name, controller=name, clock=options.clock)
        self.queue: WorkQueue[Key] = WorkQueue(
            options.queue_size, name=name, clock=options.clock, metrics=queue_metrics
        )
        self.metrics = ControllerMetrics(self.registry, name)
        self.pool = WorkerPool(
            self.queue,
            reconcile,
            workers=options.workers,
            name=name,
            metrics=self.metrics,
            logger=options.logger,
        )
        self._resync_task: asyncio.Task[None] | None = None

    # --- producers (the event source) -----------------------------------------------------

    async def enqueue(self, key: Key, priority: Priority = NORMAL) -> None:
        """Backpressure on purpose: a new normal key parks the caller while the queue is full
        (see workqueue's docstring); a low one never waits."""
        await self.queue.add(key, priority)

    def enqueue_nowait(self, key: Key, priority: Priority = NORMAL) -> None:
        """`enqueue` that never waits and is never refused: a new normal key that finds the queue
        full is parked, in order (`WorkQueue.admit`). For a producer that must not wait: one
        that cannot take backpressure (an event source that buffers what it reads meanwhile),
        or runs before the workers do, when nobody would make room."""
        self.queue.admit(key, priority)

    def owner_of(self, child: Mapping[str, Any]) -> Key | None:
        """The key an owned object's event maps to: the primary that controls it, if one does.

        With `namesakes`, a child that no primary controls still maps to the primary of the
        same name when one exists (so that deleting a conflicting stranger lets it recover).
        """
        key = controller_owner_key(child, self.primary)
        if key is None and self._namesakes:
            candidate = key_of(child)
            key = candidate if self._primary_exists(candidate) else None
        return key

    async def enqueue_owner(self, child: Mapping[str, Any], priority: Priority = NORMAL) -> None:
        """An owned object's event: the key of its primary (`owner_of`), if it has one."""
        key = self.owner_of(child)
        if key is not None:
            await self.enqueue(key, priority)

    def resync(self) -> int:
        """One pass: every primary key of the cache into the queue at low priority, now;
        returns how many keys. Never waits and drops none (low adds cannot be refused), so it
        works from plain sync code too (the new leader calls it)."""
        keys = 0
        # No await in this loop: the cache cannot change under the walk.
        for key in self._primary_keys():
            self.queue.add_nowait(key, LOW)
            keys += 1
        self.metrics.resync_pass(keys)
        return keys

    @property
    def resync_task(self) -> asyncio.Task[None] | None:
        """The periodic resync while it runs (None when its period is 0)."""
        return self._resync_task

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers and the resync: once the caller's caches are synced (the resync
        walks them, and a reconcile trusts what they lack)."""
        await self.pool.start()
        if self.options.resync_seconds > 0:
            self._resync_task = asyncio.create_task(self._resync_forever(), name=f"{self.name}-resync")

    async def stop(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - a grace period
        """Stop the resync and the workers; in-flight reconciles get `timeout` (default: the
        shutdown timeout) before they are cancelled."""
        if self._resync_task is not None:
            self._resync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resync_task
        await self.pool.stop(timeout=self.options.shutdown_timeout if timeout is None else timeout)

    async def _resync_forever(self) -> None:
        clock = self.queue.clock
        while True:
            await clock.sleep(self.options.resync_seconds)
            started = clock.now()
            keys = self.resync()
            await self.queue.wait_low_drained()  # the pass is over: its keys were handed out
            self._log_pass(keys, clock.now() - started)

    def _log_pass(self, keys: int, seconds: float) -> None:
        period = self.options.resync_seconds
        fields: dict[str, Any] = {"controller": self.name, "keys": keys, "seconds": round(seconds, 3)}
        level = logging.DEBUG  # every period: routine
        if seconds > period:  # behind its own period: worth a line
            level, fields["period"] = logging.INFO, period
        log_event(log, "resync done", level, **fields)


@dataclass(frozen=True)
class ControllerBuilder:
    """controller-runtime's `builder.ControllerManagedBy(mgr).For(...).Owns(...).Complete(r)`.

    Immutable: each step returns a new builder, so a partial one can be shared.
    """

    name: str
    primary: GroupKind | None = None
    owned: tuple[GroupKind, ...] = ()
    options: Options = field(default_factory=Options)
    namesakes: bool = False

    def for_(self, group: str, kind: str, *, namesakes: bool = False) -> ControllerBuilder:
        """The kind this controller reconciles. `namesakes`: see `Controller.enqueue_owner`."""
        return replace(self, primary=GroupKind(group, kind), namesakes=namesakes)

    def owns(self, group: str, kind: str) -> ControllerBuilder:
        """A kind this controller creates; its events map to the controlling primary's key."""
        return replace(self, owned=(*self.owned, GroupKind(group, kind)))

    def with_options(self, **options: Any) -> ControllerBuilder:
        return replace(self, options=replace(self.options, **options))

    def complete(
        self,
        reconcile: ReconcileFunc,
        *,
        primary_keys: Callable[[], Iterable[Key]] = tuple,
        primary_exists: Callable[[Key], bool] | None = None,
    ) -> Controller:
        """The controller. The caller's cache of primaries answers `primary_keys` (every key,
        for the resync) and `primary_exists` (one key, for namesakes; default: a scan)."""
        if self.primary is None:
            raise ValueError(f"controller {self.name}: for_() names no primary kind")
        return Controller(
            self.name,
            reconcile,
            primary=self.primary,
            owned=self.owned,
            options=self.options,
            primary_keys=primary_keys,
            primary_exists=primary_exists,
            namesakes=self.namesakes,
        )

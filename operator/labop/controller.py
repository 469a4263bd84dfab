"""The LabServer controller: one queue, one worker pool, the resync, the monitoring endpoints.

Role: the object that exists for the operator's lifetime. kopf handlers hand it keys
(``enqueue``, ``enqueue_owner``); the bounded ``WorkQueue`` dedupes them and the ``WorkerPool``
runs ``Reconciler.reconcile`` on them; a periodic resync re-adds every cached LabServer with the
non-blocking add (a full queue already holds plenty of work, so a skipped resync is harmless);
``stop`` drains in-flight reconciles within the grace period.
Like controller-runtime's ``For(LabServer).Owns(Deployment).Owns(Service)``: child events map
to the owner's key.
Neighbours: ``handlers`` (kopf side), ``reconciler``, ``workqueue``/``workers``/``metrics``,
``monitoring``, ``settings``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from labop.cache import Cache, Key, owner_key
from labop.kubeapi import KubeApiLike
from labop.metrics import ControllerMetrics, QueueMetrics
from labop.monitoring import Listener, make_health_app, make_metrics_app, serve
from labop.reconciler import Reconciler
from labop.recorder import EventRecorder
from labop.settings import OperatorSettings
from labop.workers import WorkerPool
from labop.workqueue import WorkQueue

NAME = "labserver"
log = logging.getLogger("labop.controller")


def new_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class Controller:
    def __init__(
        self,
        settings: OperatorSettings,
        cache: Cache,
        api: KubeApiLike,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.api = api
        self.registry = registry or new_registry()
        self.queue: WorkQueue[Key] = WorkQueue(
            settings.queue_size, name=NAME, metrics=QueueMetrics(self.registry, NAME, controller=NAME)
        )
        reconciler = Reconciler(
            cache,
            api,
            EventRecorder(api),
            default_image=settings.default_image,
            reapply_seconds=settings.resync_seconds or 300.0,
        )
        self.pool = WorkerPool(
            self.queue,
            reconciler.reconcile,
            workers=settings.workers,
            name=NAME,
            metrics=ControllerMetrics(self.registry, NAME),
            logger=logging.getLogger("labop.workers"),
        )
        # kopf runs handlers only after every indexed kind was listed once: the first key from a
        # handler proves the cache is complete, so the resync (which walks the cache) waits for it.
        self.primed = asyncio.Event()
        self._resync_task: asyncio.Task[None] | None = None
        self._listeners: list[Listener] = []

    # --- producers (kopf handlers) --------------------------------------------------------

    async def enqueue(self, key: Key) -> None:
        """Backpressure on purpose: a full queue parks this kopf handler (see workqueue's docstring)."""
        self.primed.set()
        await self.queue.add(key)

    async def enqueue_owner(self, child: Mapping[str, Any]) -> None:
        """A Deployment's or Service's event: its controlling LabServer's key, if it has one.

        A same-named child with no LabServer controller still maps to the LabServer of that
        name, so that deleting a conflicting stranger lets the LabServer recover at once.
        """
        self.primed.set()
        key = owner_key(child)
        if key is None:
            meta = child.get("metadata") or {}
            candidate = (str(meta.get("namespace")), str(meta.get("name")))
            key = candidate if self.cache.labserver(candidate) is not None else None
        if key is not None:
            await self.enqueue(key)

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start everything, or nothing: a failure (a port in use) undoes what was started."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        await self.pool.start()
        if self.settings.resync_seconds > 0:
            self._resync_task = asyncio.create_task(self._resync_forever(), name="labop-resync")
        s = self.settings
        if s.metrics_port:
            metrics = make_metrics_app(self.registry)
            self._listeners.append(await serve(metrics, s.bind_address, s.metrics_port))
        if s.health_port:
            health = make_health_app(
                # Ready once the workers run: kopf itself holds every handler back until each
                # watched kind was listed once, so no key is reconciled from a partial cache.
                lambda: self.pool.running,
                lambda: self.pool.running,
            )
            self._listeners.append(await serve(health, s.bind_address, s.health_port))
        log.info(
            "controller started workers=%d queue_size=%d resync_seconds=%g ports=%s",
            s.workers,
            s.queue_size,
            s.resync_seconds,
            [lst.port for lst in self._listeners],
        )

    async def stop(self) -> None:
        if self._resync_task is not None:
            self._resync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resync_task
        await self.pool.stop(timeout=self.settings.shutdown_timeout)
        for listener in self._listeners:
            await listener.runner.cleanup()
        self.api.close()
        log.info("controller stopped")

    async def _resync_forever(self) -> None:
        await self.primed.wait()
        while True:
            await asyncio.sleep(self.settings.resync_seconds)
            self.resync()

    def resync(self) -> int:
        """Re-add every cached LabServer without waiting; returns how many did not fit."""
        skipped = 0
        for key in self.cache.labserver_keys():
            try:
                self.queue.add_nowait(key)
            except asyncio.QueueFull:
                skipped += 1
        if skipped:
            log.warning("resync skipped keys=%d reason=queue-full", skipped)
        return skipped

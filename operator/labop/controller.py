"""The LabServer controller: the runtime's controller for LabServers, plus the operator's endpoints.

Role: the object that exists for the operator's lifetime. The runtime (``labop.runtime``) does
the queueing, the workers and the resync; this module says what to reconcile (LabServers, with
the Deployments and Services they own) and with what (``Reconciler``), and serves ``/metrics``,
``/healthz`` and ``/readyz``. Child events map to the owner's key, and a same-named child no
LabServer controls maps to the LabServer of that name (so a ChildConflict clears as soon as
the stranger goes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from labkit.logs import log_event
from labop.cache import Cache
from labop.kubeapi import KubeApiLike
from labop.monitoring import Listener, make_health_app, make_metrics_app, serve
from labop.naming import GROUP, KIND
from labop.reconciler import Reconciler
from labop.recorder import EventRecorder
from labop.runtime import ControllerBuilder, Key
from labop.settings import OperatorSettings

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
        reconciler = Reconciler(
            cache,
            api,
            EventRecorder(api),
            default_image=settings.default_image,
            reapply_seconds=settings.resync_seconds or 300.0,
        )
        self.runtime = (
            ControllerBuilder(NAME)
            .for_(GROUP, KIND, namesakes=True)
            .owns("apps", "Deployment")
            .owns("", "Service")
            .with_options(
                workers=settings.workers,
                queue_size=settings.queue_size,
                resync_seconds=settings.resync_seconds,
                shutdown_timeout=settings.shutdown_timeout,
                registry=self.registry,
                logger=logging.getLogger("labop.workers"),
            )
            .complete(
                reconciler.reconcile,
                primary_keys=cache.labserver_keys,
                primary_exists=lambda key: cache.labserver(key) is not None,
            )
        )
        self.queue = self.runtime.queue
        self.pool = self.runtime.pool
        self.primed = self.runtime.primed
        self._listeners: list[Listener] = []

    # --- producers (kopf handlers) --------------------------------------------------------

    async def enqueue(self, key: Key) -> None:
        """Backpressure on purpose: a full queue parks this kopf handler (see workqueue's docstring)."""
        await self.runtime.enqueue(key)

    async def enqueue_owner(self, child: Mapping[str, Any]) -> None:
        """A Deployment's or Service's event: its controlling LabServer's key, if it has one."""
        await self.runtime.enqueue_owner(child)

    def resync(self) -> int:
        """Re-add every cached LabServer without waiting; returns how many did not fit."""
        return self.runtime.resync()

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start everything, or nothing: a failure (a port in use) undoes what was started."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        await self.runtime.start()
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
        log_event(
            log,
            "controller started",
            controller=NAME,
            workers=s.workers,
            queue_size=s.queue_size,
            resync_seconds=s.resync_seconds,
            ports=",".join(str(lst.port) for lst in self._listeners),
        )

    async def stop(self) -> None:
        await self.runtime.stop()
        for listener in self._listeners:
            await listener.runner.cleanup()
        self.api.close()
        log_event(log, "controller stopped", controller=NAME)

    @property
    def _resync_task(self) -> asyncio.Task[None] | None:
        return self.runtime.resync_task

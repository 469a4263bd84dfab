"""The LabServer controller: the runtime's controller for LabServers, plus the operator's endpoints.

Role: the object that exists for the operator's lifetime. The runtime (``labop.runtime``) does
the queueing, the workers and the resync; this module says what to reconcile (LabServers, with
the Deployments and Services they own) and with what (``Reconciler``), and serves ``/metrics``,
``/healthz`` and ``/readyz``. Child events map to the owner's key, and a same-named child no
LabServer controls maps to the LabServer of that name (so a ChildConflict clears as soon as
the stranger goes). With leader election every replica watches and caches, but only the one
holding the Lease runs the workers; keys reaching a standby are dropped (its cache keeps the
objects, and becoming leader enqueues every cached LabServer, at low priority like any resync:
all of them, none skipped, behind whatever new work arrives meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, GCCollector, PlatformCollector, ProcessCollector

from labkit.logs import log_event
from labop.cache import Cache
from labop.kubeapi import KubeApiLike
from labop.memory import IdleCollector
from labop.monitoring import Listener, make_health_app, make_metrics_app, serve
from labop.naming import GROUP, KIND
from labop.reconciler import Reconciler
from labop.recorder import NORMAL, EventRecorder
from labop.runtime import ControllerBuilder, Key, Priority, event_priority, key_of
from labop.runtime.leaderelection import ElectionConfig, LeaderElector, LeaseClient, default_identity
from labop.settings import OperatorSettings, election_namespace

NAME = "labserver"
SYNC_REPORT_SECONDS = 60.0  # a WARNING this often while the caches are not synced
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
        *,
        lease_client: LeaseClient | None = None,
        identity: str = "",
        exit_process: Callable[[int], None] = os._exit,
    ) -> None:
        """With ``lease_client`` (and ``settings.leader_elect``), the workers run only while this
        replica leads; on a lost lease it stops them and calls ``exit_process(1)``."""
        self.settings = settings
        self.cache = cache
        self.api = api
        self.registry = registry or new_registry()
        identity = identity or default_identity()
        # Events in the background: a reconcile never waits for one (see labop.recorder).
        self.recorder = EventRecorder(api, instance=identity, background=True)
        reconciler = Reconciler(
            cache,
            api,
            self.recorder,
            default_image=settings.default_image,
            field_manager=settings.field_manager,
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
        self._listeners: list[Listener] = []
        self._exit = exit_process
        self._started = False
        self.elector: LeaderElector | None = None
        self._election: asyncio.Task[None] | None = None
        self._starter: asyncio.Task[None] | None = None
        self.sync_report_seconds = SYNC_REPORT_SECONDS
        self._idle_collector: asyncio.Task[None] | None = None
        if settings.leader_elect and lease_client is not None:
            self.elector = self._new_elector(lease_client, identity)

    # --- leader election --------------------------------------------------------------------

    def _new_elector(self, client: LeaseClient, identity: str) -> LeaderElector:
        s = self.settings
        config = ElectionConfig(
            name=s.leader_election_id,
            identity=identity,
            lease_duration=s.lease_duration,
            renew_deadline=s.renew_deadline,
            retry_period=s.retry_period,
        )
        self._master = Gauge(
            "leader_election_master_status",
            "1 if this replica leads the named lease, else 0 (client-go's metric)",
            ["name"],
            registry=self.registry,
        ).labels(name=config.name)
        self._master.set(0)
        return LeaderElector(
            config,
            client,
            on_started_leading=self._started_leading,
            on_stopped_leading=self._stopped_leading,
            on_new_leader=lambda holder: log_event(log, "leader observed", lease=config.name, leader=holder),
        )

    @property
    def leading(self) -> bool:
        """True without leader election; else whether this replica holds the lease."""
        return self.elector is None or self.elector.leading

    def fence(self) -> float:
        """For ``KubeApi``: seconds a write may take, or LeaseLost (see ``leaderelection``)."""
        return float("inf") if self.elector is None else self.elector.fence()

    async def _started_leading(self) -> None:
        self._master.set(1)
        await self.runtime.start()
        keys = self.runtime.resync()  # every cached LabServer, low priority: the standby's cache is warm
        log_event(log, "leading: workers started", controller=NAME, resync_keys=keys)
        await self._lease_event("became leader")

    async def _stopped_leading(self) -> None:
        """Stop at once, within what is left of the lease, then exit non-zero (see README)."""
        self._master.set(0)
        assert self.elector is not None
        await self.runtime.stop(timeout=self.elector.margin())
        log_event(log, "lease lost: exiting", logging.ERROR, controller=NAME, exit_code=1)
        self._exit(1)

    async def _lease_event(self, message: str) -> None:
        assert self.elector is not None
        name, identity = self.elector.config.name, self.elector.config.identity
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": self.lease_namespace},
        }
        await self.recorder.record(lease, NORMAL, "LeaderElection", f"{identity} {message}")

    @property
    def lease_namespace(self) -> str:
        return election_namespace(self.settings)

    def _healthy(self) -> bool:
        if self._starting():
            return True  # waiting for the caches: a long relist is not a reason to be restarted
        if self.elector is None:
            return self.pool.running
        election_alive = self._election is not None and not self._election.done()
        return election_alive and (not self.elector.leading or self.pool.running)

    def _starting(self) -> bool:
        return self._starter is not None and not self._starter.done()

    def _busy(self) -> bool:
        """Keys waiting or in a worker: not the moment for a full garbage collection."""
        return len(self.queue) > 0 or self.queue.processing_count > 0

    def _ready(self) -> bool:
        # Once the caches are synced and the workers run; a standby once synced: it watches
        # and caches, it only does not lead (README).
        if self.elector is None:
            return self.pool.running
        return self._started and self.cache.sync.synced.is_set()

    # --- producers (kopf handlers) --------------------------------------------------------

    def labserver_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A LabServer's watch event: into the store, then its key into the queue."""
        self.cache.labservers.apply(event_type, body)
        self.enqueue(key_of(body), event_priority(event_type, body))

    def deployment_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        self.cache.deployments.apply(event_type, body)
        self.enqueue_owner(body, event_priority(event_type, body, owned=True))

    def service_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        self.cache.services.apply(event_type, body)
        self.enqueue_owner(body, event_priority(event_type, body, owned=True))

    def enqueue(self, key: Key, priority: Priority = Priority.NORMAL) -> None:
        """Never waits: a new normal key that finds the queue full is parked in it, in order
        (``WorkQueue.admit``). Why no backpressure here: kopf cannot take it. A handler that
        waits holds its kopf worker while kopf goes on reading the watch and keeps every later
        event, as parsed JSON, in queues of its own without bound: at 3,000 LabServers created at
        once the operator's RSS per LabServer was 27 KiB with waiting handlers and 12 KiB without
        (BENCHMARKS.md). A parked key costs a few bytes, one per object at most (the queue
        dedupes), and the store already holds the object."""
        if self.leading:  # a standby drops keys: its cache has them, and becoming leader resyncs
            self.runtime.enqueue_nowait(key, priority)

    def enqueue_owner(self, child: Mapping[str, Any], priority: Priority = Priority.NORMAL) -> None:
        """A Deployment's or Service's event: its controlling LabServer's key, if it has one."""
        key = self.runtime.owner_of(child)
        if key is not None:
            self.enqueue(key, priority)

    def resync(self) -> int:
        """Re-add every cached LabServer at low priority, none skipped; returns how many."""
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
        # Not awaited: kopf starts its watchers (which fill the caches) only after the startup
        # handler that called us returns.
        self._starter = asyncio.create_task(self._start_when_synced(), name=f"{NAME}-start")
        s = self.settings
        if s.metrics_port:
            metrics = make_metrics_app(self.registry)
            self._listeners.append(await serve(metrics, s.bind_address, s.metrics_port))
        if s.health_port:
            # Ready once the caches are synced and the workers run (a standby: once synced).
            health = make_health_app(self._healthy, self._ready)
            self._listeners.append(await serve(health, s.bind_address, s.health_port))
        log_event(
            log,
            "controller started",
            controller=NAME,
            workers=s.workers,
            queue_size=s.queue_size,
            resync_seconds=s.resync_seconds,
            ports=",".join(str(lst.port) for lst in self._listeners),
            leader_elect=self.elector is not None,
        )
        collector = IdleCollector(self._busy)
        self._idle_collector = asyncio.create_task(collector.run(), name=f"{NAME}-idle-collector")
        self._started = True

    async def _start_when_synced(self) -> None:
        """WaitForCacheSync: no worker (and no candidate for the lease) before every store holds
        its kind's initial listing, or a reconcile would take a child still unlisted for one to
        create, and a restart would write (see ``labop.runtime.store``). A sync that takes long
        says so every ``SYNC_REPORT_SECONDS`` (a kind that cannot be listed, e.g. forbidden by
        RBAC, leaves kopf retrying and the operator unready: a person must look)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        sync = self.cache.sync
        while not sync.synced.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sync.synced.wait(), timeout=self.sync_report_seconds)
            if not sync.synced.is_set():
                log_event(
                    log,
                    "waiting for the caches to sync",
                    logging.WARNING,
                    controller=NAME,
                    unsynced=",".join(sync.unsynced()) or "-",
                    pending=sync.pending(),
                    seconds=round(loop.time() - started),
                )
        log_event(
            log,
            "caches synced",
            controller=NAME,
            labservers=len(self.cache.labservers),
            deployments=len(self.cache.deployments),
            services=len(self.cache.services),
            seconds=round(loop.time() - started, 3),
        )
        try:
            if self.elector is None:
                await self.runtime.start()
            else:
                self._election = asyncio.create_task(self.elector.run(), name=f"{NAME}-election")
        except Exception as err:  # a bug: /healthz fails from now on, and this says why
            log_event(log, "start after the sync failed", logging.ERROR, exc_info=err, controller=NAME)
            raise

    async def stop(self) -> None:
        """Drain the workers (still renewing the lease meanwhile), then release the lease."""
        if self._starter is not None:
            self._starter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starter
        if self._idle_collector is not None:
            self._idle_collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._idle_collector
        await self.runtime.stop()
        # The Events the workers queued, while the lease (if any) still fences our writes.
        await self.recorder.aclose()
        if self._election is not None:
            self._election.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._election
        if self.elector is not None and await self.elector.release():
            self._master.set(0)
        for listener in self._listeners:
            await listener.runner.cleanup()
        await self.api.aclose()
        log_event(log, "controller stopped", controller=NAME)

    @property
    def _resync_task(self) -> asyncio.Task[None] | None:
        return self.runtime.resync_task

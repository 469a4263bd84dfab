"""labop.controller: events into the stores and keys (For/Owns), the resync, waiting for the
caches' sync, and the lifecycle.

The Controller gets a fake API, a synced cache and its own CollectorRegistry; both ports are
0 (off), so no socket is opened here (the endpoints are tested in test_monitoring.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from tests.support.caches import a_synced_cache, list_into
from tests.support.fakes import FakeApi, FakeLeases
from tests.unit.factories import a_deployment, a_labserver, a_service

from labop.cache import DEPLOYMENTS, LABSERVERS, SERVICES, Cache, Key
from labop.controller import Controller
from labop.runtime import Priority
from labop.runtime.leaderelection import LeaseLost, LeaseRecord
from labop.settings import OperatorSettings

pytestmark = pytest.mark.timeout(10)


def quiet_settings(**overrides: Any) -> OperatorSettings:
    """No ports, no periodic resync: nothing runs unless the test asks."""
    return OperatorSettings(**{"metrics_port": 0, "health_port": 0, "resync_seconds": 0, **overrides})


class Setup:
    """A Controller over a synced cache and a FakeApi whose applies come back as watch events."""

    def __init__(self, cache: Cache | None = None, **settings: Any) -> None:
        self.cache = cache or a_synced_cache()
        self.api = FakeApi()
        self.registry = CollectorRegistry()
        self.controller = Controller(quiet_settings(**settings), self.cache, self.api, registry=self.registry)
        self.api.watchers.append(self.watch_event)

    def watch_event(self, event_type: str, child: dict[str, Any]) -> None:
        """An applied child's watch event, into the controller as kopf would hand it over."""
        if child["kind"] == "Deployment":
            self.controller.deployment_event(event_type, child)
        else:
            self.controller.service_event(event_type, child)

    def cache_labserver(self, name: str, namespace: str = "lab") -> dict[str, Any]:
        ls = a_labserver(name, namespace=namespace)
        self.cache.labservers.apply("ADDED", ls)
        return ls


async def drain(setup: Setup) -> list[Key]:
    """The keys waiting in the queue, in order, taken out without any worker."""
    queue = setup.controller.queue
    keys: list[Key] = []
    while len(queue):
        key = await queue.get()
        queue.done(key)
        keys.append(key)
    return keys


@pytest.fixture
def setup() -> Setup:
    return Setup()


# --------------------------------------------------------------------------- producers


async def test_a_labserver_event_enqueues_its_key(setup: Setup) -> None:
    setup.controller.enqueue(("lab", "hello"))
    assert await drain(setup) == [("lab", "hello")]


async def test_a_childs_event_enqueues_the_key_of_the_labserver_that_controls_it(setup: Setup) -> None:
    owner = a_labserver("owner", namespace="team")
    child = a_deployment(owner)
    child["metadata"]["name"] = "differently-named"
    setup.controller.enqueue_owner(child)
    assert await drain(setup) == [("team", "owner")]


async def test_events_of_both_children_of_one_labserver_become_one_key(setup: Setup) -> None:
    ls = a_labserver()
    setup.controller.enqueue_owner(a_deployment(ls))
    setup.controller.enqueue_owner(a_service(ls))
    assert await drain(setup) == [("lab", "hello")]


async def test_a_same_named_stranger_maps_to_the_cached_labserver_of_that_name(setup: Setup) -> None:
    setup.cache_labserver("taken")
    stranger = {"metadata": {"name": "taken", "namespace": "lab", "ownerReferences": []}}
    setup.controller.enqueue_owner(stranger)
    assert await drain(setup) == [("lab", "taken")]


async def test_a_stranger_with_no_cached_labserver_of_its_name_is_ignored(setup: Setup) -> None:
    setup.cache_labserver("taken", namespace="other-namespace")
    stranger = {"metadata": {"name": "taken", "namespace": "lab"}}
    setup.controller.enqueue_owner(stranger)
    assert await drain(setup) == []


async def test_a_child_controlled_by_something_else_maps_by_name_only_if_cached(setup: Setup) -> None:
    replica_set_ref = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "rs",
        "uid": "u",
        "controller": True,
    }
    child = {"metadata": {"name": "web", "namespace": "lab", "ownerReferences": [replica_set_ref]}}
    setup.controller.enqueue_owner(child)
    assert await drain(setup) == []
    setup.cache_labserver("web")
    setup.controller.enqueue_owner(child)
    assert await drain(setup) == [("lab", "web")]


# --------------------------------------------------------------------------- watch events


def an_observed_labserver(generation: int, observed: int | None) -> dict[str, Any]:
    ls = a_labserver("web", namespace="team")
    ls["metadata"]["generation"] = generation
    if observed is not None:
        ls["status"] = {"observedGeneration": observed}
    return ls


async def test_a_labserver_event_goes_into_the_store_before_its_key_into_the_queue(setup: Setup) -> None:
    setup.controller.labserver_event("ADDED", a_labserver("web", namespace="team", replicas=3))
    cached = setup.cache.labserver(("team", "web"))
    assert cached is not None and cached["spec"]["replicas"] == 3
    assert await drain(setup) == [("team", "web")]


async def test_a_deleted_labserver_leaves_the_store_and_its_key_is_still_enqueued(setup: Setup) -> None:
    ls = setup.cache_labserver("gone")
    setup.controller.labserver_event("DELETED", ls)
    assert setup.cache.labserver(("lab", "gone")) is None
    assert await drain(setup) == [("lab", "gone")]


async def test_child_events_go_into_their_own_stores_and_map_to_the_owner(setup: Setup) -> None:
    ls = a_labserver("web")
    setup.controller.deployment_event(None, a_deployment(ls))
    setup.controller.service_event("MODIFIED", a_service(ls))
    assert setup.cache.deployment(("lab", "web")) is not None
    assert setup.cache.service(("lab", "web")) is not None
    assert await drain(setup) == [("lab", "web")]


@pytest.mark.parametrize(
    ("event_type", "generation", "observed", "priority"),
    [
        (None, 3, 3, Priority.LOW),  # listed after a start, handled already
        (None, 3, 2, Priority.NORMAL),  # listed, edited while the operator was down
        (None, 1, None, Priority.NORMAL),  # listed, created while the operator was down
        ("ADDED", 1, None, Priority.NORMAL),
        ("MODIFIED", 3, 3, Priority.LOW),  # our own status write, a label edit
        ("MODIFIED", 4, 3, Priority.NORMAL),  # a spec change
        ("DELETED", 3, 3, Priority.NORMAL),
    ],
)
async def test_a_labserver_event_is_low_priority_only_when_its_spec_was_handled_already(
    setup: Setup, event_type: str | None, generation: int, observed: int | None, priority: Priority
) -> None:
    setup.controller.labserver_event(event_type, an_observed_labserver(generation, observed))
    assert setup.controller.queue.low_count == (1 if priority is Priority.LOW else 0)
    assert len(setup.controller.queue) == 1


@pytest.mark.parametrize(
    ("event_type", "priority"),
    [
        (None, Priority.LOW),
        ("ADDED", Priority.NORMAL),
        ("MODIFIED", Priority.NORMAL),
        ("DELETED", Priority.NORMAL),
    ],
)
async def test_a_child_event_is_low_priority_only_in_the_initial_listing(
    setup: Setup, event_type: str | None, priority: Priority
) -> None:
    setup.controller.deployment_event(event_type, a_deployment(a_labserver()))
    assert setup.controller.queue.low_count == (1 if priority is Priority.LOW else 0)
    assert len(setup.controller.queue) == 1


# --------------------------------------------------------------------------- resync


async def test_a_resync_re_adds_every_cached_labserver(setup: Setup) -> None:
    for name in ("a", "b", "c"):
        setup.cache_labserver(name)
    assert setup.controller.resync() == 3
    assert setup.controller.queue.low_count == 3
    assert sorted(await drain(setup)) == [("lab", "a"), ("lab", "b"), ("lab", "c")]


async def test_a_resync_counts_keys_already_waiting_and_queues_each_once() -> None:
    setup = Setup(queue_size=2)
    setup.cache_labserver("a")
    setup.cache_labserver("b")
    setup.controller.enqueue(("lab", "a"))
    assert setup.controller.resync() == 2
    assert sorted(await drain(setup)) == [("lab", "a"), ("lab", "b")]


async def test_a_resync_into_a_full_queue_reaches_every_key_and_logs_no_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    setup = Setup(queue_size=2)
    for name in ("a", "b", "c", "d", "e"):
        setup.cache_labserver(name)
    setup.controller.enqueue(("lab", "x"))
    setup.controller.enqueue(("lab", "y"))  # the normal lane is full
    assert setup.controller.resync() == 5
    assert len(await drain(setup)) == 7
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_resync_never_waits_so_it_works_from_plain_sync_code() -> None:
    setup = Setup(queue_size=1)
    setup.cache_labserver("a")
    setup.cache_labserver("b")
    assert setup.controller.resync() == 2
    assert len(setup.controller.queue) == 2


async def test_a_resync_of_an_empty_cache_adds_nothing(setup: Setup) -> None:
    assert setup.controller.resync() == 0
    assert len(setup.controller.queue) == 0


async def test_a_new_labserver_goes_before_the_keys_of_a_resync(setup: Setup) -> None:
    for name in ("a", "b", "c"):
        setup.cache_labserver(name)
    setup.controller.resync()
    setup.controller.enqueue(("lab", "new"))
    assert (await drain(setup))[0] == ("lab", "new")


async def test_a_childs_event_at_normal_priority_moves_its_resynced_owner_up(setup: Setup) -> None:
    for name in ("a", "b", "c"):
        setup.cache_labserver(name)
    setup.controller.resync()
    setup.controller.enqueue_owner(a_deployment(a_labserver("c")), Priority.NORMAL)
    assert await drain(setup) == [("lab", "c"), ("lab", "a"), ("lab", "b")]


async def test_a_childs_event_at_low_priority_stays_behind_new_work(setup: Setup) -> None:
    setup.controller.enqueue_owner(a_deployment(a_labserver("listed")), Priority.LOW)
    setup.controller.enqueue(("lab", "new"))
    assert await drain(setup) == [("lab", "new"), ("lab", "listed")]


# --------------------------------------------------------------------------- lifecycle


@pytest.fixture
async def started() -> AsyncIterator[Setup]:
    setup = Setup(workers=1)
    await setup.controller.start()
    await until(lambda: setup.controller.pool.running)
    yield setup
    await setup.controller.stop()


async def test_the_workers_start_only_once_every_store_holds_its_initial_listing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="labop.controller")
    setup = Setup(cache=Cache())
    await setup.controller.start()
    try:
        list_into(setup.cache, LABSERVERS, [a_labserver("listed")])
        list_into(setup.cache, DEPLOYMENTS)
        await asyncio.sleep(0.05)  # let the starter look: nothing may start yet
        assert not setup.controller.pool.running
        assert not setup.controller._ready()
        assert setup.controller._healthy(), "waiting for the caches is no reason for a restart"
        list_into(setup.cache, SERVICES)
        await until(lambda: setup.controller.pool.running)
        assert setup.controller._ready()
    finally:
        await setup.controller.stop()
    assert "caches synced controller=labserver labservers=1 deployments=0 services=0" in caplog.text


async def test_a_started_controller_runs_its_workers_and_opens_no_port_when_both_are_0(
    started: Setup,
) -> None:
    assert started.controller.pool.running
    assert started.controller._listeners == []


async def test_a_started_controller_reconciles_an_enqueued_key(started: Setup) -> None:
    started.cache_labserver("hello")
    started.controller.enqueue(("lab", "hello"))
    # A ceiling for a slow machine, not a timing check: the status write is the pass's last step.
    await asyncio.wait_for(started.api.status_written.wait(), timeout=5)
    assert started.api.applied_kinds == ["Deployment", "Service"]
    (status,) = started.api.statuses
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"


async def test_stopping_the_controller_stops_the_workers_and_closes_the_api() -> None:
    setup = Setup()
    await setup.controller.start()
    await setup.controller.stop()
    assert not setup.controller.pool.running
    assert setup.api.closed


async def test_a_periodic_resync_runs_only_when_its_period_is_positive() -> None:
    off, on = Setup(resync_seconds=0), Setup(resync_seconds=3600)
    for setup in (off, on):
        await setup.controller.start()
        await until(lambda: setup.controller.pool.running)  # noqa: B023 - awaited in the loop
    try:
        assert off.controller._resync_task is None
        assert on.controller._resync_task is not None and not on.controller._resync_task.done()
    finally:
        for setup in (off, on):
            await setup.controller.stop()
    assert on.controller._resync_task.cancelled()


async def test_the_controllers_metrics_go_to_the_registry_it_was_given(started: Setup) -> None:
    names = {metric.name for metric in started.registry.collect()}
    assert "workqueue_depth" in names
    assert "controller_runtime_max_concurrent_reconciles" in names
    assert (
        started.registry.get_sample_value(
            "controller_runtime_max_concurrent_reconciles", {"controller": "labserver"}
        )
        == 1
    )


# --- leader election ------------------------------------------------------------------------


class Elected(Setup):
    """A Controller with leader election on an in-memory Lease; exit_process is recorded."""

    def __init__(
        self, leases: FakeLeases | None = None, identity: str = "me", queue_size: int = 1000
    ) -> None:
        self.cache = a_synced_cache()
        self.api = FakeApi()
        self.registry = CollectorRegistry()
        self.leases = leases or FakeLeases()
        self.exits: list[int] = []
        settings = quiet_settings(
            leader_elect=True, lease_duration=4.0, renew_deadline=3.0, retry_period=1.0, queue_size=queue_size
        )
        self.controller = Controller(
            settings,
            self.cache,
            self.api,
            registry=self.registry,
            lease_client=self.leases,
            identity=identity,
            exit_process=self.exits.append,
        )
        self.api.watchers.append(self.watch_event)

    def master_status(self) -> float | None:
        return self.registry.get_sample_value("leader_election_master_status", {"name": "k8s-lab-operator"})


async def until(condition: Callable[[], bool]) -> None:
    """Poll a plain condition on the loop (the module's timeout is the ceiling)."""
    while not condition():  # noqa: ASYNC110 - the conditions are plain attributes, no event to wait on
        await asyncio.sleep(0.01)


def held_by_another() -> FakeLeases:
    """A Lease that another replica holds (and keeps renewing, as far as this one can tell)."""
    leases = FakeLeases()
    leases.record = LeaseRecord(holder="other", lease_duration=4, renew_time="t", resource_version="1")
    return leases


async def test_a_standby_runs_no_workers_and_drops_keys() -> None:
    leases = held_by_another()
    setup = Elected(leases)
    await setup.controller.start()
    try:
        await until(lambda: setup.controller._election is not None)
        setup.controller.enqueue(("lab", "a"))
        assert len(setup.controller.queue) == 0
        assert not setup.controller.pool.running
        assert setup.master_status() == 0
        assert setup.controller._ready() and setup.controller._healthy()
    finally:
        await setup.controller.stop()
    assert leases.record is not None and leases.record.holder == "other"  # a standby releases nothing


async def test_the_new_leader_starts_its_workers_and_enqueues_every_cached_labserver() -> None:
    setup = Elected()
    setup.cache_labserver("a")
    setup.cache_labserver("b")
    await setup.controller.start()
    try:
        await until(lambda: setup.controller.pool.running)
        assert setup.master_status() == 1
        await until(lambda: len([c for c in setup.api.calls if c[0] == "apply_status"]) >= 2)
        # Events go out in the background, a moment later (labop.recorder).
        await until(
            lambda: any(c[0] == "create_event" and "LeaderElection" in str(c) for c in setup.api.calls)
        )
    finally:
        await setup.controller.stop()


async def test_the_new_leader_resyncs_every_cached_labserver_even_past_the_queues_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="labop.controller")
    setup = Elected(queue_size=1)
    names = [f"ls-{index}" for index in range(5)]
    for name in names:
        setup.cache_labserver(name)
    await setup.controller.start()
    try:
        await until(lambda: len([c for c in setup.api.calls if c[0] == "apply_status"]) >= len(names))
    finally:
        await setup.controller.stop()
    assert "leading: workers started controller=labserver resync_keys=5" in caplog.text
    assert setup.registry.get_sample_value("controller_resync_keys_total", {"controller": "labserver"}) == 5
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_graceful_stop_releases_the_lease() -> None:
    setup = Elected()
    await setup.controller.start()
    await until(lambda: setup.controller.pool.running)
    await setup.controller.stop()
    assert setup.leases.record is not None
    assert setup.leases.record.holder == "" and setup.leases.record.lease_duration == 1
    assert setup.master_status() == 0


async def test_a_lost_lease_stops_the_workers_and_exits_1() -> None:
    setup = Elected()
    await setup.controller.start()
    try:
        await until(lambda: setup.controller.pool.running)
        setup.leases.down = True
        await until(lambda: setup.exits == [1])
        assert not setup.controller.pool.running
        assert setup.master_status() == 0
        with pytest.raises(LeaseLost):
            setup.controller.fence()
    finally:
        await setup.controller.stop()


async def test_healthz_fails_when_the_election_task_died() -> None:
    setup = Elected(held_by_another())
    await setup.controller.start()
    try:
        await until(lambda: setup.controller._election is not None)
        assert setup.controller._healthy()
        assert setup.controller._election is not None
        setup.controller._election.cancel()
        await until(lambda: setup.controller._election is not None and setup.controller._election.done())
        assert not setup.controller._healthy()
        assert setup.controller._ready()  # a standby stays ready; liveness restarts it
    finally:
        await setup.controller.stop()


def test_a_full_queue_never_makes_a_handler_wait_and_loses_no_key() -> None:
    # A waiting handler would hold its kopf worker while kopf buffers every later event,
    # unbounded (Controller.enqueue): the keys past the bound are parked, in order, as normal.
    setup = Setup(cache=Cache(), queue_size=1)
    for name in ("first", "second", "third"):
        setup.controller.labserver_event("ADDED", a_labserver(name))  # plain calls: nothing to wait on
    assert setup.controller.queue.parked_count == 2, "the keys past the bound are parked"
    assert setup.controller.queue.low_count == 0, "still new work: not behind a relist"
    assert asyncio.run(drain(setup)) == [("lab", "first"), ("lab", "second"), ("lab", "third")]


async def test_a_sync_that_takes_long_says_which_kinds_it_waits_for(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="labop.controller")
    setup = Setup(cache=Cache())
    setup.controller.sync_report_seconds = 0.01
    list_into(setup.cache, LABSERVERS)
    await setup.controller.start()
    try:
        await until(lambda: "waiting for the caches to sync" in caplog.text)
        warning = next(r for r in caplog.records if r.getMessage().startswith("waiting for the caches"))
        assert warning.levelno == logging.WARNING
        assert "unsynced=deployments.apps,services" in caplog.text
        list_into(setup.cache, DEPLOYMENTS)
        list_into(setup.cache, SERVICES)
        await until(lambda: setup.controller.pool.running)
    finally:
        await setup.controller.stop()

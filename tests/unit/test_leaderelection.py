"""The Lease election's rules, on an in-memory Lease with resourceVersions and a fake clock.

No cluster: ``FakeLeases`` answers get/create/update as the apiserver does (409 on a stale
resourceVersion or an existing name), and the clock moves only when a test advances it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest
from tests.support.fakes import FakeLeases

from labop.runtime.clock import FakeClock, MonotonicClock
from labop.runtime.leaderelection import (
    ElectionConfig,
    LeaderElector,
    LeaseLost,
    LeaseRecord,
    default_identity,
    lease_body,
    record_of,
)


class Replica:
    def __init__(self, name: str, leases: FakeLeases, clock: FakeClock) -> None:
        self.events: list[str] = []
        config = ElectionConfig(
            name="lease", identity=name, lease_duration=15, renew_deadline=10, retry_period=2
        )
        self.elector = LeaderElector(
            config,
            leases,
            on_started_leading=self._started,
            on_stopped_leading=self._stopped,
            clock=clock,
        )
        self.task: asyncio.Task[None] | None = None

    async def _started(self) -> None:
        self.events.append("started")

    async def _stopped(self) -> None:
        self.events.append("stopped")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1000.0)


@pytest.fixture
def leases() -> FakeLeases:
    return FakeLeases()


@contextlib.asynccontextmanager
async def running(*replicas: Replica) -> AsyncIterator[None]:
    for replica in replicas:
        replica.task = asyncio.create_task(replica.elector.run())
    await settle()
    try:
        yield
    finally:
        for replica in replicas:
            assert replica.task is not None
            replica.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replica.task


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def advance(clock: FakeClock, seconds: float, step: float = 0.5) -> None:
    for _ in range(int(seconds / step)):
        clock.advance(step)
        await settle()


async def test_the_first_candidate_creates_the_lease_and_leads(clock: FakeClock, leases: FakeLeases) -> None:
    a = Replica("a", leases, clock)
    async with running(a):
        assert a.events == ["started"]
        assert a.elector.leading
        assert leases.record is not None and leases.record.holder == "a"


async def test_the_holder_renews_every_retry_period(clock: FakeClock, leases: FakeLeases) -> None:
    a = Replica("a", leases, clock)
    async with running(a):
        await advance(clock, 10)
        assert leases.writes.count("a") >= 5
        assert leases.record is not None and leases.record.transitions == 0


async def test_a_standby_never_takes_a_lease_that_is_being_renewed(
    clock: FakeClock, leases: FakeLeases
) -> None:
    a, b = Replica("a", leases, clock), Replica("b", leases, clock)
    async with running(a), running(b):
        await advance(clock, 60)
        assert b.events == [] and not b.elector.leading
        assert "b" not in leases.writes


async def test_a_standby_takes_over_only_after_a_full_lease_duration_without_renewal(
    clock: FakeClock, leases: FakeLeases
) -> None:
    a, b = Replica("a", leases, clock), Replica("b", leases, clock)
    async with running(a):
        pass  # a held it once and stopped renewing (killed): no release
    async with running(b):
        await advance(clock, 12)
        assert b.events == []
        await advance(clock, 6)
        assert b.events == ["started"]
        assert leases.record is not None and leases.record.holder == "b"
        assert leases.record.transitions == 1


async def test_a_released_lease_is_taken_at_the_next_attempt(clock: FakeClock, leases: FakeLeases) -> None:
    a, b = Replica("a", leases, clock), Replica("b", leases, clock)
    async with running(a):
        pass  # run cancelled (the operator stops), then the release
    assert await a.elector.release()
    assert leases.record is not None and leases.record.lease_duration == 1
    async with running(b):
        assert b.events == ["started"]


async def test_a_release_after_a_renewal_that_landed_late_still_releases(
    clock: FakeClock, leases: FakeLeases
) -> None:
    a = Replica("a", leases, clock)
    async with running(a):
        pass
    assert leases.record is not None
    # A renewal cancelled by the stop reached the apiserver anyway: the version moved on.
    leases.record = replace(leases.record, renew_time="later")
    leases.version += 1
    leases.record = replace(leases.record, resource_version=str(leases.version))
    assert await a.elector.release()
    assert leases.record.holder == "" and leases.record.lease_duration == 1


async def test_a_release_never_gives_up_a_lease_someone_else_took_meanwhile(
    clock: FakeClock, leases: FakeLeases
) -> None:
    a = Replica("a", leases, clock)
    async with running(a):
        pass
    assert leases.record is not None
    leases.version += 1
    leases.record = replace(leases.record, holder="b", resource_version=str(leases.version))
    assert not await a.elector.release()
    assert leases.record.holder == "b"


async def test_the_leader_stops_when_renewal_fails_until_the_renew_deadline(
    clock: FakeClock, leases: FakeLeases
) -> None:
    a = Replica("a", leases, clock)
    async with running(a):
        leases.down = True
        await advance(clock, 8)
        assert a.events == ["started"]
        await advance(clock, 6)
        assert a.events == ["started", "stopped"]
        assert not a.elector.leading


async def test_the_fence_closes_at_the_renew_deadline_before_the_lease_can_expire(
    clock: FakeClock, leases: FakeLeases
) -> None:
    a = Replica("a", leases, clock)
    async with running(a):
        assert 14 < a.elector.fence() <= 15
        leases.down = True
        clock.advance(9.5)  # no renewal can have happened: nothing ran in between
        assert 0 < a.elector.fence() <= 6
        clock.advance(1)
        with pytest.raises(LeaseLost):
            a.elector.fence()


async def test_a_candidate_is_fenced(clock: FakeClock, leases: FakeLeases) -> None:
    a = Replica("a", leases, clock)
    with pytest.raises(LeaseLost):
        a.elector.fence()


async def test_the_leader_stops_when_another_takes_the_lease(clock: FakeClock, leases: FakeLeases) -> None:
    a = Replica("a", leases, clock)
    async with running(a):
        assert leases.record is not None
        await leases.update(replace(leases.record, holder="intruder"))
        await advance(clock, 2.5)
        assert a.events == ["started", "stopped"]


async def test_losing_a_create_race_is_not_leading(clock: FakeClock, leases: FakeLeases) -> None:
    a = Replica("a", leases, clock)
    original_get = leases.get

    async def get_then_lose() -> LeaseRecord | None:
        seen = await original_get()
        if leases.record is None:
            leases._store(LeaseRecord(holder="other", lease_duration=15, renew_time="t1"))
        return seen

    leases.get = get_then_lose  # type: ignore[method-assign]
    async with running(a):
        assert a.events == [] and leases.record is not None and leases.record.holder == "other"


def test_the_timings_must_leave_a_margin() -> None:
    with pytest.raises(ValueError):
        ElectionConfig(name="l", identity="i", lease_duration=10, renew_deadline=10, retry_period=2)
    with pytest.raises(ValueError):
        ElectionConfig(name="l", identity="i", lease_duration=15, renew_deadline=2, retry_period=2)


def test_the_identity_is_the_pod_name_else_host_and_a_random_suffix() -> None:
    assert default_identity({"POD_NAME": "op-1"}) == "op-1"
    first, second = default_identity({}), default_identity({})
    assert first != second


@pytest.fixture
def lease_json() -> Iterator[dict[str, object]]:
    yield {
        "metadata": {"name": "l", "namespace": "ns", "resourceVersion": "7"},
        "spec": {
            "holderIdentity": "a",
            "leaseDurationSeconds": 15,
            "renewTime": "2026-01-01T00:00:00.000000Z",
            "acquireTime": "2026-01-01T00:00:00.000000Z",
            "leaseTransitions": 3,
        },
    }


def test_a_lease_round_trips_through_its_record(lease_json: dict[str, object]) -> None:
    record = record_of(lease_json)
    assert record.holder == "a" and record.transitions == 3 and record.resource_version == "7"
    body = lease_body("l", "ns", record)
    assert body["metadata"]["resourceVersion"] == "7"
    assert record_of(body) == record


def test_a_released_lease_has_no_holder_field() -> None:
    body = lease_body("l", "ns", LeaseRecord(holder="", lease_duration=1, resource_version="3"))
    assert "holderIdentity" not in body["spec"]
    assert body["spec"]["leaseDurationSeconds"] == 1


async def test_a_renewal_hanging_past_the_renew_deadline_stops_the_leader() -> None:
    leases = FakeLeases()
    a = Replica("a", leases, FakeClock(start=0.0))
    a.elector.config = ElectionConfig(
        name="lease", identity="a", lease_duration=0.4, renew_deadline=0.3, retry_period=0.1
    )
    a.elector._clock = MonotonicClock()  # real time: the hang is real
    hang = asyncio.Event()

    async def hanging_get() -> LeaseRecord | None:
        if leases.record is not None:
            await hang.wait()  # never set: a blackholed connection
        return leases.record

    leases.get = hanging_get  # type: ignore[method-assign]
    task = asyncio.create_task(a.elector.run())
    try:
        await asyncio.wait_for(task, timeout=5)
        assert a.events == ["started", "stopped"]
    finally:
        task.cancel()

"""The runtime Controller's resync: every key each pass, whatever the count, none dropped.

A generic controller (labop.runtime, no LabServer in it) over a list of keys. The 10,000-key test
runs on the real clock with trivial reconciles (nothing is timed: it waits for a count); the
periodic tests drive a FakeClock by hand.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable

import pytest
from prometheus_client import CollectorRegistry

from labop.runtime import ControllerBuilder, Key, Result
from labop.runtime.clock import FakeClock
from labop.runtime.controller import Controller, Options
from labop.runtime.workqueue import LOW, NORMAL, Priority

pytestmark = pytest.mark.timeout(30)


async def settle(turns: int = 40) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


class Recorder:
    """A reconciler that counts the keys it gets, optionally held on a gate."""

    def __init__(self) -> None:
        self.seen: Counter[Key] = Counter()
        self.order: list[Key] = []
        self.gate: asyncio.Event | None = None
        self.reached = asyncio.Event()
        self.expect = 0

    async def __call__(self, key: Key) -> Result | None:
        self.seen[key] += 1
        self.order.append(key)
        if self.gate is not None:
            await self.gate.wait()
        if self.expect and len(self.order) >= self.expect:
            self.reached.set()
        return None


def build(
    recorder: Recorder, keys: Iterable[Key], *, workers: int = 2, **options: object
) -> tuple[Controller, CollectorRegistry]:
    registry = CollectorRegistry()
    cached = list(keys)
    controller = (
        ControllerBuilder("widgets")
        .for_("example.com", "Widget")
        .with_options(workers=workers, registry=registry, **options)
        .complete(recorder, primary_keys=lambda: cached)
    )
    return controller, registry


def counter(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name, {"controller": "widgets"})


def keys(count: int) -> list[Key]:
    return [("ns", f"w{index:05d}") for index in range(count)]


# --------------------------------------------------------------------------- one pass


async def test_a_resync_over_10000_keys_with_the_default_bound_reaches_every_key_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    recorder.expect = 10_000
    controller, registry = build(recorder, keys(10_000))
    assert controller.options.queue_size == 1000, "the default bound"
    await controller.start()
    try:
        assert controller.resync() == 10_000
        await asyncio.wait_for(recorder.reached.wait(), timeout=25)  # a ceiling, not a timing
    finally:
        await controller.stop()
    assert set(recorder.seen) == set(keys(10_000))
    assert set(recorder.seen.values()) == {1}
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert counter(registry, "controller_resync_keys_total") == 10_000
    assert counter(registry, "controller_resync_passes_total") == 1


async def test_new_work_added_during_a_large_resync_is_reconciled_before_the_backlog() -> None:
    recorder = Recorder()
    controller, _ = build(recorder, keys(5_000), workers=1)
    controller.resync()
    await controller.enqueue(("ns", "new"))
    await controller.start()
    try:
        await asyncio.wait_for(_until(lambda: len(recorder.order) >= 2), timeout=5)
    finally:
        await controller.stop()
    assert recorder.order[0] == ("ns", "new")


async def test_a_resync_counts_keys_waiting_or_processing_and_queues_each_once() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    controller, registry = build(recorder, keys(3), workers=1)
    await controller.start()
    try:
        await controller.enqueue(("ns", "w00000"))
        await settle()  # w00000 is being reconciled, held at the gate
        await controller.enqueue(("ns", "w00001"))  # waiting at normal priority
        assert controller.resync() == 3
        assert controller.queue.low_count == 1  # only w00002 was new
        recorder.gate.set()
        await settle(200)
    finally:
        await controller.stop()
    assert recorder.order == [("ns", "w00000"), ("ns", "w00001"), ("ns", "w00002"), ("ns", "w00000")]
    assert counter(registry, "controller_resync_keys_total") == 3


# --------------------------------------------------------------------------- the period


async def test_the_next_pass_starts_a_period_after_the_previous_one_got_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="labop.runtime.controller")
    clock = FakeClock()
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    controller, registry = build(recorder, keys(3), workers=1, resync_seconds=10.0, clock=clock)
    await controller.start()
    try:
        await settle()
        clock.advance(10)
        await settle()
        assert counter(registry, "controller_resync_passes_total") == 1
        assert len(recorder.order) == 1, "one worker, held: two keys of the pass still wait"

        clock.advance(15)  # more than a period later the first pass has not got through
        await settle()
        assert counter(registry, "controller_resync_passes_total") == 1, "no overlapping pass"

        recorder.gate.set()
        await settle(200)
        assert len(recorder.order) == 3
        behind = [r for r in caplog.records if r.getMessage() == "resync done"]
        assert len(behind) == 1 and behind[0].levelno == logging.INFO
        assert "resync done controller=widgets keys=3 seconds=15.000 period=10.000" in caplog.text

        clock.advance(9)
        await settle()
        assert counter(registry, "controller_resync_passes_total") == 1
        clock.advance(1)
        await settle(200)
        assert counter(registry, "controller_resync_passes_total") == 2
        assert counter(registry, "controller_resync_keys_total") == 6
        assert len(recorder.order) == 6
    finally:
        await controller.stop()
    routine = [r for r in caplog.records if r.getMessage() == "resync done"][1]
    assert routine.levelno == logging.DEBUG


async def test_no_periodic_resync_runs_before_the_controller_is_started() -> None:
    clock = FakeClock()
    recorder = Recorder()
    controller, registry = build(recorder, keys(2), resync_seconds=5.0, clock=clock)
    clock.advance(50)
    await settle()
    assert counter(registry, "controller_resync_passes_total") is None or (
        counter(registry, "controller_resync_passes_total") == 0
    )
    assert controller.resync_task is None


# --------------------------------------------------------------------------- priorities of producers


async def test_enqueue_and_enqueue_owner_pass_their_priority_to_the_queue() -> None:
    controller, _ = build(Recorder(), [])
    await controller.enqueue(("ns", "low"), LOW)
    child = {
        "metadata": {
            "name": "c",
            "namespace": "ns",
            "ownerReferences": [
                {"apiVersion": "example.com/v1", "kind": "Widget", "name": "w", "controller": True}
            ],
        }
    }
    await controller.enqueue_owner(child, NORMAL)
    taken: list[tuple[Key, Priority]] = []
    while len(controller.queue):
        taken.append(await controller.queue.get_with_priority())
    assert taken == [(("ns", "w"), NORMAL), (("ns", "low"), LOW)]


def test_options_default_to_no_clock_so_the_queue_runs_on_the_real_one() -> None:
    assert Options().clock is None


async def _until(condition: object) -> None:
    while not condition():  # type: ignore[operator]  # noqa: ASYNC110 - a plain attribute, no event
        await asyncio.sleep(0)


async def test_enqueue_nowait_parks_a_normal_key_that_finds_the_queue_full_and_keeps_its_order() -> None:
    controller, _ = build(Recorder(), [], queue_size=1)
    controller.enqueue_nowait(("ns", "a"))
    controller.enqueue_nowait(("ns", "b"))
    controller.enqueue_nowait(("ns", "listed"), LOW)
    assert (len(controller.queue), controller.queue.parked_count, controller.queue.low_count) == (2, 1, 1)
    taken = []
    for _ in range(3):
        key = await controller.queue.get()
        controller.queue.done(key)
        taken.append(key)
    assert taken == [("ns", "a"), ("ns", "b"), ("ns", "listed")], "the parked key is still new work"

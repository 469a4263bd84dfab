"""Metrics under controller-runtime's names, each test on its own registry (labop.runtime.metrics)."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from labop.runtime import Key, PermanentError, Priority, Result
from labop.runtime.clock import FakeClock
from labop.runtime.metrics import (
    QUEUE_DURATION_BUCKETS,
    RECONCILE_TIME_BUCKETS,
    ControllerMetrics,
    QueueMetrics,
)
from labop.runtime.ratelimit import ItemExponentialFailureRateLimiter
from labop.runtime.workers import WorkerPool
from labop.runtime.workqueue import WorkQueue

pytestmark = pytest.mark.timeout(10)

LABELS = {"name": "labserver", "controller": "labserver"}
NORMAL_DEPTH = {**LABELS, "priority": "normal"}
LOW_DEPTH = {**LABELS, "priority": "low"}


async def settle(turns: int = 30) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


def make_queue(registry: CollectorRegistry, maxsize: int = 10) -> tuple[WorkQueue[str], FakeClock]:
    clock = FakeClock()
    metrics = QueueMetrics(registry, "labserver", clock=clock)
    return WorkQueue(maxsize=maxsize, clock=clock, name="labserver", metrics=metrics), clock


def value(registry: CollectorRegistry, metric: str, /, **labels: str) -> float | None:
    return registry.get_sample_value(metric, labels or LABELS)


# --------------------------------------------------------------------------- work queue


async def test_depth_counts_keys_to_process_and_adds_count_only_new_ones() -> None:
    registry = CollectorRegistry()
    queue, _ = make_queue(registry)
    await queue.add("a")
    await queue.add("a")
    await queue.add("b")
    assert value(registry, "workqueue_depth", **NORMAL_DEPTH) == 2
    assert value(registry, "workqueue_adds_total") == 2
    held = await queue.get()
    assert value(registry, "workqueue_depth", **NORMAL_DEPTH) == 1
    await queue.add(held)  # dirty while processing: one more to do
    assert value(registry, "workqueue_depth", **NORMAL_DEPTH) == 2
    assert value(registry, "workqueue_adds_total") == 3


async def test_depth_is_counted_per_priority_and_a_key_moved_up_is_no_new_add() -> None:
    registry = CollectorRegistry()
    queue, _ = make_queue(registry)
    for key in "abc":
        queue.add_nowait(key, Priority.LOW)
    await queue.add("n")
    assert value(registry, "workqueue_depth", **LOW_DEPTH) == 3
    assert value(registry, "workqueue_depth", **NORMAL_DEPTH) == 1
    await queue.add("b")  # moves up
    assert value(registry, "workqueue_depth", **LOW_DEPTH) == 2
    assert value(registry, "workqueue_depth", **NORMAL_DEPTH) == 2
    assert value(registry, "workqueue_adds_total") == 4
    while len(queue):
        queue.done(await queue.get())
    assert value(registry, "workqueue_depth", **LOW_DEPTH) == 0
    assert value(registry, "workqueue_depth", **NORMAL_DEPTH) == 0


async def test_a_key_processing_and_dirty_is_counted_in_the_lane_it_will_go_to() -> None:
    registry = CollectorRegistry()
    queue, _ = make_queue(registry)
    await queue.add("a")
    held = await queue.get()
    queue.add_nowait(held, Priority.LOW)
    assert value(registry, "workqueue_depth", **LOW_DEPTH) == 1
    await queue.add(held)  # asked for at normal priority too: it will go again as normal
    assert value(registry, "workqueue_depth", **LOW_DEPTH) == 0
    assert value(registry, "workqueue_depth", **NORMAL_DEPTH) == 1
    queue.done(held)
    assert await queue.get_with_priority() == ("a", Priority.NORMAL)
    assert value(registry, "workqueue_depth", **NORMAL_DEPTH) == 0


async def test_queue_and_work_durations_are_measured_on_the_queue_clock() -> None:
    registry = CollectorRegistry()
    queue, clock = make_queue(registry)
    await queue.add("a")
    clock.advance(2)
    key = await queue.get()
    clock.advance(3)
    queue.done(key)
    assert value(registry, "workqueue_queue_duration_seconds_sum") == 2
    assert value(registry, "workqueue_queue_duration_seconds_count") == 1
    assert value(registry, "workqueue_work_duration_seconds_sum") == 3


async def test_in_flight_gauges_are_computed_when_scraped() -> None:
    registry = CollectorRegistry()
    queue, clock = make_queue(registry)
    await queue.add("a")
    await queue.add("b")
    await queue.get()
    clock.advance(1)
    await queue.get()
    clock.advance(3)
    assert value(registry, "workqueue_unfinished_work_seconds") == 4 + 3
    assert value(registry, "workqueue_longest_running_processor_seconds") == 4
    clock.advance(1)  # no queue call in between: the scrape alone sees time pass
    assert value(registry, "workqueue_longest_running_processor_seconds") == 5
    queue.done("a")
    queue.done("b")
    assert value(registry, "workqueue_unfinished_work_seconds") == 0
    assert value(registry, "workqueue_longest_running_processor_seconds") == 0


async def test_every_delayed_add_counts_as_a_retry() -> None:
    registry = CollectorRegistry()
    queue, _ = make_queue(registry)
    queue.add_after("a", 1)
    queue.add_after("a", 2)
    queue.add_rate_limited("b")
    assert value(registry, "workqueue_retries_total") == 3


def test_queue_histograms_use_buckets_from_10_ns_to_1000_s_by_tens() -> None:
    assert QUEUE_DURATION_BUCKETS == (
        1e-8,
        1e-7,
        1e-6,
        1e-5,
        1e-4,
        1e-3,
        1e-2,
        1e-1,
        1.0,
        10.0,
        100.0,
        1000.0,
    )
    registry = CollectorRegistry()
    QueueMetrics(registry, "labserver")
    for name in ("workqueue_queue_duration_seconds", "workqueue_work_duration_seconds"):
        assert value(registry, f"{name}_bucket", le="1e-08", **LABELS) == 0
        assert value(registry, f"{name}_bucket", le="1000.0", **LABELS) == 0
        assert value(registry, f"{name}_bucket", le="+Inf", **LABELS) == 0


def test_the_exposition_has_controller_runtime_names_types_and_labels() -> None:
    registry = CollectorRegistry()
    QueueMetrics(registry, "labserver")
    ControllerMetrics(registry, "labserver")
    text = generate_latest(registry).decode()
    for name, kind in [
        ("workqueue_depth", "gauge"),
        ("workqueue_adds_total", "counter"),
        ("workqueue_retries_total", "counter"),
        ("workqueue_queue_duration_seconds", "histogram"),
        ("workqueue_work_duration_seconds", "histogram"),
        ("workqueue_unfinished_work_seconds", "gauge"),
        ("workqueue_longest_running_processor_seconds", "gauge"),
        ("controller_runtime_reconcile_total", "counter"),
        ("controller_runtime_reconcile_errors_total", "counter"),
        ("controller_runtime_terminal_reconcile_errors_total", "counter"),
        ("controller_runtime_reconcile_panics_total", "counter"),
        ("controller_runtime_reconcile_time_seconds", "histogram"),
        ("controller_runtime_max_concurrent_reconciles", "gauge"),
        ("controller_runtime_active_workers", "gauge"),
        ("controller_resync_keys_total", "counter"),
        ("controller_resync_passes_total", "counter"),
    ]:
        assert f"# TYPE {name} {kind}" in text, name
    assert 'workqueue_depth{controller="labserver",name="labserver",priority="low"} 0.0' in text
    assert 'workqueue_depth{controller="labserver",name="labserver",priority="normal"} 0.0' in text
    assert 'controller_runtime_active_workers{controller="labserver"} 0.0' in text


def test_several_queues_share_a_registry_under_their_own_names() -> None:
    registry = CollectorRegistry()
    first = QueueMetrics(registry, "first")
    second = QueueMetrics(registry, "second")
    first.add("k")
    second.add("k")
    second.add("j")
    assert value(registry, "workqueue_depth", name="first", controller="first", priority="normal") == 1
    assert value(registry, "workqueue_depth", name="second", controller="second", priority="normal") == 2
    text = generate_latest(registry).decode()
    assert text.count("workqueue_unfinished_work_seconds{") == 2


def test_nothing_lands_in_the_global_default_registry() -> None:
    before = set(REGISTRY._names_to_collectors)
    QueueMetrics(CollectorRegistry(), "labserver")
    ControllerMetrics(CollectorRegistry(), "labserver")
    assert set(REGISTRY._names_to_collectors) == before


async def test_a_queue_without_metrics_works_all_the_same() -> None:
    queue: WorkQueue[str] = WorkQueue(maxsize=2, clock=FakeClock())
    await queue.add("a")
    queue.add_after("b", 0)
    queue.done(await queue.get())
    assert len(queue) == 1


# --------------------------------------------------------------------------- controller


def test_reconcile_total_starts_at_zero_for_every_result() -> None:
    registry = CollectorRegistry()
    ControllerMetrics(registry, "labserver")
    for result in ("success", "error", "requeue", "requeue_after"):
        assert (
            value(registry, "controller_runtime_reconcile_total", controller="labserver", result=result) == 0
        )
    for name in (
        "controller_runtime_reconcile_errors_total",
        "controller_runtime_terminal_reconcile_errors_total",
        "controller_runtime_reconcile_panics_total",
        "controller_resync_keys_total",
        "controller_resync_passes_total",
    ):
        assert value(registry, name, controller="labserver") == 0


def test_reconcile_time_uses_controller_runtime_buckets() -> None:
    assert RECONCILE_TIME_BUCKETS[0] == 0.005
    assert RECONCILE_TIME_BUCKETS[-1] == 60.0
    assert len(RECONCILE_TIME_BUCKETS) == 40
    assert list(RECONCILE_TIME_BUCKETS) == sorted(RECONCILE_TIME_BUCKETS)


async def test_the_pool_counts_every_outcome_under_its_result_label() -> None:
    registry = CollectorRegistry()
    clock = FakeClock()
    queue: WorkQueue[Key] = WorkQueue(
        maxsize=10,
        clock=clock,
        metrics=QueueMetrics(registry, "labserver", clock=clock),
        # Long backoffs: the clock this reconcile moves must not fire the retry within the test.
        rate_limiter=ItemExponentialFailureRateLimiter(100.0, 1000.0),
    )
    outcomes: dict[Key, object] = {
        ("ns", "ok"): None,
        ("ns", "later"): Result(requeue_after=60),
        ("ns", "flaky"): RuntimeError("boom"),
        ("ns", "bad"): PermanentError("bad spec"),
        ("ns", "bug"): 42,
    }

    async def reconcile(key: Key) -> Result | None:
        clock.advance(0.5)  # the reconcile "takes" half a second
        outcome = outcomes[key]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[return-value]

    pool = WorkerPool(queue, reconcile, workers=3, metrics=ControllerMetrics(registry, "labserver"))
    await pool.start()
    assert value(registry, "controller_runtime_max_concurrent_reconciles", controller="labserver") == 3
    for key in outcomes:
        await queue.add(key)
    await settle()
    await pool.stop()

    def total(result: str) -> float | None:
        return value(registry, "controller_runtime_reconcile_total", controller="labserver", result=result)

    assert total("success") == 1
    assert total("requeue_after") == 1
    assert total("error") == 3
    assert total("requeue") == 0
    assert value(registry, "controller_runtime_reconcile_errors_total", controller="labserver") == 3
    assert value(registry, "controller_runtime_terminal_reconcile_errors_total", controller="labserver") == 1
    assert value(registry, "controller_runtime_reconcile_panics_total", controller="labserver") == 1
    assert value(registry, "controller_runtime_reconcile_time_seconds_count", controller="labserver") == 5
    assert value(registry, "controller_runtime_reconcile_time_seconds_sum", controller="labserver") == 2.5
    assert value(registry, "controller_runtime_active_workers", controller="labserver") == 0
    assert value(registry, "workqueue_retries_total") == 3  # requeue_after, and the retries of flaky and bug


async def test_active_workers_counts_workers_inside_a_reconcile() -> None:
    registry = CollectorRegistry()
    gate = asyncio.Event()

    async def reconcile(key: Key) -> None:
        await gate.wait()

    queue: WorkQueue[Key] = WorkQueue(maxsize=10, clock=FakeClock())
    pool = WorkerPool(queue, reconcile, workers=4, metrics=ControllerMetrics(registry, "labserver"))
    await pool.start()
    await queue.add(("ns", "a"))
    await queue.add(("ns", "b"))
    await settle()
    assert value(registry, "controller_runtime_active_workers", controller="labserver") == 2
    gate.set()
    await settle()
    assert value(registry, "controller_runtime_active_workers", controller="labserver") == 0
    await pool.stop()

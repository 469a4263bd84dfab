"""WorkerPool: get -> reconcile -> forget | add_rate_limited | add_after -> done (labop.runtime.workers).

Reconcilers here are small async fakes that record calls and can be held on an asyncio.Event;
time is a FakeClock, so backoffs and the stop timeout pass without real sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable

import pytest

from labkit.logs import FieldsFormatter
from labop.runtime import Key, PermanentError, Result, TransientError
from labop.runtime.clock import FakeClock
from labop.runtime.workers import WorkerPool
from labop.runtime.workqueue import LOW, NORMAL, Priority, WorkQueue

pytestmark = pytest.mark.timeout(10)

A: Key = ("ns", "a")
B: Key = ("ns", "b")
C: Key = ("ns", "c")


# The line as the operator writes it in kopf's plain format: the message, then the fields.
_PLAIN = FieldsFormatter(logging.Formatter("%(message)s"), json_lines=False)


def line(record: logging.LogRecord) -> str:
    """The first line: a traceback, when there is one, follows it."""
    return _PLAIN.format(record).splitlines()[0]


async def settle(turns: int = 30) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


class Recorder:
    """A reconciler whose behaviour per call is scripted; records every key it sees."""

    def __init__(self, *outcomes: object) -> None:
        self.calls: list[Key] = []
        self.outcomes = list(outcomes)  # consumed one per call; then plain success
        self.gate: asyncio.Event | None = None
        self.in_flight: set[Key] = set()
        self.overlaps: list[Key] = []

    async def __call__(self, key: Key) -> Result | None:
        if key in self.in_flight:
            self.overlaps.append(key)
        self.in_flight.add(key)
        self.calls.append(key)
        try:
            if self.gate is not None:
                await self.gate.wait()
            outcome = self.outcomes.pop(0) if self.outcomes else None
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome  # type: ignore[return-value]
        finally:
            self.in_flight.discard(key)


def make_pool(
    reconcile: Callable[[Key], Awaitable[Result | None]], *, workers: int = 2, maxsize: int = 10
) -> tuple[WorkerPool, WorkQueue[Key], FakeClock]:
    clock = FakeClock()
    queue: WorkQueue[Key] = WorkQueue(maxsize=maxsize, clock=clock, name="test")
    return WorkerPool(queue, reconcile, workers=workers), queue, clock


async def started_with(
    reconcile: Callable[[Key], Awaitable[Result | None]], key: Key
) -> tuple[WorkerPool, WorkQueue[Key], FakeClock]:
    """A running pool that has taken ``key`` and reconciled it once (or is reconciling it)."""
    pool, queue, clock = make_pool(reconcile)
    await pool.start()
    await queue.add(key)
    await settle()
    return pool, queue, clock


# --------------------------------------------------------------------------- outcomes


async def test_a_successful_reconcile_forgets_the_key() -> None:
    recorder = Recorder(RuntimeError("flaky"))
    pool, queue, clock = await started_with(recorder, A)
    assert queue.num_requeues(A) == 1
    clock.advance(1)
    await settle()
    assert recorder.calls == [A, A]
    assert queue.num_requeues(A) == 0
    await pool.stop()


@pytest.mark.parametrize("result", [None, Result(), Result(requeue_after=0), Result(requeue_after=None)])
async def test_a_result_without_a_delay_means_done(result: Result | None) -> None:
    recorder = Recorder(result)
    pool, queue, clock = await started_with(recorder, A)
    clock.advance(10_000)
    await settle()
    assert recorder.calls == [A]
    assert queue.delayed_count == 0
    await pool.stop()


async def test_a_result_with_requeue_after_reconciles_the_key_again_after_that_delay() -> None:
    recorder = Recorder(RuntimeError("flaky"), Result(requeue_after=30))
    pool, queue, clock = await started_with(recorder, A)
    clock.advance(1)  # past the first backoff: the second call asks for 30 s
    await settle()
    assert recorder.calls == [A, A]
    assert queue.num_requeues(A) == 0, "forgotten: the requeue is not a failure"
    clock.advance(29)
    await settle()
    assert recorder.calls == [A, A]
    clock.advance(1)
    await settle()
    assert recorder.calls == [A, A, A]
    await pool.stop()


async def test_a_permanent_error_is_reported_and_never_retried() -> None:
    recorder = Recorder(PermanentError("spec.listeners: must have 1 to 8 items, got 0"))
    pool, queue, clock = await started_with(recorder, A)
    clock.advance(10_000)
    await settle()
    assert recorder.calls == [A]
    assert queue.num_requeues(A) == 0
    assert queue.delayed_count == 0
    await pool.stop()


async def test_an_ordinary_error_is_retried_with_exponential_backoff() -> None:
    recorder = Recorder(RuntimeError("one"), RuntimeError("two"))
    pool, queue, clock = await started_with(recorder, A)
    assert recorder.calls == [A]
    clock.advance(0.004)
    await settle()
    assert recorder.calls == [A], "not before the first backoff of 5 ms"
    clock.advance(0.001)
    await settle()
    assert recorder.calls == [A, A]
    clock.advance(0.009)
    await settle()
    assert recorder.calls == [A, A], "the second backoff is 10 ms"
    clock.advance(0.001)
    await settle()
    assert recorder.calls == [A, A, A]
    assert queue.num_requeues(A) == 0
    await pool.stop()


@pytest.mark.parametrize(
    "failure",
    [
        ValueError("bad"),
        KeyError("missing"),
        asyncio.CancelledError(),  # stray: raised by the reconciler, not a stop
        GeneratorExit(),  # a BaseException that is not an Exception
    ],
    ids=["value-error", "key-error", "stray-cancel", "base-exception"],
)
async def test_no_failure_of_a_reconcile_kills_a_worker(failure: BaseException) -> None:
    recorder = Recorder(failure)
    pool, queue, _ = make_pool(recorder, workers=1)
    await pool.start()
    await queue.add(A)
    await settle()
    await queue.add(B)
    await settle()
    assert recorder.calls == [A, B]
    assert pool.running
    assert queue.num_requeues(A) == 1
    await pool.stop()


async def test_a_reconcile_returning_something_else_than_a_result_is_an_error() -> None:
    recorder = Recorder("oops")
    pool, queue, _ = make_pool(recorder, workers=1)
    await pool.start()
    await queue.add(A)
    await settle()
    assert queue.num_requeues(A) == 1
    assert pool.running
    await pool.stop()


async def failing(caplog: pytest.LogCaptureFixture, *errors: BaseException) -> WorkerPool:
    """A running pool whose reconciles of A raise ``errors`` one after the other (logs captured)."""
    pool, queue, clock = make_pool(Recorder(*errors))
    caplog.set_level(logging.INFO, logger="labop.workers")
    await pool.start()
    for _ in errors:
        await queue.add(A)  # a retried key is still waiting: this add is then a no-op
        await settle()
        clock.advance(1)  # past any backoff
        await settle()
    return pool


async def test_failures_are_logged_as_key_value_pairs_naming_the_object(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = await failing(caplog, RuntimeError("connection refused"), PermanentError("bad spec"))
    messages = [line(record) for record in caplog.records]
    failed_line, permanent_line = (
        "reconcile failed controller=labserver namespace=ns name=a reconcile_id=(?P<id>[0-9a-f]{8})"
        ' error="RuntimeError: connection refused" requeue_in=0.005 requeues=1',
        "reconcile failed permanently controller=labserver namespace=ns name=a"
        ' reconcile_id=(?P<id>[0-9a-f]{8}) error="PermanentError: bad spec" retry=no',
    )
    failed_match = [m for text in messages if (m := re.fullmatch(failed_line, text))]
    permanent_match = [m for text in messages if (m := re.fullmatch(permanent_line, text))]
    assert len(failed_match) == 1 and len(permanent_match) == 1, messages
    assert failed_match[0]["id"] != permanent_match[0]["id"], "each reconcile has its own id"
    failed = next(record for record in caplog.records if "requeue_in" in line(record))
    assert failed.exc_info is not None, "an unexpected error carries its traceback"
    await pool.stop()


async def test_log_levels_say_who_must_act(caplog: pytest.LogCaptureFixture) -> None:
    pool = await failing(
        caplog, TransientError("503 unavailable"), PermanentError("bad spec"), RuntimeError("bug")
    )
    by_error = {
        line(record).split("error=")[1].split(" ")[0]: record
        for record in caplog.records
        if "error=" in line(record)
    }
    transient, permanent, bug = (
        by_error[f'"{kind}:'] for kind in ("TransientError", "PermanentError", "RuntimeError")
    )
    # An answer we understand: one line, no traceback; bad input: told to its owner, not to admins.
    assert (transient.levelno, transient.exc_info) == (logging.WARNING, None)
    assert (permanent.levelno, permanent.exc_info) == (logging.WARNING, None)
    # Only a failure nobody foresaw is an ERROR with its traceback.
    assert bug.levelno == logging.ERROR and bug.exc_info is not None
    await pool.stop()


async def test_a_requeue_result_comes_back_after_the_rate_limiters_delay_without_an_error() -> None:
    recorder = Recorder(Result(requeue=True))
    pool, queue, clock = await started_with(recorder, A)
    assert recorder.calls == [A]
    assert queue.num_requeues(A) == 1  # rate-limited, so a persistent conflict backs off
    clock.advance(0.005)
    await settle()
    assert recorder.calls == [A, A]
    assert queue.num_requeues(A) == 0  # the plain success that followed forgot it
    await pool.stop()


@pytest.mark.parametrize("priority", [LOW, NORMAL])
@pytest.mark.parametrize(
    "outcome",
    [RuntimeError("bug"), TransientError("503"), Result(requeue=True), Result(requeue_after=5)],
    ids=["error", "transient", "requeue", "requeue_after"],
)
async def test_a_key_comes_back_at_the_priority_it_was_handed_out_with(
    outcome: object, priority: Priority
) -> None:
    recorder = Recorder(outcome)
    pool, queue, clock = make_pool(recorder, workers=1)
    queue.add_nowait(A, priority)
    await pool.start()
    await settle()
    assert recorder.calls == [A]
    recorder.gate = asyncio.Event()  # hold the next key, so the retry stays where we can see it
    await queue.add(B)
    await settle()
    clock.advance(10)  # past the retry's delay
    await settle()
    assert (len(queue), queue.low_count) == (1, 1 if priority is LOW else 0)
    recorder.gate.set()
    await settle()
    await pool.stop()
    assert recorder.calls == [A, B, A]


def test_a_result_refuses_a_negative_or_infinite_delay() -> None:
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="requeue_after"):
            Result(requeue_after=bad)
    assert Result(requeue_after=0.5).requeue_after == 0.5


# --------------------------------------------------------------------------- concurrency


async def test_n_workers_reconcile_n_keys_at_once() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    pool, queue, _ = make_pool(recorder, workers=3)
    await pool.start()
    for key in (A, B, C, ("ns", "d")):
        await queue.add(key)
    await settle()
    assert pool.active_workers == 3
    assert set(pool.in_flight.values()) == {A, B, C}
    assert len(queue) == 1
    recorder.gate.set()
    await settle()
    assert pool.active_workers == 0
    assert len(recorder.calls) == 4
    await pool.stop()


async def test_one_key_is_never_reconciled_by_two_workers_at_once() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    pool, queue, _ = make_pool(recorder, workers=4)
    await pool.start()
    await queue.add(A)
    await settle()
    await queue.add(A)  # an event arrives while A is being reconciled
    await settle()
    assert pool.active_workers == 1
    recorder.gate.set()
    await settle()
    assert recorder.calls == [A, A], "reconciled again after done, to see the new event"
    assert recorder.overlaps == []
    await pool.stop()


# --------------------------------------------------------------------------- lifecycle


async def test_start_twice_is_refused() -> None:
    pool, _, _ = make_pool(Recorder())
    await pool.start()
    with pytest.raises(RuntimeError, match="already started"):
        await pool.start()
    await pool.stop()


async def test_stop_before_start_does_nothing() -> None:
    pool, queue, _ = make_pool(Recorder())
    await pool.stop()
    assert not pool.running
    assert not queue.shutting_down


async def test_stop_lets_reconciles_in_flight_finish_and_takes_no_new_keys() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    pool, queue, _ = make_pool(recorder, workers=1)
    await pool.start()
    await queue.add(A)
    await settle()
    await queue.add(B)
    stopping = asyncio.create_task(pool.stop())
    await settle()
    assert not stopping.done()
    assert not pool.running
    recorder.gate.set()
    await stopping
    assert recorder.calls == [A], "B was waiting: not taken once stop began"
    assert queue.processing_count == 0


async def test_stop_cancels_reconciles_that_outlive_the_timeout_and_logs_their_keys(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()  # never set: a reconcile that hangs
    pool, queue, clock = make_pool(recorder, workers=2)
    await pool.start()
    await queue.add(A)
    await settle()
    stopping = asyncio.create_task(pool.stop(timeout=5))
    await settle()
    clock.advance(4.9)
    await settle()
    assert not stopping.done()
    clock.advance(0.1)
    await stopping
    assert any(
        "reconcile cut by shutdown controller=labserver namespace=ns name=a worker=" in line(record)
        for record in caplog.records
    )
    assert queue.processing_count == 0, "the cut key was still marked done"
    assert pool.active_workers == 0


async def test_stop_releases_producers_blocked_on_a_full_queue() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    pool, queue, _ = make_pool(recorder, workers=1, maxsize=1)
    await pool.start()
    await queue.add(A)
    await settle()
    await queue.add(B)
    producer = asyncio.create_task(queue.add(C))
    await settle()
    assert not producer.done()
    stopping = asyncio.create_task(pool.stop())
    await settle()
    assert producer.done()
    recorder.gate.set()
    await stopping


async def test_a_second_stop_waits_for_the_same_workers() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    pool, queue, _ = make_pool(recorder, workers=1)
    await pool.start()
    await queue.add(A)
    await settle()
    first = asyncio.create_task(pool.stop())
    second = asyncio.create_task(pool.stop())
    await settle()
    assert not second.done()
    recorder.gate.set()
    await asyncio.gather(first, second)


async def test_workers_are_named_after_the_pool() -> None:
    pool, _, _ = make_pool(Recorder(), workers=2)
    await pool.start()
    names = {task.get_name() for task in asyncio.all_tasks()}
    assert {"labserver-worker-0", "labserver-worker-1"} <= names
    assert pool.workers == 2
    await pool.stop()

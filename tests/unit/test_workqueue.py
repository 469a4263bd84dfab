"""WorkQueue: client-go's workqueue contract, the bound, delays and rate limits (labop.runtime.workqueue).

Time is a FakeClock moved by hand; `settle()` only yields to the event loop so that woken tasks
run. No test sleeps for real or asserts on timing.
"""

from __future__ import annotations

import asyncio
import inspect
import random

import pytest
from tests.support.queues import drain_now, make_queue, settle

from labop.runtime.clock import FakeClock, MonotonicClock
from labop.runtime.ratelimit import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    default_controller_rate_limiter,
)
from labop.runtime.workqueue import LOW, QueueShutDown, WorkQueue

pytestmark = pytest.mark.timeout(10)


# --------------------------------------------------------------------------- basics


async def test_keys_come_out_in_the_order_they_were_added() -> None:
    queue, _ = make_queue()
    for key in "abc":
        await queue.add(key)
    assert [await queue.get() for _ in range(3)] == ["a", "b", "c"]


async def test_a_key_added_twice_while_waiting_is_processed_once() -> None:
    queue, _ = make_queue()
    await queue.add("a")
    await queue.add("b")
    await queue.add("a")
    queue.add_nowait("a")
    assert len(queue) == 2
    assert await drain_now(queue) == ["a", "b"]


async def test_a_flood_of_adds_for_one_key_collapses_into_one_entry() -> None:
    queue, _ = make_queue(maxsize=1)
    for _ in range(1000):
        await queue.add("a")
    assert len(queue) == 1
    assert await drain_now(queue) == ["a"]


async def test_a_key_added_while_processing_is_queued_again_after_done() -> None:
    queue, _ = make_queue()
    await queue.add("a")
    key = await queue.get()
    await queue.add("a")
    assert len(queue) == 0, "must not be handed out while a worker holds it"
    queue.done(key)
    assert len(queue) == 1
    assert await queue.get() == "a"


async def test_a_key_being_processed_is_never_handed_to_a_second_worker() -> None:
    queue, _ = make_queue()
    await queue.add("a")
    first = await queue.get()
    await queue.add("a")
    second_worker = asyncio.create_task(queue.get())
    await settle()
    assert not second_worker.done()
    queue.done(first)
    assert await second_worker == "a"


async def test_a_key_reinserted_while_processing_keeps_its_place_behind_others() -> None:
    queue, _ = make_queue()
    await queue.add("a")
    held = await queue.get()
    await queue.add("b")
    await queue.add("a")
    queue.done(held)
    assert await drain_now(queue) == ["b", "a"]


async def test_done_without_a_new_add_does_not_queue_the_key_again() -> None:
    queue, _ = make_queue()
    await queue.add("a")
    queue.done(await queue.get())
    assert len(queue) == 0
    assert queue.processing_count == 0


async def test_done_for_a_key_not_being_processed_changes_nothing() -> None:
    queue, _ = make_queue()
    await queue.add("a")
    queue.done("a")
    queue.done("zzz")
    assert len(queue) == 1
    assert await queue.get() == "a"


async def test_get_waits_until_a_key_is_added() -> None:
    queue, _ = make_queue()
    getter = asyncio.create_task(queue.get())
    await settle()
    assert not getter.done()
    await queue.add("a")
    assert await getter == "a"


async def test_len_counts_waiting_keys_only() -> None:
    queue, _clock = make_queue()
    await queue.add("a")
    await queue.add("b")
    await queue.get()
    queue.add_after("c", 5)
    assert len(queue) == 1
    assert queue.processing_count == 1
    assert queue.delayed_count == 1


async def test_the_queue_is_generic_over_hashable_keys() -> None:
    queue: WorkQueue[tuple[str, str]] = WorkQueue(maxsize=2, clock=FakeClock())
    await queue.add(("ns", "one"))
    await queue.add(("ns", "one"))
    assert await queue.get() == ("ns", "one")


async def test_many_producers_and_consumers_process_every_key_once_and_never_concurrently() -> None:
    queue, _ = make_queue(maxsize=5)
    keys = [f"k{i}" for i in range(50)]
    held: set[str] = set()
    processed: list[str] = []
    overlaps: list[str] = []

    async def producer(seed: int) -> None:
        rng = random.Random(seed)
        for key in rng.sample(keys, len(keys)):
            await queue.add(key)
            await asyncio.sleep(0)

    async def consumer() -> None:
        while True:
            try:
                key = await queue.get()
            except QueueShutDown:
                return
            if key in held:
                overlaps.append(key)
            held.add(key)
            await asyncio.sleep(0)
            held.discard(key)
            processed.append(key)
            queue.done(key)

    consumers = [asyncio.create_task(consumer()) for _ in range(4)]
    await asyncio.gather(*(producer(seed) for seed in range(8)))
    await queue.shutdown_with_drain()
    await asyncio.gather(*consumers)
    assert overlaps == []
    assert set(processed) == set(keys)
    assert len(processed) >= len(keys)


# --------------------------------------------------------------------------- the bound


async def test_adding_a_new_key_waits_while_maxsize_keys_are_waiting() -> None:
    queue, _ = make_queue(maxsize=2)
    await queue.add("a")
    await queue.add("b")
    producer = asyncio.create_task(queue.add("c"))
    await settle()
    assert not producer.done()
    assert len(queue) == 2


async def test_a_waiting_producer_proceeds_once_a_worker_takes_a_key() -> None:
    queue, _ = make_queue(maxsize=2)
    await queue.add("a")
    await queue.add("b")
    producer = asyncio.create_task(queue.add("c"))
    await settle()
    assert await queue.get() == "a"
    await producer
    assert len(queue) == 2
    assert [await queue.get(), await queue.get()] == ["b", "c"]


async def test_adding_a_key_that_is_already_waiting_never_waits_on_a_full_queue() -> None:
    queue, _ = make_queue(maxsize=1)
    await queue.add("a")
    await asyncio.wait_for(queue.add("a"), timeout=1)  # safety net only: it returns at once
    assert len(queue) == 1


async def test_adding_a_key_that_is_being_processed_never_waits_on_a_full_queue() -> None:
    queue, _ = make_queue(maxsize=1)
    await queue.add("a")
    held = await queue.get()
    await queue.add("b")
    await asyncio.wait_for(queue.add("a"), timeout=1)
    queue.add_nowait("a")
    assert queue.full()
    queue.done(held)
    assert len(queue) == 1, "the bound holds: the requeued key is parked, not squeezed in"
    assert await drain_now(queue) == ["b", "a"]


async def test_add_nowait_raises_queue_full_for_a_new_key_when_full() -> None:
    queue, _ = make_queue(maxsize=1)
    queue.add_nowait("a")
    with pytest.raises(asyncio.QueueFull):
        queue.add_nowait("b")
    assert len(queue) == 1


async def test_add_nowait_accepts_a_new_key_when_there_is_room() -> None:
    queue, _ = make_queue(maxsize=1)
    queue.add_nowait("a")
    assert await queue.get() == "a"
    queue.add_nowait("b")
    assert len(queue) == 1


async def test_producers_waiting_for_room_are_served_in_arrival_order() -> None:
    queue, _ = make_queue(maxsize=1)
    await queue.add("first")
    order: list[str] = []

    async def produce(key: str) -> None:
        await queue.add(key)
        order.append(key)

    producers = [asyncio.create_task(produce(key)) for key in ("p1", "p2", "p3")]
    await settle()
    for _ in range(3):
        queue.done(await queue.get())
        await settle()
    await asyncio.gather(*producers)
    assert order == ["p1", "p2", "p3"]
    assert await queue.get() == "p3"


async def test_two_producers_waiting_with_the_same_key_queue_it_once() -> None:
    queue, _ = make_queue(maxsize=1)
    await queue.add("a")
    producers = [asyncio.create_task(queue.add("b")) for _ in range(2)]
    await settle()
    await queue.get()
    await asyncio.gather(*producers)
    assert len(queue) == 1


async def test_a_producer_woken_for_a_key_that_got_deduped_passes_the_room_on() -> None:
    queue, _ = make_queue(maxsize=2)
    await queue.add("a1")
    await queue.add("a2")
    twins = [asyncio.create_task(queue.add("b")) for _ in range(2)]
    third = asyncio.create_task(queue.add("c"))
    await settle()
    await queue.get()  # room for one: the first twin is woken
    await queue.get()  # room for another: the second twin, whose "b" will be a duplicate
    await settle()
    await asyncio.gather(*twins)
    assert third.done(), "the room the second twin did not use must go to the next producer"
    assert await drain_now(queue) == ["b", "c"]


async def test_a_producer_waiting_for_room_returns_once_its_key_got_in_another_way() -> None:
    queue, _ = make_queue(maxsize=1)
    await queue.add("a")
    producer = asyncio.create_task(queue.add("b"))
    await settle()
    queue.add_after("b", 0)  # a retry of "b" is accepted without waiting: parked
    await settle()
    assert producer.done(), "its key is in: nothing left to wait for"
    assert await drain_now(queue) == ["a", "b"]


async def test_a_producer_cancelled_while_waiting_for_room_adds_nothing() -> None:
    queue, _ = make_queue(maxsize=1)
    await queue.add("a")
    producer = asyncio.create_task(queue.add("b"))
    await settle()
    producer.cancel()
    await settle()
    await queue.get()
    assert len(queue) == 0


async def test_a_producer_cancelled_right_after_being_woken_hands_the_room_on() -> None:
    queue, _ = make_queue(maxsize=1)
    await queue.add("a")
    doomed = asyncio.create_task(queue.add("b"))
    survivor = asyncio.create_task(queue.add("c"))
    await settle()
    await queue.get()  # wakes "b" ...
    doomed.cancel()  # ... which is cancelled before it runs
    await settle()
    await survivor
    assert await queue.get() == "c"


async def test_a_getter_cancelled_right_after_being_woken_hands_the_key_on() -> None:
    queue, _ = make_queue()
    doomed = asyncio.create_task(queue.get())
    survivor = asyncio.create_task(queue.get())
    await settle()
    await queue.add("a")  # wakes the first getter ...
    doomed.cancel()  # ... which is cancelled before it runs
    await settle()
    assert await survivor == "a"


async def test_keys_requeued_by_done_on_a_full_queue_go_before_new_producers() -> None:
    queue, _ = make_queue(maxsize=1)
    await queue.add("a")
    held = await queue.get()
    await queue.add("a")  # dirty while processing
    await queue.add("b")  # fills the queue
    newcomer = asyncio.create_task(queue.add("c"))
    await settle()
    queue.done(held)
    assert queue.parked_count == 1
    assert len(queue) == 1
    queue.done(await queue.get())  # "b"; the parked "a" takes the room, "c" keeps waiting
    await settle()
    assert not newcomer.done()
    assert await queue.get() == "a"
    await newcomer
    assert await queue.get() == "c"


# --------------------------------------------------------------------------- shutdown


async def test_get_drains_the_waiting_keys_after_shutdown_then_raises() -> None:
    queue, _ = make_queue()
    await queue.add("a")
    await queue.add("b")
    queue.shutdown()
    assert queue.shutting_down
    assert [await queue.get(), await queue.get()] == ["a", "b"]
    with pytest.raises(QueueShutDown):
        await queue.get()


async def test_a_get_waiting_on_an_empty_queue_raises_on_shutdown() -> None:
    queue, _ = make_queue()
    getters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await settle()
    queue.shutdown()
    for getter in getters:
        with pytest.raises(QueueShutDown):
            await getter


async def test_adds_of_every_kind_are_ignored_after_shutdown() -> None:
    queue, clock = make_queue()
    queue.shutdown()
    await queue.add("a")
    queue.add_nowait("b")
    queue.add_after("c", 0)
    queue.add_after("d", 1)
    assert queue.add_rate_limited("e") is None
    clock.advance(10)
    await settle()
    assert len(queue) == 0
    assert queue.delayed_count == 0


async def test_a_producer_waiting_for_room_returns_on_shutdown_without_adding() -> None:
    queue, _ = make_queue(maxsize=1)
    await queue.add("a")
    producer = asyncio.create_task(queue.add("b"))
    await settle()
    queue.shutdown()
    await producer
    assert await queue.get() == "a"
    with pytest.raises(QueueShutDown):
        await queue.get()


async def test_shutdown_with_drain_returns_once_every_key_in_processing_is_done() -> None:
    queue, _ = make_queue()
    await queue.add("a")
    await queue.add("b")
    a, b = await queue.get(), await queue.get()
    drain = asyncio.create_task(queue.shutdown_with_drain())
    await settle()
    assert not drain.done()
    queue.done(a)
    await settle()
    assert not drain.done()
    queue.done(b)
    await drain


async def test_shutdown_with_drain_returns_at_once_when_nothing_is_processing() -> None:
    queue, _ = make_queue()
    await queue.add("a")
    await asyncio.wait_for(queue.shutdown_with_drain(), timeout=1)
    assert await queue.get() == "a", "waiting keys can still be taken"


async def test_a_key_added_while_processing_is_still_handed_out_after_shutdown() -> None:
    queue, _ = make_queue()
    await queue.add("a")
    held = await queue.get()
    await queue.add("a")
    queue.shutdown()
    queue.done(held)
    assert await queue.get() == "a"


async def test_delayed_keys_are_dropped_at_shutdown() -> None:
    queue, clock = make_queue()
    queue.add_after("a", 1)
    queue.shutdown()
    clock.advance(2)
    await settle()
    with pytest.raises(QueueShutDown):
        await queue.get()


# --------------------------------------------------------------------------- delayed adds


async def test_add_after_queues_the_key_only_once_its_delay_has_passed() -> None:
    queue, clock = make_queue()
    queue.add_after("a", 1.0)
    await settle()
    assert len(queue) == 0
    clock.advance(0.5)
    await settle()
    assert len(queue) == 0
    clock.advance(0.5)
    assert await asyncio.wait_for(queue.get(), timeout=1) == "a"


async def test_add_after_with_no_delay_adds_at_once() -> None:
    queue, _ = make_queue()
    queue.add_after("a", 0)
    queue.add_after("b", -3)
    queue.add_after("c", float("nan"))
    assert len(queue) == 3


@pytest.mark.parametrize(("first", "second"), [(1.0, 5.0), (5.0, 1.0)])
async def test_a_key_delayed_twice_comes_at_the_earlier_deadline_once(first: float, second: float) -> None:
    queue, clock = make_queue()
    queue.add_after("a", first)
    queue.add_after("a", second)
    assert queue.delayed_count == 1
    clock.advance(1.0)
    assert await asyncio.wait_for(queue.get(), timeout=1) == "a"
    queue.done("a")
    clock.advance(10)
    await settle()
    assert len(queue) == 0, "the later deadline was dropped, not kept as a second entry"


async def test_delayed_keys_come_out_in_deadline_order() -> None:
    queue, clock = make_queue()
    for key, delay in [("c", 3), ("a", 1), ("b", 2)]:
        queue.add_after(key, delay)
    clock.advance(5)
    await settle()
    assert await drain_now(queue) == ["a", "b", "c"]


async def test_a_delayed_key_that_is_already_waiting_is_not_queued_twice() -> None:
    queue, clock = make_queue()
    await queue.add("a")
    queue.add_after("a", 1)
    clock.advance(1)
    await settle()
    assert len(queue) == 1


async def test_an_earlier_deadline_wakes_the_timer_that_sleeps_on_a_later_one() -> None:
    queue, clock = make_queue()
    queue.add_after("late", 100)
    await settle()
    queue.add_after("early", 1)
    await settle()
    clock.advance(1)
    assert await asyncio.wait_for(queue.get(), timeout=1) == "early"


async def test_one_timer_task_serves_every_delayed_key() -> None:
    queue, clock = make_queue(maxsize=1000)
    before = len(asyncio.all_tasks())
    for i in range(200):
        queue.add_after(f"k{i}", 1 + i % 7)
    await settle()
    assert len(asyncio.all_tasks()) - before == 1
    assert clock.sleepers == 1
    clock.advance(10)
    await settle()
    assert len(queue) == 200


async def test_many_earlier_deadlines_for_one_key_leave_one_live_entry() -> None:
    queue, clock = make_queue()
    for step in range(500):
        queue.add_after("a", 1000 - step)
    queue.add_after("b", 600)
    assert queue.delayed_count == 2
    clock.advance(501)
    await settle()
    assert await drain_now(queue) == ["a"]
    clock.advance(100)
    await settle()
    assert await drain_now(queue) == ["b"]


async def test_add_after_never_blocks_on_a_full_queue_and_parks_the_key_until_there_is_room() -> None:
    queue, clock = make_queue(maxsize=1)
    await queue.add("a")
    queue.add_after("b", 0)
    queue.add_after("c", 1)
    clock.advance(1)
    await settle()
    assert len(queue) == 1
    assert queue.parked_count == 2
    assert await drain_now(queue) == ["a", "b", "c"]


async def test_admit_never_waits_parks_new_normal_keys_in_order_and_dedupes_them() -> None:
    queue, _clock = make_queue(maxsize=1)
    queue.admit("a")
    queue.admit("b")
    queue.admit("c")
    queue.admit("b")  # already parked: one entry
    queue.admit("listed", LOW)
    assert (len(queue), queue.parked_count, queue.low_count) == (2, 2, 1)
    assert await drain_now(queue) == ["a", "b", "c", "listed"]


async def test_admit_at_normal_priority_moves_a_parked_low_key_up_not_twice() -> None:
    queue, _clock = make_queue(maxsize=1)
    queue.admit("first")
    queue.admit("x", LOW)
    queue.admit("x")
    assert (queue.parked_count, queue.low_count) == (1, 0)
    assert await drain_now(queue) == ["first", "x"]


async def test_a_worker_requeueing_its_own_key_on_a_full_queue_does_not_deadlock() -> None:
    queue, _clock = make_queue(maxsize=1)
    await queue.add("mine")
    held = await queue.get()
    await queue.add("other")  # full again
    queue.add_after(held, 0)
    queue.add_rate_limited(held)
    queue.done(held)
    assert await drain_now(queue) == ["other", "mine"]


async def test_add_after_is_usable_before_the_loop_has_a_timer() -> None:
    queue, clock = make_queue()
    queue.add_after("a", 1)  # starts the timer lazily
    clock.advance(1)
    assert await asyncio.wait_for(queue.get(), timeout=1) == "a"


async def test_shutdown_ends_the_timer_task() -> None:
    queue, _ = make_queue()
    before = len(asyncio.all_tasks())
    queue.add_after("a", 100)
    await settle()
    assert len(asyncio.all_tasks()) == before + 1
    queue.shutdown()
    await settle()
    assert len(asyncio.all_tasks()) == before


async def test_the_fake_clock_wakes_sleepers_only_when_advanced_past_their_deadline() -> None:
    clock = FakeClock(start=10.0)
    sleeper = asyncio.create_task(clock.sleep(2))
    await settle()
    clock.advance(1.5)
    await settle()
    assert not sleeper.done()
    clock.advance(0.5)
    await settle()
    assert sleeper.done()
    assert clock.now() == 12.0
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


async def test_the_real_clock_returns_at_once_for_a_past_deadline_or_a_done_wakeup() -> None:
    clock = MonotonicClock()
    woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    await asyncio.wait_for(clock.wait_until(woken, clock.now() - 1), timeout=1)
    woken.set_result(None)
    await asyncio.wait_for(clock.wait_until(woken, None), timeout=1)


# --------------------------------------------------------------------------- rate limiting


async def test_failures_of_one_key_back_off_exponentially() -> None:
    queue, clock = make_queue(rate_limiter=ItemExponentialFailureRateLimiter(0.005, 1000.0))
    delays = []
    for _ in range(4):
        delay = queue.add_rate_limited("a")
        assert delay is not None
        delays.append(delay)
        clock.advance(delay / 2)
        await settle()
        assert len(queue) == 0, "not before its backoff"
        clock.advance(delay)
        queue.done(await asyncio.wait_for(queue.get(), timeout=1))
    assert delays == [0.005, 0.01, 0.02, 0.04]
    assert queue.num_requeues("a") == 4


async def test_forget_resets_the_backoff_of_a_key() -> None:
    queue, _ = make_queue(rate_limiter=ItemExponentialFailureRateLimiter(0.005, 1000.0))
    for _ in range(3):
        queue.add_rate_limited("a")
    queue.forget("a")
    assert queue.num_requeues("a") == 0
    assert queue.add_rate_limited("a") == 0.005


async def test_backoff_is_counted_per_key() -> None:
    queue, _ = make_queue(rate_limiter=ItemExponentialFailureRateLimiter(0.005, 1000.0))
    queue.add_rate_limited("a")
    queue.add_rate_limited("a")
    assert queue.add_rate_limited("b") == 0.005
    assert queue.num_requeues("a") == 2


async def test_a_custom_rate_limiter_decides_the_delay() -> None:
    class Fixed:
        def __init__(self) -> None:
            self.forgotten: list[str] = []

        def when(self, key: str) -> float:
            return 7.0

        def forget(self, key: str) -> None:
            self.forgotten.append(key)

        def num_requeues(self, key: str) -> int:
            return 42

    limiter = Fixed()
    queue, clock = make_queue(rate_limiter=limiter)
    assert queue.add_rate_limited("a") == 7.0
    queue.forget("a")
    assert limiter.forgotten == ["a"]
    assert queue.num_requeues("a") == 42
    clock.advance(7)
    assert await asyncio.wait_for(queue.get(), timeout=1) == "a"


def test_exponential_backoff_doubles_from_5_ms_and_stops_at_1000_s() -> None:
    limiter: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter()
    delays = [limiter.when("a") for _ in range(30)]
    assert delays[:3] == [0.005, 0.01, 0.02]
    assert max(delays) == 1000.0
    assert delays[-1] == 1000.0
    for _ in range(5000):  # no float overflow after very many failures
        limiter.when("a")
    assert limiter.when("a") == 1000.0


def test_token_bucket_allows_a_burst_of_100_then_10_per_second() -> None:
    clock = FakeClock()
    bucket: BucketRateLimiter[str] = BucketRateLimiter(10, 100, clock)
    assert [bucket.when(f"k{i}") for i in range(100)] == [0.0] * 100
    assert bucket.when("x") == pytest.approx(0.1)
    assert bucket.when("y") == pytest.approx(0.2)
    clock.advance(10)  # pays the debt of 2 and refills 98 tokens
    assert bucket.when("z") == 0.0
    assert bucket.num_requeues("x") == 0


def test_the_default_limiter_is_the_max_of_per_key_backoff_and_the_bucket() -> None:
    clock = FakeClock()
    limiter: MaxOfRateLimiter[str] = default_controller_rate_limiter(clock)
    assert isinstance(limiter, MaxOfRateLimiter)
    assert limiter.when("a") == 0.005  # bucket has tokens: the per-key backoff decides
    for i in range(99):
        limiter.when(f"other{i}")
    assert limiter.when("b") == pytest.approx(0.1)  # bucket exhausted: it decides
    assert limiter.num_requeues("a") == 1
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0


async def test_the_queue_uses_the_default_controller_limiter_when_none_is_given() -> None:
    queue, _ = make_queue()
    assert queue.add_rate_limited("a") == 0.005
    assert queue.add_rate_limited("a") == 0.01


# --------------------------------------------------------------------------- shape of the API


def test_only_the_adds_gets_and_waits_are_coroutines() -> None:
    coroutines = {
        name
        for name, member in inspect.getmembers(WorkQueue)
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    }
    assert coroutines == {"add", "get", "get_with_priority", "wait_low_drained", "shutdown_with_drain"}


def test_plain_methods_work_without_a_running_loop_until_a_timer_is_needed() -> None:
    queue: WorkQueue[str] = WorkQueue(maxsize=2, clock=FakeClock())
    queue.add_nowait("a")
    queue.add_after("b", 0)
    queue.forget("a")
    assert len(queue) == 2
    queue.shutdown()


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        WorkQueue(maxsize=0)


async def test_a_waiting_producer_is_not_overtaken_by_a_newcomer_when_a_room_frees() -> None:
    q: WorkQueue[str] = WorkQueue(maxsize=1)
    q.add_nowait("a")
    waiting = asyncio.create_task(q.add("b"))
    await asyncio.sleep(0)  # b is in line
    assert await q.get() == "a"  # frees the one room: it is promised to b
    with pytest.raises(asyncio.QueueFull):
        q.add_nowait("c")  # a newcomer does not take b's room
    late = asyncio.create_task(q.add("c"))
    await waiting
    assert len(q) == 1
    q.done("a")
    assert await q.get() == "b"
    await late
    assert await q.get() == "c"


async def test_producers_blocked_on_a_full_queue_get_in_the_order_they_came() -> None:
    q: WorkQueue[str] = WorkQueue(maxsize=1)
    q.add_nowait("first")
    producers = [asyncio.create_task(q.add(k)) for k in ("p1", "p2", "p3")]
    await asyncio.sleep(0)
    taken = [await q.get()]
    for _ in producers:
        newcomer = asyncio.create_task(q.add(f"newcomer-{len(taken)}"))
        taken.append(await q.get())
        newcomer.cancel()
    await asyncio.gather(*producers)
    assert taken == ["first", "p1", "p2", "p3"]


async def test_a_room_handed_back_by_a_deduped_producer_goes_to_a_parked_key() -> None:
    # Found by the property test: the only room is promised to a producer blocked on "x"; a
    # due delayed "x" is parked meanwhile (no room: it is promised) and dedupes the producer,
    # which hands the room back. The parked key must take it: the FIFO is empty, so no `get`
    # would ever move it.
    queue, _ = make_queue(maxsize=1)
    await queue.add("y")
    producer = asyncio.create_task(queue.add("x"))
    await asyncio.sleep(0)  # blocked: the queue is full
    assert await queue.get() == "y"  # frees the room, promised to the producer
    queue.add_after("x", 0)  # due now; parked, since the room is promised
    await producer  # deduped by the parked "x": hands the room back
    assert (len(queue), queue.parked_count) == (1, 0)
    assert await queue.get() == "x"

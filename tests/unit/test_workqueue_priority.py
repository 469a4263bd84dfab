"""WorkQueue's two priorities: new work first, moving up, no starvation, low adds never wait.

Time is a FakeClock moved by hand; `settle()` only yields to the event loop so that woken tasks
run. No test sleeps for real or asserts on timing.
"""

from __future__ import annotations

import asyncio

import pytest
from tests.support.queues import drain_now, make_queue, settle

from labop.runtime.ratelimit import ItemExponentialFailureRateLimiter
from labop.runtime.workqueue import LOW, LOW_EVERY, NORMAL, Priority, QueueShutDown

pytestmark = pytest.mark.timeout(10)


# --------------------------------------------------------------------------- new work first


async def test_a_normal_add_after_5000_waiting_low_keys_is_the_next_key_handed_out() -> None:
    queue, _ = make_queue(maxsize=1000)
    for index in range(5000):
        await queue.add(f"old-{index}", LOW)
    await queue.add("new")
    assert await queue.get_with_priority() == ("new", NORMAL)
    assert await queue.get_with_priority() == ("old-0", LOW)


async def test_low_keys_come_out_oldest_first_when_no_normal_key_waits() -> None:
    queue, _ = make_queue()
    for key in "cab":
        queue.add_nowait(key, LOW)
    assert await drain_now(queue) == ["c", "a", "b"]


async def test_normal_keys_keep_their_fifo_order_among_themselves() -> None:
    queue, _ = make_queue()
    queue.add_nowait("low", LOW)
    for key in "xyz":
        await queue.add(key)
    assert await drain_now(queue) == ["x", "y", "z", "low"]


async def test_len_counts_both_lanes_and_low_count_the_low_one() -> None:
    queue, _ = make_queue()
    queue.add_nowait("a", LOW)
    queue.add_nowait("b", LOW)
    await queue.add("c")
    assert (len(queue), queue.low_count) == (3, 2)


async def test_a_waiting_getter_is_woken_by_a_low_key() -> None:
    queue, _ = make_queue()
    getter = asyncio.create_task(queue.get_with_priority())
    await settle()
    queue.add_nowait("a", LOW)
    assert await getter == ("a", LOW)


# --------------------------------------------------------------------------- moving up


async def test_a_low_key_that_gets_a_normal_add_moves_up_behind_the_normal_keys_already_waiting() -> None:
    queue, _ = make_queue()
    for key in ("l1", "l2", "l3"):
        queue.add_nowait(key, LOW)
    await queue.add("n1")
    await queue.add("l2")  # moves up: after n1, which was there first
    await queue.add("n2")
    assert len(queue) == 5, "still one entry: moving up is no second add"
    assert await drain_now(queue) == ["n1", "l2", "n2", "l1", "l3"]


async def test_a_low_add_for_a_key_waiting_at_normal_priority_changes_nothing() -> None:
    queue, _ = make_queue()
    await queue.add("a")
    await queue.add("b")
    queue.add_nowait("a", LOW)
    assert queue.low_count == 0
    assert await drain_now(queue) == ["a", "b"]


async def test_moving_up_never_waits_even_when_the_normal_lane_is_full() -> None:
    queue, _ = make_queue(maxsize=1)
    queue.add_nowait("low", LOW)
    await queue.add("n")
    await asyncio.wait_for(queue.add("low"), timeout=1)  # a safety net only: it returns at once
    queue.add_nowait("low")
    assert (len(queue), queue.parked_count) == (1, 1), "parked: it has its entry already"
    assert await drain_now(queue) == ["n", "low"]


async def test_a_key_processing_and_added_at_both_priorities_goes_again_at_normal() -> None:
    queue, _ = make_queue()
    await queue.add("a")
    held = await queue.get()
    queue.add_nowait(held, LOW)
    await queue.add(held)
    queue.add_nowait(held, LOW)  # the highest priority asked for holds
    queue.add_nowait("low", LOW)
    queue.done(held)
    assert await queue.get_with_priority() == ("a", NORMAL)


async def test_a_key_processing_and_added_only_at_low_priority_goes_again_at_low() -> None:
    queue, _ = make_queue()
    await queue.add("a")
    held = await queue.get()
    queue.add_nowait(held, LOW)
    queue.done(held)
    await queue.add("new")
    assert await queue.get_with_priority() == ("new", NORMAL)
    assert await queue.get_with_priority() == ("a", LOW)


async def test_a_producer_blocked_on_a_key_that_gets_in_at_low_priority_moves_it_up() -> None:
    queue, _ = make_queue(maxsize=1)
    await queue.add("full")
    producer = asyncio.create_task(queue.add("x"))
    await settle()
    assert not producer.done()
    queue.add_nowait("x", LOW)  # e.g. a resync reaches the same key meanwhile
    await settle()
    assert producer.done()
    assert queue.low_count == 0
    assert await drain_now(queue) == ["full", "x"]


# --------------------------------------------------------------------------- who waits


async def test_low_adds_never_wait_and_never_raise_on_a_full_queue() -> None:
    queue, _ = make_queue(maxsize=2)
    await queue.add("a")
    await queue.add("b")
    assert queue.full()
    for index in range(3000):
        await asyncio.wait_for(queue.add(f"low-{index}", LOW), timeout=1)
        queue.add_nowait(f"other-{index}", LOW)
    assert queue.low_count == 6000


async def test_the_bound_counts_normal_keys_only_so_new_work_gets_in_past_a_low_backlog() -> None:
    queue, _ = make_queue(maxsize=2)
    for index in range(100):
        queue.add_nowait(f"low-{index}", LOW)
    assert not queue.full()
    await asyncio.wait_for(queue.add("a"), timeout=1)
    await asyncio.wait_for(queue.add("b"), timeout=1)
    with pytest.raises(asyncio.QueueFull):
        queue.add_nowait("c")


async def test_normal_producers_still_wait_while_the_normal_lane_is_full() -> None:
    queue, _ = make_queue(maxsize=1)
    queue.add_nowait("low", LOW)
    await queue.add("a")
    producer = asyncio.create_task(queue.add("b"))
    await settle()
    assert not producer.done()
    assert await queue.get() == "a"
    await producer
    assert await drain_now(queue) == ["b", "low"]


async def test_the_low_lane_holds_one_entry_per_distinct_key() -> None:
    queue, _ = make_queue()
    for _ in range(3):
        for index in range(500):
            queue.add_nowait(f"k{index}", LOW)
    assert queue.low_count == 500


# --------------------------------------------------------------------------- no starvation


async def test_a_steady_stream_of_normal_keys_leaves_every_eighth_get_to_the_low_lane() -> None:
    assert LOW_EVERY == 8
    queue, _ = make_queue(maxsize=1000)
    for index in range(5):
        queue.add_nowait(f"low-{index}", LOW)
    taken: list[tuple[str, Priority]] = []
    for index in range(80):
        await queue.add(f"new-{index}")  # a normal key is always waiting
        key, priority = await queue.get_with_priority()
        queue.done(key)
        taken.append((key, priority))
    low_positions = [position for position, (_, priority) in enumerate(taken, 1) if priority is LOW]
    assert low_positions == [8, 16, 24, 32, 40]
    assert [key for key, priority in taken if priority is LOW] == [f"low-{i}" for i in range(5)]


async def test_the_oldest_low_key_waits_at_most_low_every_gets_behind_a_normal_backlog() -> None:
    queue, _ = make_queue(maxsize=1000)
    for index in range(100):
        await queue.add(f"new-{index}")
    queue.add_nowait("old", LOW)
    taken = [await queue.get() for _ in range(LOW_EVERY)]
    assert taken[-1] == "old"
    assert "old" not in taken[:-1]


async def test_with_only_low_keys_waiting_every_get_serves_them() -> None:
    queue, _ = make_queue()
    for index in range(LOW_EVERY * 2):
        queue.add_nowait(f"low-{index}", LOW)
    assert await drain_now(queue) == [f"low-{i}" for i in range(LOW_EVERY * 2)]


# --------------------------------------------------------------------------- delayed adds


async def test_a_delayed_key_comes_due_at_the_priority_it_was_asked_for() -> None:
    queue, clock = make_queue()
    queue.add_after("retry-low", 1, LOW)
    queue.add_after("retry-normal", 1)
    clock.advance(1)
    await settle()
    assert queue.low_count == 1
    assert await queue.get_with_priority() == ("retry-normal", NORMAL)
    assert await queue.get_with_priority() == ("retry-low", LOW)


@pytest.mark.parametrize(("low_delay", "normal_delay"), [(1.0, 5.0), (5.0, 1.0)])
async def test_a_key_delayed_twice_keeps_the_earlier_deadline_and_the_higher_priority(
    low_delay: float, normal_delay: float
) -> None:
    queue, clock = make_queue()
    queue.add_after("a", low_delay, LOW)
    queue.add_after("a", normal_delay, NORMAL)
    assert queue.delayed_count == 1
    clock.advance(1)
    await settle()
    queue.add_nowait("low", LOW)
    assert await queue.get_with_priority() == ("a", NORMAL)


async def test_add_after_without_delay_at_low_priority_joins_the_low_lane_even_when_full() -> None:
    queue, _ = make_queue(maxsize=1)
    await queue.add("n")
    queue.add_after("a", 0, LOW)
    assert (queue.low_count, queue.parked_count) == (1, 0)


async def test_a_rate_limited_retry_keeps_the_priority_it_is_given() -> None:
    queue, clock = make_queue(rate_limiter=ItemExponentialFailureRateLimiter(1.0, 10.0))
    assert queue.add_rate_limited("a", LOW) == 1.0
    clock.advance(1)
    await settle()
    await queue.add("new")
    assert await drain_now(queue) == ["new", "a"]


# --------------------------------------------------------------------------- waiting for the low lane


async def test_wait_low_drained_returns_once_the_low_keys_waiting_at_the_call_are_handed_out() -> None:
    queue, _ = make_queue()
    for key in "ab":
        queue.add_nowait(key, LOW)
    waiter = asyncio.create_task(queue.wait_low_drained())
    await settle()
    queue.add_nowait("later", LOW)  # not part of what the caller waits for
    assert await queue.get() == "a"
    await settle()
    assert not waiter.done()
    assert await queue.get() == "b"
    await settle()
    assert waiter.done()
    assert queue.low_count == 1


async def test_wait_low_drained_counts_a_key_that_moved_up_as_gone() -> None:
    queue, _ = make_queue()
    queue.add_nowait("a", LOW)
    waiter = asyncio.create_task(queue.wait_low_drained())
    await settle()
    await queue.add("a")
    await asyncio.wait_for(waiter, timeout=1)


async def test_wait_low_drained_returns_at_once_with_no_low_key_and_on_shutdown() -> None:
    queue, _ = make_queue()
    await asyncio.wait_for(queue.wait_low_drained(), timeout=1)
    queue.add_nowait("a", LOW)
    waiter = asyncio.create_task(queue.wait_low_drained())
    await settle()
    queue.shutdown()
    await asyncio.wait_for(waiter, timeout=1)


async def test_a_cancelled_wait_low_drained_leaves_the_others_working() -> None:
    queue, _ = make_queue()
    queue.add_nowait("a", LOW)
    doomed = asyncio.create_task(queue.wait_low_drained())
    survivor = asyncio.create_task(queue.wait_low_drained())
    await settle()
    doomed.cancel()
    await settle()
    await queue.get()
    await asyncio.wait_for(survivor, timeout=1)


# --------------------------------------------------------------------------- shutdown


async def test_low_keys_are_still_handed_out_after_shutdown_and_low_adds_are_ignored() -> None:
    queue, _ = make_queue()
    queue.add_nowait("a", LOW)
    await queue.add("b")
    queue.shutdown()
    queue.add_nowait("c", LOW)
    await queue.add("d", LOW)
    assert await drain_now(queue) == ["b", "a"]
    with pytest.raises(QueueShutDown):
        await queue.get()


def test_priorities_are_controller_runtimes_values_and_label_as_low_and_normal() -> None:
    assert (int(LOW), int(NORMAL)) == (-100, 0)
    assert LOW < NORMAL
    assert (LOW.label, NORMAL.label) == ("low", "normal")

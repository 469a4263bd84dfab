"""Property test of WorkQueue under random interleavings (hypothesis; labop.runtime.workqueue).

Hypothesis draws a script of operations: adds (waiting and non-blocking, at normal and low
priority), delayed adds (both priorities), gets and dones by several logical workers, clock
advances and a random number of event-loop turns between steps. The script runs on a fresh
event loop with a FakeClock; afterwards every worker keeps taking keys until nothing is left.
Checked throughout:

* no key is ever held by two workers at once;
* the number of normal keys waiting never exceeds maxsize (low keys are not bounded by it);
* every key is taken by a worker after its last add (no add is lost, even deduped ones);
* a key is never handed out at low priority after a normal add that took effect at once
  (add_nowait, add_after with no delay) since it was last handed out (moving up is not lost).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labop.runtime.clock import FakeClock
from labop.runtime.workqueue import LOW, NORMAL, Priority, WorkQueue

pytestmark = pytest.mark.timeout(60)

KEYS = ("a", "b", "c", "d", "e")
WORKERS = 4

KINDS = ("add", "add_nowait", "add_after", "get", "done", "advance", "add_low", "add_after_low")
DELAYS = (0.0, 0.5, 1.0, 3.0)  # for add_after; "advance" moves the clock by 0.5 .. 2.0
# Flat integer tuples are cheap for hypothesis to draw and shrink: (kind, key or worker, delay
# or advance, loop turns afterwards). `as_operation` gives them their meaning.
step = st.tuples(
    st.integers(0, len(KINDS) - 1),
    st.integers(0, len(KEYS) - 1),
    st.integers(0, len(DELAYS) - 1),
    st.integers(0, 3),
)


def as_operation(raw: tuple[int, int, int, int]) -> tuple[tuple[object, ...], int]:
    kind_index, target, amount, turns = raw
    kind = KINDS[kind_index]
    if kind in ("get", "done"):
        return (kind, target % WORKERS), turns
    if kind in ("add_after", "add_after_low"):
        return (kind, KEYS[target], DELAYS[amount]), turns
    if kind == "advance":
        return (kind, 0.5 * (1 + amount)), turns
    return (kind, KEYS[target]), turns


@dataclass
class Run:
    queue: WorkQueue[str]
    clock: FakeClock
    maxsize: int
    tick: int = 0  # a logical time line of adds and gets
    last_add: dict[str, int] = field(default_factory=dict)
    last_get: dict[str, int] = field(default_factory=dict)
    getting: dict[int, asyncio.Task[tuple[str, Priority]]] = field(default_factory=dict)
    # key -> a normal add took effect since the key was last handed out
    normal_since_take: dict[str, bool] = field(default_factory=dict)
    holding: dict[int, str] = field(default_factory=dict)
    producers: list[asyncio.Task[None]] = field(default_factory=list)

    def note_add(self, added: str) -> None:
        self.tick += 1
        self.last_add[added] = self.tick

    def collect_gets(self) -> None:
        for index, task in list(self.getting.items()):
            if task.done():
                del self.getting[index]
                got, priority = task.result()
                assert got not in self.holding.values(), f"{got} held by two workers"
                assert not (priority is LOW and self.normal_since_take.get(got)), f"{got} lost its move up"
                self.normal_since_take[got] = False
                self.holding[index] = got
                self.tick += 1
                self.last_get[got] = self.tick

    def check(self) -> None:
        assert len(self.queue) - self.queue.low_count <= self.maxsize
        held = list(self.holding.values())
        assert len(held) == len(set(held))

    async def apply(self, op: tuple[object, ...]) -> None:
        kind = op[0]
        if kind == "add":
            self.note_add(str(op[1]))  # its effect may come later, if it has to wait
            self.producers.append(asyncio.create_task(self.queue.add(str(op[1]))))
        elif kind == "add_nowait":
            try:
                self.queue.add_nowait(str(op[1]))
            except asyncio.QueueFull:
                pass  # refused: not an add
            else:
                self.note_add(str(op[1]))
                self.normal_since_take[str(op[1])] = True
        elif kind == "add_after":
            self.note_add(str(op[1]))
            self.queue.add_after(str(op[1]), float(op[2]), NORMAL)  # type: ignore[arg-type]
            if float(op[2]) == 0:  # type: ignore[arg-type]
                self.normal_since_take[str(op[1])] = True
        elif kind == "add_low":
            self.note_add(str(op[1]))
            self.queue.add_nowait(str(op[1]), LOW)  # never refused
        elif kind == "add_after_low":
            self.note_add(str(op[1]))
            self.queue.add_after(str(op[1]), float(op[2]), LOW)  # type: ignore[arg-type]
        elif kind == "get":
            index = int(op[1])  # type: ignore[call-overload]
            if index not in self.getting and index not in self.holding:
                self.getting[index] = asyncio.create_task(self.queue.get_with_priority())
        elif kind == "done":
            index = int(op[1])  # type: ignore[call-overload]
            if index in self.holding:
                self.queue.done(self.holding.pop(index))
        elif kind == "advance":
            self.clock.advance(float(op[1]))  # type: ignore[arg-type]

    async def settle(self, turns: int) -> None:
        for _ in range(turns):
            await asyncio.sleep(0)
            self.collect_gets()
            self.check()

    async def finish(self) -> None:
        """Every worker takes and finishes keys until nothing is waiting, parked or delayed."""
        for _ in range(200):
            for index in list(self.holding):
                self.queue.done(self.holding.pop(index))
            for index in range(WORKERS):
                if index not in self.getting and index not in self.holding:
                    self.getting[index] = asyncio.create_task(self.queue.get_with_priority())
            self.clock.advance(100.0)
            await self.settle(5)
            idle = not self.holding and all(task.done() for task in self.producers)
            if idle and not len(self.queue) and not self.queue.parked_count and not self.queue.delayed_count:
                break
        else:
            pytest.fail(f"the queue did not drain: {self.queue!r}")
        for task in self.getting.values():
            task.cancel()
        await asyncio.gather(*self.getting.values(), return_exceptions=True)


async def play(maxsize: int, script: list[tuple[int, int, int, int]]) -> Run:
    clock = FakeClock()
    run = Run(WorkQueue(maxsize=maxsize, clock=clock), clock, maxsize)
    for op, turns in map(as_operation, script):
        await run.apply(op)
        run.collect_gets()
        run.check()
        await run.settle(turns)
    await run.finish()
    run.queue.shutdown()
    return run


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    """One event loop for all examples: a loop per example would cost more than the example."""
    with asyncio.Runner() as loop_runner:
        yield loop_runner


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(maxsize=st.integers(1, 3), script=st.lists(step, max_size=60))
def test_random_interleavings_keep_keys_exclusive_bounded_and_never_lost(
    runner: asyncio.Runner, maxsize: int, script: list[tuple[int, int, int, int]]
) -> None:
    run = runner.run(play(maxsize, script))
    for added, when in run.last_add.items():
        assert run.last_get.get(added, -1) > when, f"{added} added at {when} was not processed after"

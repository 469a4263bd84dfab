"""Clocks for the work queue: the real monotonic one and a fake one the tests drive by hand.

Why a clock of our own: the queue's delays, the token bucket and the metrics' durations all
read one, so tests drive time by hand (`FakeClock.advance` replaces every real sleep).

A clock has two operations: `now()` in seconds on an arbitrary monotonic scale, and
`wait_until(woken, deadline)`, which returns as soon as the future `woken` completes or the
clock reaches `deadline` (an absolute `now()` value: no float drift between "deadline" and
"now + timeout"). The queue's timer task sleeps with it, so that a new, earlier deadline (it
completes `woken`) or `FakeClock.advance` can wake it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """What the queue needs from time."""

    def now(self) -> float:
        """Seconds on a monotonic scale; only differences mean anything."""
        ...

    async def wait_until(self, woken: asyncio.Future[None], deadline: float | None) -> None:
        """Return when `woken` is done or `now() >= deadline` (never, if None)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds` on this clock."""
        ...


class MonotonicClock:
    """The real clock: `time.monotonic`, which is also what the asyncio loop schedules on."""

    def now(self) -> float:
        return time.monotonic()

    async def wait_until(self, woken: asyncio.Future[None], deadline: float | None) -> None:
        # asyncio.wait neither cancels `woken` on timeout nor raises: exactly "until either".
        timeout = None if deadline is None else max(0.0, deadline - self.now())
        await asyncio.wait((woken,), timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """A clock that moves only when a test calls `advance`; sleepers wake on the way.

    `advance` is a plain call: it completes the futures of the sleepers whose deadline has
    passed. They resume on the next turns of the event loop, so a test yields
    (`await asyncio.sleep(0)`) or awaits the queue before it looks at the result.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()  # ties in the heap never compare futures

    def now(self) -> float:
        return self._now

    @property
    def sleepers(self) -> int:
        """How many waits are pending (a test can check that the timer task is parked)."""
        return sum(1 for _, _, fut in self._sleepers if not fut.done())

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    async def wait_until(self, woken: asyncio.Future[None], deadline: float | None) -> None:
        if deadline is None:
            await asyncio.wait((woken,))
            return
        alarm: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if deadline <= self._now:
            alarm.set_result(None)
        else:
            heapq.heappush(self._sleepers, (deadline, next(self._order), alarm))
        try:
            await asyncio.wait((woken, alarm), return_when=asyncio.FIRST_COMPLETED)
        finally:
            alarm.cancel()  # a cancelled alarm is skipped by advance() and dropped there

    async def sleep(self, seconds: float) -> None:
        await self.wait_until(asyncio.get_running_loop().create_future(), self._now + seconds)

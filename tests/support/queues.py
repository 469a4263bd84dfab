"""Helpers for the work queue's unit tests: a queue on a fake clock, a yield-only settle, a drain.

Time is a FakeClock moved by hand; `settle()` only yields to the event loop so that woken tasks
run: no test sleeps for real or asserts on timing.
"""

from __future__ import annotations

import asyncio

from labop.runtime.clock import FakeClock
from labop.runtime.workqueue import WorkQueue


async def settle(turns: int = 20) -> None:
    """Let every task that can run, run (yields only; no time passes)."""
    for _ in range(turns):
        await asyncio.sleep(0)


def make_queue(maxsize: int = 100, **kwargs: object) -> tuple[WorkQueue[str], FakeClock]:
    clock = FakeClock()
    return WorkQueue(maxsize=maxsize, clock=clock, **kwargs), clock  # type: ignore[arg-type]


async def drain_now(queue: WorkQueue[str]) -> list[str]:
    """Get and done every key that is waiting right now, in order."""
    keys = []
    while len(queue):
        key = await queue.get()
        queue.done(key)
        keys.append(key)
    return keys

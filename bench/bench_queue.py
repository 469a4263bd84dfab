"""Benchmark of labop.runtime.workqueue.WorkQueue beside a bare asyncio.Queue (a benchmark, not a test).

Run: `.venv/bin/python bench/bench_queue.py` (under 15 s on 2 cores). It prints a
markdown table for BENCHMARKS.md, with the machine and the date.

What is measured:
* cycles per second: one producer adds distinct keys (`("ns", "obj-N")`), W workers each loop
  get -> done (asyncio.Queue: get -> task_done). One cycle = one key through add, get and done;
  the clock stops when the workers have finished the last key. Best of several rounds, which
  interleave the variants, so a busy neighbour on the machine costs them alike. The "mixed"
  variant adds every other key at low priority, so both lanes, the move between them and the
  no-starvation count are exercised (the priority queue's overhead against all-normal keys).
* a resync pass: add_nowait of every key at low priority into a queue bound to MAXSIZE normal
  keys (none refused), keys per second.
* peak memory (tracemalloc) of a queue holding 100k distinct keys that were built beforehand,
  i.e. the queue's own bookkeeping, not the keys; at normal priority (the FIFO) and at low
  priority (the low lane, an ordered set).

The code under test is labop.runtime.workqueue (and labop.runtime.metrics for the row with
metrics); the figures go to the "Work queue" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import itertools
import os
import platform
import time
import tracemalloc
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from labop.runtime.metrics import QueueMetrics
from labop.runtime.workqueue import LOW, NORMAL, Priority, WorkQueue

Key = tuple[str, str]
WORKER_COUNTS = (1, 4, 16)
MAXSIZE = 1024  # the bound both queues get in the throughput runs


def make_keys(count: int) -> list[Key]:
    return [("ns", f"obj-{index}") for index in range(count)]


# --------------------------------------------------------------------------- throughput


async def cycles_workqueue(keys: list[Key], workers: int, with_metrics: bool, mixed: bool = False) -> float:
    metrics = QueueMetrics(CollectorRegistry(), "bench") if with_metrics else None
    queue: WorkQueue[Key] = WorkQueue(maxsize=MAXSIZE, name="bench", metrics=metrics)
    finished = asyncio.Event()
    remaining = len(keys)

    async def worker() -> None:
        nonlocal remaining
        while True:
            key = await queue.get()
            queue.done(key)
            remaining -= 1
            if not remaining:
                finished.set()

    if not mixed:
        return await _timed(keys, workers, worker, queue.add, finished)
    flip = itertools.cycle((NORMAL, LOW))

    async def add_mixed(key: Key) -> None:
        await queue.add(key, next(flip))

    return await _timed(keys, workers, worker, add_mixed, finished)


async def cycles_asyncio_queue(keys: list[Key], workers: int) -> float:
    queue: asyncio.Queue[Key] = asyncio.Queue(maxsize=MAXSIZE)
    finished = asyncio.Event()
    remaining = len(keys)

    async def worker() -> None:
        nonlocal remaining
        while True:
            await queue.get()
            queue.task_done()
            remaining -= 1
            if not remaining:
                finished.set()

    return await _timed(keys, workers, worker, queue.put, finished)


async def _timed(
    keys: list[Key],
    workers: int,
    worker: Callable[[], Coroutine[Any, Any, None]],
    add: Callable[[Key], Coroutine[Any, Any, None]],
    finished: asyncio.Event,
) -> float:
    """Cycles per second: from the first add until the workers have finished the last key."""
    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    started = time.perf_counter()
    for key in keys:
        await add(key)
    await finished.wait()
    elapsed = time.perf_counter() - started
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return len(keys) / elapsed


def best_of(rounds: int, runs: dict[str, Callable[[], Coroutine[Any, Any, float]]]) -> dict[str, float]:
    """Best figure of each run; rounds interleave the runs, so a busy spell hits them alike."""
    best = dict.fromkeys(runs, 0.0)
    for _ in range(rounds):
        for label, make_run in runs.items():
            gc.collect()
            best[label] = max(best[label], asyncio.run(make_run()))
    return best


# --------------------------------------------------------------------------- memory


def peak_bytes(fill: Callable[[list[Key]], object], keys: list[Key]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        holder = fill(keys)
        _, peak = tracemalloc.get_traced_memory()
        del holder
    finally:
        tracemalloc.stop()
    return peak


def fill_workqueue(keys: list[Key], with_metrics: bool = False, priority: Priority = NORMAL) -> object:
    metrics = QueueMetrics(CollectorRegistry(), "bench") if with_metrics else None
    queue: WorkQueue[Key] = WorkQueue(maxsize=len(keys), metrics=metrics)
    for key in keys:
        queue.add_nowait(key, priority)
    return queue


def resync_keys_per_second(keys: list[Key], rounds: int) -> float:
    """One resync pass: every key at low priority into a queue bound to MAXSIZE normal keys."""
    best = 0.0
    for _ in range(rounds):
        gc.collect()
        queue: WorkQueue[Key] = WorkQueue(maxsize=MAXSIZE, metrics=QueueMetrics(CollectorRegistry(), "bench"))
        started = time.perf_counter()
        for key in keys:
            queue.add_nowait(key, LOW)
        elapsed = time.perf_counter() - started
        assert queue.low_count == len(keys), "a resync drops no key"
        best = max(best, len(keys) / elapsed)
    return best


def fill_asyncio_queue(keys: list[Key]) -> object:
    queue: asyncio.Queue[Key] = asyncio.Queue(maxsize=len(keys))
    for key in keys:
        queue.put_nowait(key)
    return queue


# --------------------------------------------------------------------------- report


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"nproc {os.cpu_count()}, {model}, Python {platform.python_version()}"
        f" ({platform.python_implementation()}), load average {load}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=100_000, help="keys per throughput run")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per figure; the best is kept")
    parser.add_argument("--memory-keys", type=int, default=100_000)
    args = parser.parse_args()

    keys = make_keys(args.cycles)
    rows = []
    for workers in WORKER_COUNTS:
        best = best_of(
            args.rounds,
            {
                "bare": lambda w=workers: cycles_asyncio_queue(keys, w),  # type: ignore[misc]
                "plain": lambda w=workers: cycles_workqueue(keys, w, False),  # type: ignore[misc]
                "metered": lambda w=workers: cycles_workqueue(keys, w, True),  # type: ignore[misc]
                "mixed": lambda w=workers: cycles_workqueue(keys, w, False, mixed=True),  # type: ignore[misc]
            },
        )
        rows.append((workers, best["bare"], best["plain"], best["metered"], best["mixed"]))
    resync = resync_keys_per_second(keys, args.rounds)

    memory_keys = make_keys(args.memory_keys)
    peaks = [
        ("asyncio.Queue", peak_bytes(fill_asyncio_queue, memory_keys)),
        ("WorkQueue", peak_bytes(fill_workqueue, memory_keys)),
        ("WorkQueue + QueueMetrics", peak_bytes(lambda k: fill_workqueue(k, True), memory_keys)),
        ("WorkQueue, keys at LOW", peak_bytes(lambda k: fill_workqueue(k, priority=LOW), memory_keys)),
        (
            "WorkQueue + QueueMetrics, keys at LOW",
            peak_bytes(lambda k: fill_workqueue(k, True, priority=LOW), memory_keys),
        ),
    ]

    today = datetime.date.today().isoformat()
    print(f"Measured {today} on: {machine()}.")
    print(f"{args.cycles} distinct keys per run, maxsize {MAXSIZE}, best of {args.rounds} rounds.")
    print()
    print(
        "| workers | asyncio.Queue put+get+task_done /s | WorkQueue add+get+done /s | ratio |"
        " WorkQueue + QueueMetrics /s | WorkQueue, mixed priorities /s | mixed / all normal |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for workers, bare, plain, metered, mixed in rows:
        print(
            f"| {workers} | {bare:,.0f} | {plain:,.0f} | {plain / bare:.2f} | {metered:,.0f}"
            f" | {mixed:,.0f} | {mixed / plain:.2f} |"
        )
    print()
    print(f"Resync pass (add_nowait at LOW, with QueueMetrics, maxsize {MAXSIZE}): {resync:,.0f} keys/s.")
    print()
    print(f"| {args.memory_keys:,} distinct keys waiting | peak traced memory | per key |")
    print("|---|---:|---:|")
    for label, peak in peaks:
        print(f"| {label} | {peak / 2**20:.1f} MiB | {peak / args.memory_keys:.0f} B |")


if __name__ == "__main__":
    main()

"""labop.memory: when the idle collector collects, and when it leaves the process alone."""

from __future__ import annotations

import pytest

from labop import memory
from labop.memory import ACTIVITY_COLLECTIONS, IdleCollector


class World:
    def __init__(self) -> None:
        self.now = 1000.0
        self.young = 0
        self.busy = False
        self.collected = 0

    def collect(self) -> int:
        self.collected += 1
        return 0

    def collector(self, min_interval: float = 30.0) -> IdleCollector:
        return IdleCollector(
            lambda: self.busy,
            min_interval=min_interval,
            collect=self.collect,
            young_collections=lambda: self.young,
            clock=lambda: self.now,
        )


def test_an_idle_process_that_allocated_is_collected_once() -> None:
    world = World()
    collector = world.collector()
    world.young += ACTIVITY_COLLECTIONS
    world.now += 31
    assert collector.tick()
    assert not collector.tick()  # nothing allocated since
    assert world.collected == 1


def test_a_busy_queue_is_never_paused_for_a_collection() -> None:
    world = World()
    collector = world.collector()
    world.young += 10 * ACTIVITY_COLLECTIONS
    world.now += 300
    world.busy = True
    assert not collector.tick()
    world.busy = False
    assert collector.tick()


def test_a_process_that_barely_allocated_is_left_alone() -> None:
    world = World()
    collector = world.collector()
    world.young += ACTIVITY_COLLECTIONS - 1  # e.g. metrics scrapes
    world.now += 300
    assert not collector.tick()


def test_collections_are_at_least_min_interval_apart() -> None:
    world = World()
    collector = world.collector(min_interval=30.0)
    world.young += ACTIVITY_COLLECTIONS
    assert collector.tick()  # the first burst's garbage goes at once
    world.young += ACTIVITY_COLLECTIONS
    world.now += 10
    assert not collector.tick()
    world.now += 20
    assert collector.tick()


def test_the_idle_collection_collects_then_gives_the_allocators_free_pages_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trims: list[int] = []

    def trim(pad: int) -> int:
        trims.append(pad)
        return 1

    monkeypatch.setattr(memory, "_malloc_trim", lambda: trim)
    assert memory.collect_and_trim() >= 0
    assert trims == [0]


def test_without_glibcs_malloc_trim_the_idle_collection_only_collects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)
    assert memory.collect_and_trim() >= 0


def test_the_idle_collector_trims_by_default() -> None:
    assert memory.IdleCollector(lambda: False)._collect is memory.collect_and_trim

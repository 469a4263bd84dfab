"""Memory hygiene: give the cyclic garbage collector a fair chance in a long-lived operator.

Role: two small things the operator does about Python's garbage collector, and the why.

* kopf wraps every object it hands to a handler in a ``Body`` whose views (``meta``, ``spec``,
  ``status``) point back at it: every watch event and every object of a LIST leaves a reference
  cycle around the raw JSON. Only the cyclic collector frees those, and CPython runs a full
  collection only when the objects that survived since the last one exceed a quarter of all
  long-lived objects. After importing kopf, aiohttp, pydantic and the kubernetes client that
  "all" is hundreds of thousands of objects, so a restart's relist of thousands of objects
  (about 45 KB of JSON per LabServer with its two children) stayed allocated long after it was
  garbage (found with tracemalloc; see bench/memory.md).
* ``freeze_imports()``, once at start: collect, then move everything alive (the imports, the
  registries) into the collector's permanent generation. Full collections then follow the
  objects the operator makes while it runs, and each costs less, since it no longer walks the
  import-time objects.
* ``IdleCollector``: one full collection when the work queue goes idle after the process
  allocated (a burst of events and reconciles), at most once per ``min_interval``. Idle is when
  the garbage of a burst is complete and a pause on the event loop (tens of ms) delays nobody.
* ``collect_and_trim``, what the idle collection runs: the full collection, then glibc's
  ``malloc_trim(0)``. Freed memory goes back to the allocator, not to the system: a relist
  (thousands of parsed JSON bodies of a few KB, which live in glibc's heap, not in Python's
  small-object arenas) leaves the heap at its high-water mark, and RSS with it. ``malloc_trim``
  returns the free pages of every arena to the system (it is where most of a restart's RSS went:
  BENCHMARKS.md). Elsewhere than glibc (musl, macOS) it is skipped.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import time
from collections.abc import Callable
from functools import cache

from labkit.logs import log_event

__all__ = ["IdleCollector", "collect_and_trim", "freeze_imports"]

log = logging.getLogger("labop.memory")
# Automatic collections since our last full one that count as "the process allocated": each one
# follows ~700 new container objects, so 10 is a few thousand objects, not a metrics scrape.
ACTIVITY_COLLECTIONS = 10


def freeze_imports() -> None:
    """Collect once, then keep everything alive now out of later collections (see module doc)."""
    gc.collect()
    gc.freeze()


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def collect_and_trim() -> int:
    """A full collection, then the allocator's free pages back to the system; returns how many
    objects the collection freed."""
    freed = gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
    return freed


def _young_collections() -> int:
    # Every collection the allocator triggered, whatever its generation (CPython counts a
    # collection under the oldest generation it covered).
    return sum(int(stats["collections"]) for stats in gc.get_stats())


class IdleCollector:
    """Runs ``collect`` when ``busy()`` is False and the process allocated since the last run."""

    def __init__(
        self,
        busy: Callable[[], bool],
        *,
        check_every: float = 2.0,
        min_interval: float = 10.0,
        collect: Callable[[], int] = collect_and_trim,
        young_collections: Callable[[], int] = _young_collections,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._busy = busy
        self._check_every = check_every
        self._min_interval = min_interval
        self._collect = collect
        self._young = young_collections
        self._clock = clock
        self._last_at = float("-inf")
        self._last_young = young_collections()

    def tick(self) -> bool:
        """One look; True if it collected."""
        if self._busy():
            return False
        if self._young() - self._last_young < ACTIVITY_COLLECTIONS:
            return False
        if self._clock() - self._last_at < self._min_interval:
            return False
        started = self._clock()
        freed = self._collect()
        self._last_at = self._clock()
        self._last_young = self._young()
        log_event(
            log, "idle collection", logging.DEBUG, freed=freed, ms=round(1000 * (self._last_at - started))
        )
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._check_every)  # a period, not a synchronisation
            self.tick()

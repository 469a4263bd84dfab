"""The work queue: client-go's workqueue contract, bounded, in pure asyncio.

Role
----
Event sources (kopf handlers) put keys here, e.g. `(namespace, name)`; workers take them out
and reconcile them. Why a queue of keys and not of events: a flood of events for one object is
one entry, and a reconcile always reads the latest state anyway. Nothing here imports
Kubernetes or kopf.

What a key can be
-----------------
* waiting: in the FIFO that workers `get` from. `len(q)` counts these; never more than `maxsize`.
* parked: accepted, waiting for room in the FIFO (see "never blocks" below). Served before any
  brand-new key, in order.
* processing: handed to a worker by `get`, until that worker calls `done(key)`.
* processing and dirty: added again while being processed. It is NOT queued a second time (no
  two workers ever hold one key); `done` queues it again, so the change is not missed.
* delayed: in the heap of `add_after`, until its deadline; one entry per key, earliest wins.

Adding a key that is waiting or parked does nothing (dedupe); that is why the bound counts
distinct keys, not events: a flood of events for one object is one entry, and memory is bounded
by the number of distinct objects, whatever the event rate (client-go's queue is unbounded for
the same reason: it never holds more than one entry per key).

Who waits when the queue is full
--------------------------------
Only a producer offering a *new* key (neither waiting, parked nor processing) to `await add(key)`
waits, and only while `maxsize` keys are waiting. `add_nowait(key)` raises `asyncio.QueueFull`
instead. Inside kopf this matters: kopf runs one worker task per object, fed by an unbounded
per-object queue of raw events, processed in order without coalescing. A handler awaiting `add`
blocks only its own object's kopf worker; that object's raw events pile up in kopf's per-object
queue meanwhile, while other objects' handlers go on (until they too meet a full queue). So the
backlog moves upstream, into kopf, for the blocked objects only and only while we are full; once
the key is in, every further event of that object is deduped here. Enqueue from
`@kopf.on.event` handlers, which keep no state, so a parked handler delays no kopf bookkeeping.
Blocked producers get in in the order they came: a room freed by `get` is promised to the first
of them, and a newcomer (`add` or `add_nowait`) that arrives before that producer runs finds
the queue full, so nobody is starved by a stream of later keys.
The operator chooses per call site: `await add` where stalling that one object is the right
backpressure (event handlers), `add_nowait` where the caller must not stall (sync code, a
periodic resync over all objects), falling back on `QueueFull` to e.g. `add_after(key, delay)`
or simply to the next resync.

Why delayed adds and requeues never block
-----------------------------------------
`add_after`, `add_rate_limited` and `done` are called by the workers themselves, about keys the
queue already accepted. If they waited for room that only the workers can make, a full queue would
deadlock the whole pool. So they are plain calls. When such a key becomes ready (its deadline
passed, or `done` finds it dirty) and the FIFO is full, it is *parked*: held, in order, and moved
into the FIFO as soon as a `get` makes room, ahead of any producer blocked in `add`. It is never
lost and never pushes `len(q)` past `maxsize`; the parked keys are at most one per distinct key
(usually at most one per worker plus the keys whose delay ran out while full). The choice favours
retries of known objects over new objects when the operator is saturated.

One timer task serves the heap of delayed keys (not one task per key): it sleeps on the clock
until the earliest deadline or until an earlier entry arrives, then admits what is due.

Shutdown (like client-go)
-------------------------
After `shutdown()` adds of every kind are ignored, producers blocked in `add` return, delayed keys
are dropped, and `get` keeps handing out what is waiting or parked, then raises `QueueShutDown`.
`await shutdown_with_drain()` also waits until no key is processing. Nothing is lost for good:
a restarted operator lists every object again.

The Go lesson this grew from (/work/shared/seed/, K8S Lab day 38)
-----------------------------------------------------------------
* `jobs := make(chan int, 2)`, the buffer size  ->  `WorkQueue(maxsize=2)`, counted in
  distinct keys.
* `jobs <- j`, blocking while the buffer is full (backpressure)  ->  `await q.add(key)`.
* `select { case jobs <- j: default: }`, the non-blocking send  ->  `q.add_nowait(key)`, which
  raises `asyncio.QueueFull` where the channel would take the `default` branch.
* `close(jobs)`  ->  `q.shutdown()`; like receivers on a closed channel, `get` still returns
  what is buffered, then reports the end (`QueueShutDown` instead of `ok == false`).
* three `worker` goroutines ranging over `jobs`  ->  `labop.runtime.workers.WorkerPool`, whose workers
  `get` until `QueueShutDown`.

What a channel lacks and a work queue adds: dedupe, "never two workers on one key", delayed and
rate-limited retries, and `done` to say when work ended.

All methods run on the event loop's thread; `add`, `get` and `shutdown_with_drain` are
coroutines, the rest are plain calls, usable from sync code running on that thread (the first
`add_after` with a positive delay starts the timer task, so it needs the running loop).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable, Hashable
from typing import Final, Generic, Protocol, TypeAlias, TypeVar

from labkit.logs import log_event
from labop.runtime.clock import Clock, MonotonicClock
from labop.runtime.ratelimit import RateLimiter, default_controller_rate_limiter

__all__ = ["QueueMetricsSink", "QueueShutDown", "WorkQueue"]

K = TypeVar("K", bound=Hashable)

logger = logging.getLogger(__name__)


class QueueShutDown(Exception):
    """Raised by `get()` once the queue is shut down and has nothing left to hand out."""


class QueueMetricsSink(Protocol):
    """What the queue reports; `labop.runtime.metrics.QueueMetrics` implements it for Prometheus."""

    def add(self, key: Hashable) -> None:
        """`key` became dirty (needs processing)."""
        ...

    def get(self, key: Hashable) -> None:
        """`key` was handed to a worker."""
        ...

    def done(self, key: Hashable) -> None:
        """The worker holding `key` is done."""
        ...

    def retry(self) -> None:
        """A delayed add was requested."""
        ...


class _NoMetrics:
    """The sink for `metrics=None`: reports nothing."""

    def add(self, key: Hashable) -> None:
        pass

    def get(self, key: Hashable) -> None:
        pass

    def done(self, key: Hashable) -> None:
        pass

    def retry(self) -> None:
        pass


_Line: TypeAlias = "deque[asyncio.Future[object]]"  # callers waiting their turn, first come first served


class WorkQueue(Generic[K]):
    """A bounded, deduplicating, delaying, rate-limiting queue of keys (see the module doc)."""

    def __init__(
        self,
        maxsize: int,
        *,
        name: str = "workqueue",
        clock: Clock | None = None,
        rate_limiter: RateLimiter[K] | None = None,
        metrics: QueueMetricsSink | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self._maxsize = maxsize
        self._name = name
        self._clock: Clock = clock or MonotonicClock()
        self._rate_limiter: RateLimiter[K] = rate_limiter or default_controller_rate_limiter(self._clock)
        self._metrics: QueueMetricsSink = metrics or _NoMetrics()

        self._fifo: deque[K] = deque()  # waiting; len <= maxsize
        self._parked: deque[K] = deque()  # accepted, no room yet; non-empty only while fifo is full
        self._dirty: set[K] = set()  # needs processing: waiting, parked, or processing-and-dirty
        self._processing: set[K] = set()
        self._shutting_down = False

        self._getters: _Line = deque()
        self._putters: _Line = deque()
        # Rooms freed by `get` and promised to a woken producer that has not run yet. Counting
        # them as taken keeps a newcomer from grabbing the room in between (no barging): blocked
        # producers get in in the order they came.
        self._promised = 0
        self._putters_by_key: dict[K, list[asyncio.Future[object]]] = {}  # released once the key is in
        self._drainers: _Line = deque()

        # add_after: key -> (ready_at, seq) is the live entry; heap entries not matching it are stale.
        self._delayed: dict[K, tuple[float, int]] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = itertools.count()
        self._timer_task: asyncio.Task[None] | None = None
        self._timer_wakeup: asyncio.Future[None] | None = None

    # ----------------------------------------------------------------- introspection

    def __len__(self) -> int:
        """Keys waiting in the FIFO (at most `maxsize`)."""
        return len(self._fifo)

    def __repr__(self) -> str:
        return (
            f"<WorkQueue {self._name} waiting={len(self._fifo)}/{self._maxsize} parked={len(self._parked)}"
            f" processing={len(self._processing)} delayed={len(self._delayed)}"
            f"{' shutting-down' if self._shutting_down else ''}>"
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def rate_limiter(self) -> RateLimiter[K]:
        return self._rate_limiter

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    @property
    def parked_count(self) -> int:
        """Keys accepted without waiting (requeues, ready delayed keys) held until there is room."""
        return len(self._parked)

    @property
    def processing_count(self) -> int:
        return len(self._processing)

    @property
    def delayed_count(self) -> int:
        """Keys in the `add_after` heap, not yet due."""
        return len(self._delayed)

    def full(self) -> bool:
        """True when a new key would have to wait (`add`) or be refused (`add_nowait`)."""
        return not self._has_room() or any(not waiter.done() for waiter in self._putters)

    def _has_room(self) -> bool:
        return len(self._fifo) + self._promised < self._maxsize

    # ----------------------------------------------------------------- adding

    async def add(self, key: K) -> None:
        """Queue `key`; waits only if it is new to the queue and `maxsize` keys are waiting."""
        promised = False
        while not self._absorbed(key):
            if promised:
                self._promised -= 1  # the room kept for us is ours now
                promised = False
                if self._has_room():
                    self._insert_new(key)
                    return
            elif not self.full():
                self._insert_new(key)
                return
            promised = await self._wait_for_room(key)
        if promised:
            # Woken for a room we did not use (the key got deduped, or shutdown): pass it on.
            self._promised -= 1
            self._pass_room_on()

    def add_nowait(self, key: K) -> None:
        """Like `add`, but raise `asyncio.QueueFull` where `add` would wait."""
        if self._absorbed(key):
            return
        if self.full():
            raise asyncio.QueueFull(f"work queue {self._name} has {self._maxsize} keys waiting")
        self._insert_new(key)

    def add_after(self, key: K, seconds: float) -> None:
        """Queue `key` once `seconds` have passed; never blocks (parks the key if full when due)."""
        if self._shutting_down:
            return
        self._metrics.retry()
        if not seconds > 0:  # also catches NaN
            self._admit(key)
            return
        ready_at = self._clock.now() + seconds
        current = self._delayed.get(key)
        if current is not None and current[0] <= ready_at:
            return  # the earlier deadline wins
        seq = next(self._seq)
        self._delayed[key] = (ready_at, seq)
        heapq.heappush(self._heap, (ready_at, seq, key))
        self._compact_heap()
        if self._heap[0][1] == seq:
            self._wake_timer()  # new earliest deadline: the timer must re-arm
        self._ensure_timer()

    def add_rate_limited(self, key: K) -> float | None:
        """Queue `key` after the rate limiter's delay (one more failure of `key`).

        Returns that delay in seconds, for the caller's log line, or None if the queue is shut
        down and the add was ignored.
        """
        if self._shutting_down:
            return None
        delay = self._rate_limiter.when(key)
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """Reset the rate limiter's failure count for `key` (call `done` as well)."""
        self._rate_limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return self._rate_limiter.num_requeues(key)

    # ----------------------------------------------------------------- taking

    async def get(self) -> K:
        """The next waiting key (FIFO); waits while empty; `QueueShutDown` once drained."""
        while not self._fifo:
            if self._shutting_down:
                raise QueueShutDown(self._name)
            await self._wait_in_line(self._getters, self._pass_key_on)
        key = self._fifo.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        self._metrics.get(key)
        self._refill()
        return key

    def done(self, key: K) -> None:
        """The worker holding `key` finished; queue it again if it was added meanwhile."""
        if key not in self._processing:
            return  # not ours (or done twice): nothing to undo
        self._processing.remove(key)
        self._metrics.done(key)
        if key in self._dirty:
            self._enqueue(key)
        if not self._processing:
            self._wake_all(self._drainers)

    # ----------------------------------------------------------------- shutdown

    def shutdown(self) -> None:
        """Ignore adds from now on, drop delayed keys, wake everyone; `get` drains, then raises."""
        if self._shutting_down:
            return
        self._shutting_down = True
        self._delayed.clear()
        self._heap.clear()
        self._wake_timer()
        self._wake_all(self._putters)
        self._wake_all(self._getters)

    async def shutdown_with_drain(self) -> None:
        """`shutdown()`, then return once no key is being processed."""
        self.shutdown()
        while self._processing:
            await self._wait_in_line(self._drainers, _nothing)

    # ----------------------------------------------------------------- internals: keys

    def _absorbed(self, key: K) -> bool:
        """True when `key` needs no new slot: ignored (shutdown), deduped, or marked for `done`."""
        if self._shutting_down or key in self._dirty:
            return True
        if key in self._processing:
            self._mark_dirty(key)  # requeued by done(); never handed to a second worker
            return True
        return False

    def _mark_dirty(self, key: K) -> None:
        self._dirty.add(key)
        self._metrics.add(key)
        # Producers still waiting for room to add this very key have nothing left to wait for.
        for waiter in self._putters_by_key.pop(key, ()):
            if not waiter.done():
                waiter.set_result(None)

    def _insert_new(self, key: K) -> None:
        # Callers checked there is room; room implies nothing is parked, so order is kept.
        self._mark_dirty(key)
        self._fifo.append(key)
        self._wake_first(self._getters)

    def _admit(self, key: K) -> None:
        """Non-blocking add for requeues and due delayed keys: parks instead of waiting."""
        if self._absorbed(key):
            return
        self._mark_dirty(key)
        self._enqueue(key)

    def _enqueue(self, key: K) -> None:
        if not self._has_room():
            self._parked.append(key)
        else:
            self._fifo.append(key)
            self._wake_first(self._getters)

    def _refill(self) -> None:
        """A `get` made room: parked keys first, then one producer blocked in `add`."""
        self._pass_room_on()

    # ----------------------------------------------------------------- internals: waiting

    async def _wait_for_room(self, key: K) -> bool:
        """Wait in the producers' line; True when woken with a room promised to us."""
        waiter: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        same_key = self._putters_by_key.setdefault(key, [])
        same_key.append(waiter)

        def hand_back() -> None:  # cancelled after being woken: the promise goes to the next one
            if waiter.result() is _ROOM:
                self._promised -= 1
            self._pass_room_on()

        try:
            await self._wait_in_line(self._putters, hand_back, waiter)
            return waiter.result() is _ROOM
        finally:
            if waiter in same_key:  # still listed: not released by _mark_dirty
                same_key.remove(waiter)
                if not same_key and self._putters_by_key.get(key) is same_key:
                    del self._putters_by_key[key]

    async def _wait_in_line(
        self, line: _Line, pass_on: Callable[[], None], waiter: asyncio.Future[object] | None = None
    ) -> None:
        if waiter is None:
            waiter = asyncio.get_running_loop().create_future()
        line.append(waiter)
        try:
            await waiter
        except BaseException:
            # Race: we may have been woken (and so chosen) just before being cancelled. The
            # wake-up must not die with us, or a key/room would sit unclaimed: hand it on.
            woken = waiter.done() and not waiter.cancelled()
            waiter.cancel()
            if woken:
                pass_on()
            elif waiter in line:
                line.remove(waiter)
            raise

    def _pass_room_on(self) -> None:
        """Room is free (a `get`, or a promise handed back unused): parked keys first, then one
        blocked producer. Race: a key can be parked while the only room is promised to a
        producer whose own key then gets deduped; the room it hands back must reach the parked
        key, or that key would wait for a `get` that never comes (the FIFO being empty)."""
        while self._parked and self._has_room():
            self._fifo.append(self._parked.popleft())
            self._wake_first(self._getters)
        if self._has_room() and self._wake_first(self._putters, _ROOM):
            self._promised += 1

    def _pass_key_on(self) -> None:
        if self._fifo:
            self._wake_first(self._getters)

    @staticmethod
    def _wake_first(line: _Line, result: object = None) -> bool:
        while line:
            waiter = line.popleft()
            if not waiter.done():
                waiter.set_result(result)
                return True
        return False

    @staticmethod
    def _wake_all(line: _Line) -> None:
        while line:
            waiter = line.popleft()
            if not waiter.done():
                waiter.set_result(None)

    # ----------------------------------------------------------------- internals: delays

    def _ensure_timer(self) -> None:
        if self._timer_task is None or self._timer_task.done():
            # Lazily, because the queue may be built before the loop runs (e.g. at import).
            self._timer_task = asyncio.get_running_loop().create_task(
                self._run_timer(), name=f"workqueue-{self._name}-timer"
            )
            self._timer_task.add_done_callback(self._timer_ended)

    async def _run_timer(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._shutting_down:
            self._admit_due()
            self._timer_wakeup = loop.create_future()
            deadline = self._heap[0][0] if self._heap else None
            await self._clock.wait_until(self._timer_wakeup, deadline)
        self._timer_wakeup = None

    def _admit_due(self) -> None:
        now = self._clock.now()
        while self._heap and self._heap[0][0] <= now:
            ready_at, seq, key = heapq.heappop(self._heap)
            if self._delayed.get(key) == (ready_at, seq):
                del self._delayed[key]
                self._admit(key)

    def _wake_timer(self) -> None:
        if self._timer_wakeup is not None and not self._timer_wakeup.done():
            self._timer_wakeup.set_result(None)

    def _compact_heap(self) -> None:
        # An earlier deadline leaves the later entry behind as stale; rebuild before they pile up.
        if len(self._heap) > 2 * len(self._delayed) + 64:
            self._heap = [(at, seq, key) for key, (at, seq) in self._delayed.items()]
            heapq.heapify(self._heap)

    def _timer_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # Delayed keys stay in the heap; the next add_after starts a new timer.
            log_event(
                logger, "workqueue timer failed", logging.ERROR, exc_info=task.exception(), queue=self._name
            )


_ROOM: Final = "room"  # a producer's wake-up that carries a promised room


def _nothing() -> None:
    pass

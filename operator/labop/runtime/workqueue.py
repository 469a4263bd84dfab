"""The work queue: client-go's workqueue contract with two priorities, bounded, in pure asyncio.

Role
----
Event sources (kopf handlers) put keys here, e.g. `(namespace, name)`; workers take them out
and reconcile them. Why a queue of keys and not of events: a flood of events for one object is
one entry, and a reconcile always reads the latest state anyway. Nothing here imports
Kubernetes or kopf.

Priorities: new work first
--------------------------
Like controller-runtime's priority queue (its default since v0.23), every add says how soon the
key is wanted: `NORMAL` (the default: a creation, a spec change, a retry of such work) or `LOW`
(the initial listing after a start, a periodic resync, an update that changed nothing the
reconciler acts on). Why: after a restart with N objects every one of them is listed, and in a
single FIFO a LabServer created a second later waits behind all N reconciles of objects that
are already fine. With two lanes it is the next key handed out.

* `get` hands out the oldest normal key before any low key, with one exception against
  starvation (below). Within a lane, first come first served.
* A key waiting at low priority that gets a normal add *moves up*: it leaves the low lane and
  joins the normal lane at the back, i.e. it takes its place among normal keys by the time of
  the add that promoted it. It is still one entry (dedupe is unchanged).
* A key being processed and added again ("processing and dirty") remembers the highest priority
  it was asked for; `done` queues it again in that lane.
* Delayed adds (`add_after`, `add_rate_limited`) carry a priority too, used when they come due;
  a key delayed twice keeps the earlier deadline and the higher priority. The worker pool retries
  a key at the priority it was handed out with (as controller-runtime does): a failing resync key
  stays behind new work, a failing new object keeps its place ahead of the backlog.

No starvation: when keys of both priorities are waiting, at least one `get` in every
`LOW_EVERY` (8) hands out the oldest low key. So a steady stream of normal keys slows the low
lane to an eighth of the workers' rate at worst, never to zero, and new work still gets seven
slots in eight. Why a count and not aging (a low key older than X served as normal): a count
needs no clock, gives the same order whatever the reconciles cost, and bounds the wait of the
oldest low key in gets (at most `LOW_EVERY - 1` normal keys go before it).

What a key can be
-----------------
* waiting, normal: in the FIFO of normal keys; never more than `maxsize` of them.
* parked: a normal key accepted without room in that FIFO (`admit`, a requeue, a due delayed
  key: see "Who never waits" and "never block" below). Served before any brand-new normal key,
  in order.
* waiting, low: in the low lane, an ordered set (oldest first). Not bounded by `maxsize`: see
  "who waits"; there is at most one entry per distinct key, so it is bounded by the number of
  distinct objects the caller's cache holds.
* processing: handed to a worker by `get`, until that worker calls `done(key)`.
* processing and dirty: added again while being processed. It is NOT queued a second time (no
  two workers ever hold one key); `done` queues it again, so the change is not missed.
* delayed: in the heap of `add_after`, until its deadline; one entry per key, earliest wins.

`len(q)` counts the waiting keys of both lanes (what `get` could hand out now), `q.low_count`
those of the low lane. Adding a key that is waiting or parked does nothing but the move up
(dedupe); that is why memory is bounded by the number of distinct objects, whatever the event
rate (client-go's queue is unbounded for the same reason: it never holds more than one entry
per key).

Who waits
---------
Only a producer offering a *new* key (neither waiting, parked nor processing) at *normal*
priority to `await add(key)` waits, and only while `maxsize` normal keys are waiting.
`add_nowait(key)` raises `asyncio.QueueFull` instead, and `admit(key)` parks the key (below).
Blocked producers get in in the order they came: a room freed by `get` is promised to the first
of them, and a newcomer (`add` or `add_nowait`) that arrives before that producer runs finds
the queue full, so nobody is starved by a stream of later keys.

Who never waits
---------------
Backpressure helps only a producer that holds nothing while it waits: the Go lesson's sender
blocked on a full channel, a batch job, a test. A watch is not one. The apiserver does not
slow down for a slow watcher (it drops it, and the relist costs more), and kopf, whose
handlers feed the operator's queue, goes on reading while a handler waits: it keeps each later
event, parsed, in per-object queues of its own without bound, and its cap on per-object tasks
bounds the tasks, not those queues. A waiting handler thus turns a key of a few bytes into
kilobytes of JSON held upstream; at 3,000 LabServers created at once the operator kept 27 KiB
per LabServer with waiting handlers and 12 KiB with `admit` (BENCHMARKS.md). So event sources
use `admit(key, priority)`: never waits, never refused; a new normal key that finds the FIFO
full is *parked*, in order, and served before any normal key that comes later. What bounds
memory is then the dedupe: at most one entry per distinct key in the whole queue (FIFO,
parked, low lane), so the queue never holds more entries than the caller's cache holds objects,
whatever the event rate. That is client-go's bound too (its queue has no size, only dedupe).

Low-priority adds never wait and are never refused (`add(key, LOW)` returns at once,
`add_nowait(key, LOW)` never raises). Why: with 5,000 objects listed after a restart and a
bound of 1,000, a low producer that waited would hold its kopf worker, and a full queue of low
keys would hold back the normal key of an object created right after, which is exactly the
case priorities are for. The bound's job is to keep memory and the event backlog in check
when *new* keys arrive faster than they are processed; low keys are keys of objects the
caller's cache already holds (a relist, a resync, an update of one of them), so their lane
is bounded by that cache, one entry per object, and needs no backpressure of its own. A
periodic resync therefore reaches every key, whatever their number (`Controller.resync`).
A normal add that moves a low key up does not wait either: the key already has its entry.

The caller chooses per call site: `await add` where stalling the producer is the right
backpressure, `add_nowait` where it must not stall and has a fallback for `QueueFull` (e.g.
`add_after(key, delay)`), `admit` where it can neither wait nor be refused (event sources).

Why delayed adds and requeues never block
-----------------------------------------
`add_after`, `add_rate_limited` and `done` are called by the workers themselves, about keys the
queue already accepted. If they waited for room that only the workers can make, a full queue would
deadlock the whole pool. So they are plain calls. When such a key becomes ready (its deadline
passed, or `done` finds it dirty) at normal priority and the FIFO is full, it is *parked*: held,
in order, and moved into the FIFO as soon as a `get` makes room, ahead of any producer blocked
in `add`. It is never lost and never pushes the normal FIFO past `maxsize`; the parked keys are
at most one per distinct key. The choice favours retries of known objects over new objects
when the operator is saturated. At low priority such a key simply joins the low lane.

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
rate-limited retries, priorities, and `done` to say when work ended.

All methods run on the event loop's thread; `add`, `get`, `get_with_priority`,
`wait_low_drained` and `shutdown_with_drain` are coroutines, the rest are plain calls, usable
from sync code running on that thread (the first `add_after` with a positive delay starts the
timer task, so it needs the running loop).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from enum import IntEnum
from typing import Final, Generic, Protocol, TypeAlias, TypeVar

from labkit.logs import log_event
from labop.runtime.clock import Clock, MonotonicClock
from labop.runtime.ratelimit import RateLimiter, default_controller_rate_limiter

__all__ = ["LOW", "LOW_EVERY", "NORMAL", "Priority", "QueueMetricsSink", "QueueShutDown", "WorkQueue"]

K = TypeVar("K", bound=Hashable)

logger = logging.getLogger(__name__)


class Priority(IntEnum):
    """How soon a key is wanted; higher first. The values are controller-runtime's
    (`handler.LowPriority` is -100, the default 0), so that a log line reads the same."""

    LOW = -100
    NORMAL = 0

    @property
    def label(self) -> str:
        """ "low" or "normal": the `priority` label of `workqueue_depth`."""
        return self.name.lower()


LOW: Final = Priority.LOW
NORMAL: Final = Priority.NORMAL
# When keys of both priorities wait, at least one get in this many serves the oldest low key.
LOW_EVERY: Final = 8


class QueueShutDown(Exception):
    """Raised by `get()` once the queue is shut down and has nothing left to hand out."""


class QueueMetricsSink(Protocol):
    """What the queue reports; `labop.runtime.metrics.QueueMetrics` implements it for Prometheus."""

    def add(self, key: Hashable, priority: Priority) -> None:
        """`key` became dirty (needs processing) at `priority`."""
        ...

    def promote(self, key: Hashable) -> None:
        """`key`, dirty at low priority, was asked for at normal priority: it moved up."""
        ...

    def get(self, key: Hashable, priority: Priority) -> None:
        """`key` was handed to a worker from the lane of `priority`."""
        ...

    def done(self, key: Hashable) -> None:
        """The worker holding `key` is done."""
        ...

    def retry(self) -> None:
        """A delayed add was requested."""
        ...


class _NoMetrics:
    """The sink for `metrics=None`: reports nothing."""

    def add(self, key: Hashable, priority: Priority) -> None:
        pass

    def promote(self, key: Hashable) -> None:
        pass

    def get(self, key: Hashable, priority: Priority) -> None:
        pass

    def done(self, key: Hashable) -> None:
        pass

    def retry(self) -> None:
        pass


_Line: TypeAlias = "deque[asyncio.Future[object]]"  # callers waiting their turn, first come first served


class WorkQueue(Generic[K]):
    """A bounded, deduplicating, prioritising, delaying, rate-limiting queue of keys (see the module doc)."""

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

        self._fifo: deque[K] = deque()  # waiting at normal priority; len <= maxsize
        self._parked: deque[K] = deque()  # normal, accepted, no room yet; non-empty only while fifo is full
        # Waiting at low priority, oldest first; the value is the key's place in the lane (its
        # sequence number), for `wait_low_drained`. OrderedDict: O(1) pop of the oldest and
        # O(1) removal of a key that moves up (a plain dict's oldest pop is O(n) after deletes).
        self._low: OrderedDict[K, int] = OrderedDict()
        self._low_seq = itertools.count(1)
        self._low_last = 0  # sequence number of the latest key put in the low lane
        self._normal_streak = 0  # normal keys handed out in a row while low keys waited
        self._dirty: set[K] = (
            set()
        )  # needs processing: waiting (either lane), parked, or processing-and-dirty
        self._requeue_low: set[K] = set()  # processing-and-dirty keys asked for at low priority only
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
        # wait_low_drained callers: (the low lane's last sequence number when they came, waiter).
        self._low_watchers: deque[tuple[int, asyncio.Future[object]]] = deque()

        # add_after: key -> (ready_at, seq, priority) is the live entry; heap entries whose
        # (ready_at, seq) do not match it are stale.
        self._delayed: dict[K, tuple[float, int, Priority]] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = itertools.count()
        self._timer_task: asyncio.Task[None] | None = None
        self._timer_wakeup: asyncio.Future[None] | None = None

    # ----------------------------------------------------------------- introspection

    def __len__(self) -> int:
        """Keys waiting in either lane: what `get` could hand out now (parked keys excluded)."""
        return len(self._fifo) + len(self._low)

    def __repr__(self) -> str:
        return (
            f"<WorkQueue {self._name} waiting={len(self._fifo)}/{self._maxsize} low={len(self._low)}"
            f" parked={len(self._parked)} processing={len(self._processing)} delayed={len(self._delayed)}"
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
    def low_count(self) -> int:
        """Keys waiting at low priority (not bounded by `maxsize`)."""
        return len(self._low)

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
        """True when a new normal key would have to wait (`add`) or be refused (`add_nowait`)."""
        return not self._has_room() or any(not waiter.done() for waiter in self._putters)

    def _has_room(self) -> bool:
        return len(self._fifo) + self._promised < self._maxsize

    # ----------------------------------------------------------------- adding

    async def add(self, key: K, priority: Priority = NORMAL) -> None:
        """Queue `key`; waits only if it is new to the queue, normal, and `maxsize` normal keys wait."""
        if priority < NORMAL:
            self._add_low(key)
            return
        promised = False
        while not self._absorbed(key, NORMAL):
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

    def add_nowait(self, key: K, priority: Priority = NORMAL) -> None:
        """Like `add`, but raise `asyncio.QueueFull` where `add` would wait (never for `LOW`)."""
        if priority < NORMAL:
            self._add_low(key)
            return
        if self._absorbed(key, NORMAL):
            return
        if self.full():
            raise asyncio.QueueFull(f"work queue {self._name} has {self._maxsize} keys waiting")
        self._insert_new(key)

    def admit(self, key: K, priority: Priority = NORMAL) -> None:
        """Queue `key` without ever waiting or being refused: a new normal key that finds the
        FIFO full is parked (in order, served before any later normal key), a low one joins
        the low lane. For producers that cannot take backpressure (see "Who never waits");
        requeues and due delayed keys come in the same way."""
        if self._absorbed(key, priority):
            return
        self._mark_dirty(key, priority)
        if priority < NORMAL:
            self._push_low(key)
        else:
            self._enqueue(key)

    def add_after(self, key: K, seconds: float, priority: Priority = NORMAL) -> None:
        """Queue `key` at `priority` once `seconds` have passed; never blocks (a normal key due
        while the FIFO is full is parked)."""
        if self._shutting_down:
            return
        self._metrics.retry()
        if not seconds > 0:  # also catches NaN
            self.admit(key, priority)
            return
        ready_at = self._clock.now() + seconds
        current = self._delayed.get(key)
        if current is not None:
            priority = max(priority, current[2])  # asked twice: the higher priority holds
            if current[0] <= ready_at:  # the earlier deadline wins
                self._delayed[key] = (current[0], current[1], priority)
                return
        seq = next(self._seq)
        self._delayed[key] = (ready_at, seq, priority)
        heapq.heappush(self._heap, (ready_at, seq, key))
        self._compact_heap()
        if self._heap[0][1] == seq:
            self._wake_timer()  # new earliest deadline: the timer must re-arm
        self._ensure_timer()

    def add_rate_limited(self, key: K, priority: Priority = NORMAL) -> float | None:
        """Queue `key` at `priority` after the rate limiter's delay (one more failure of `key`).

        Returns that delay in seconds, for the caller's log line, or None if the queue is shut
        down and the add was ignored.
        """
        if self._shutting_down:
            return None
        delay = self._rate_limiter.when(key)
        self.add_after(key, delay, priority)
        return delay

    def forget(self, key: K) -> None:
        """Reset the rate limiter's failure count for `key` (call `done` as well)."""
        self._rate_limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return self._rate_limiter.num_requeues(key)

    # ----------------------------------------------------------------- taking

    async def get(self) -> K:
        """The next key (normal lane first, see the module doc); waits while empty;
        `QueueShutDown` once drained."""
        while not self._fifo and not self._low:
            if self._shutting_down:
                raise QueueShutDown(self._name)
            await self._wait_in_line(self._getters, self._pass_key_on)
        return self._take()[0]

    async def get_with_priority(self) -> tuple[K, Priority]:
        """Like `get`, with the priority the key was handed out at (for its retries)."""
        while not self._fifo and not self._low:
            if self._shutting_down:
                raise QueueShutDown(self._name)
            await self._wait_in_line(self._getters, self._pass_key_on)
        return self._take()

    def done(self, key: K) -> None:
        """The worker holding `key` finished; queue it again if it was added meanwhile."""
        if key not in self._processing:
            return  # not ours (or done twice): nothing to undo
        self._processing.remove(key)
        self._metrics.done(key)
        if key in self._dirty:
            if key in self._requeue_low:
                self._requeue_low.remove(key)
                self._push_low(key)
            else:
                self._enqueue(key)
        if not self._processing:
            self._wake_all(self._drainers)

    async def wait_low_drained(self) -> None:
        """Return once every key waiting at low priority *now* has left the low lane: handed to
        a worker, moved up by a normal add, or the queue shut down. Keys put in the low lane
        later are not waited for (a resync waits for its own pass, see `Controller`)."""
        if not self._low or self._shutting_down:
            return
        waiter: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._low_watchers.append((self._low_last, waiter))
        try:
            await waiter
        finally:
            waiter.cancel()  # no-op once done; a cancelled one is skipped and dropped later

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
        while self._low_watchers:
            _, waiter = self._low_watchers.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def shutdown_with_drain(self) -> None:
        """`shutdown()`, then return once no key is being processed."""
        self.shutdown()
        while self._processing:
            await self._wait_in_line(self._drainers, _nothing)

    # ----------------------------------------------------------------- internals: keys

    def _absorbed(self, key: K, priority: Priority) -> bool:
        """True when `key` needs no new slot: ignored (shutdown), deduped (perhaps moved up),
        or marked for `done`."""
        if self._shutting_down:
            return True
        if key in self._dirty:
            if priority >= NORMAL:
                self._move_up(key)
            return True
        if key in self._processing:
            self._mark_dirty(key, priority)  # requeued by done(); never handed to a second worker
            if priority < NORMAL:
                self._requeue_low.add(key)
            return True
        return False

    def _move_up(self, key: K) -> None:
        """A normal add for a dirty key: if it is low (waiting, or processing and dirty), it is
        normal from now on. A waiting one joins the normal lane at the back (parked when full:
        it has its entry already, so the bound does not hold it back)."""
        if key in self._low:
            del self._low[key]
            self._metrics.promote(key)
            self._low_left()
            self._enqueue(key)
        elif key in self._requeue_low:
            self._requeue_low.remove(key)
            self._metrics.promote(key)

    def _mark_dirty(self, key: K, priority: Priority) -> None:
        self._dirty.add(key)
        self._metrics.add(key, priority)
        # Producers still waiting for room to add this very key have nothing left to wait for
        # (if it got in at low priority, they wake, find it dirty, and move it up).
        for waiter in self._putters_by_key.pop(key, ()):
            if not waiter.done():
                waiter.set_result(None)

    def _add_low(self, key: K) -> None:
        if self._absorbed(key, LOW):
            return
        self._mark_dirty(key, LOW)
        self._push_low(key)

    def _insert_new(self, key: K) -> None:
        # Callers checked there is room; room implies nothing is parked, so order is kept.
        self._mark_dirty(key, NORMAL)
        self._fifo.append(key)
        self._wake_first(self._getters)

    def _enqueue(self, key: K) -> None:
        if not self._has_room():
            self._parked.append(key)
        else:
            self._fifo.append(key)
            self._wake_first(self._getters)

    def _push_low(self, key: K) -> None:
        self._low_last = next(self._low_seq)
        self._low[key] = self._low_last
        self._wake_first(self._getters)

    def _take(self) -> tuple[K, Priority]:
        """The next key, from a non-empty queue: normal first, but the oldest low key when
        `LOW_EVERY - 1` normal keys in a row went ahead of it (no starvation)."""
        if self._low and (not self._fifo or self._normal_streak >= LOW_EVERY - 1):
            key = self._low.popitem(last=False)[0]
            priority = LOW
            self._normal_streak = 0
            self._low_left()
        else:
            key = self._fifo.popleft()
            priority = NORMAL
            self._normal_streak = self._normal_streak + 1 if self._low else 0
        self._dirty.discard(key)
        self._processing.add(key)
        self._metrics.get(key, priority)
        if priority is NORMAL:
            self._refill()
        return key, priority

    def _low_left(self) -> None:
        """A key left the low lane: wake the `wait_low_drained` callers whose keys are all out."""
        if not self._low_watchers:
            return
        oldest = next(iter(self._low.values())) if self._low else None
        while self._low_watchers and (oldest is None or self._low_watchers[0][0] < oldest):
            _, waiter = self._low_watchers.popleft()
            if not waiter.done():
                waiter.set_result(None)

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
        if self._fifo or self._low:
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
            entry = self._delayed.get(key)
            if entry is not None and entry[:2] == (ready_at, seq):
                del self._delayed[key]
                self.admit(key, entry[2])

    def _wake_timer(self) -> None:
        if self._timer_wakeup is not None and not self._timer_wakeup.done():
            self._timer_wakeup.set_result(None)

    def _compact_heap(self) -> None:
        # An earlier deadline leaves the later entry behind as stale; rebuild before they pile up.
        if len(self._heap) > 2 * len(self._delayed) + 64:
            self._heap = [(at, seq, key) for key, (at, seq, _) in self._delayed.items()]
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

"""Rate limiters: how long a failing key waits before its next try.

The work queue's `add_rate_limited` asks a limiter `when(key)` and delays the key by that much;
`forget` after a success resets it. The default is controller-runtime's: the larger of a
per-key exponential backoff (5 ms doubling up to 1000 s) and one token bucket shared by all
keys (10 per second, burst 100), so one key backs off on its own while a storm of failing keys
is held to an overall rate.

Every `when` call counts as one failure, as in client-go; only `forget` resets a key.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

from labop.runtime.clock import Clock, MonotonicClock

K = TypeVar("K", bound=Hashable)
K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)


class RateLimiter(Protocol[K_contra]):
    """The pluggable part of the queue's retry policy."""

    def when(self, key: K_contra) -> float:
        """Record one more failure of `key`; return the seconds to wait before the next try."""
        ...

    def forget(self, key: K_contra) -> None:
        """Stop tracking `key` (it succeeded or was given up)."""
        ...

    def num_requeues(self, key: K_contra) -> int:
        """How many failures of `key` are being counted."""
        ...


class ItemExponentialFailureRateLimiter(Generic[K]):
    """`base * 2**failures`, capped at `cap`, counted per key."""

    def __init__(self, base: float = 0.005, cap: float = 1000.0) -> None:
        if base <= 0 or cap < base:
            raise ValueError("need 0 < base <= cap")
        self._base = base
        self._cap = cap
        self._failures: dict[K, int] = {}

    def when(self, key: K) -> float:
        exponent = self._failures.get(key, 0)
        self._failures[key] = exponent + 1
        # 2**1100 would overflow a float: past ~1000 doublings every base is long capped anyway.
        if exponent >= 1000:
            return self._cap
        return min(self._base * 2.0**exponent, self._cap)

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        return self._failures.get(key, 0)


class BucketRateLimiter(Generic[K]):
    """A token bucket shared by all keys: `qps` tokens a second, at most `burst` saved up.

    Each `when` takes a token, going into debt when none is left; the delay is the time the
    debt takes to be paid back, so a burst of failures is spread out at `qps`.
    """

    def __init__(self, qps: float = 10.0, burst: int = 100, clock: Clock | None = None) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("need qps > 0 and burst >= 1")
        self._qps = qps
        self._burst = float(burst)
        self._clock = clock or MonotonicClock()
        self._tokens = float(burst)
        self._last = self._clock.now()

    def when(self, key: K) -> float:
        now = self._clock.now()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._qps)
        self._last = now
        self._tokens -= 1.0
        return max(0.0, -self._tokens / self._qps)

    def forget(self, key: K) -> None:
        """The bucket is not per key: nothing to forget."""

    def num_requeues(self, key: K) -> int:
        return 0


class MaxOfRateLimiter(Generic[K]):
    """The longest delay of several limiters; every one of them sees every failure."""

    def __init__(self, *limiters: RateLimiter[K]) -> None:
        if not limiters:
            raise ValueError("need at least one limiter")
        self._limiters = limiters

    def when(self, key: K) -> float:
        # A list, not a generator inside max(): each limiter must count the failure.
        return max([limiter.when(key) for limiter in self._limiters])

    def forget(self, key: K) -> None:
        for limiter in self._limiters:
            limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return max(limiter.num_requeues(key) for limiter in self._limiters)


def default_controller_rate_limiter(clock: Clock | None = None) -> MaxOfRateLimiter[K]:
    """controller-runtime's default: max(per-key 5 ms..1000 s backoff, bucket 10/s burst 100)."""
    return MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter(0.005, 1000.0),
        BucketRateLimiter(10.0, 100, clock),
    )

"""The reconcile contract: what a reconciler is given, what it returns, and what it raises.

controller-runtime's `reconcile` package in Python: a reconciler is an async function of a
`Key` (`reconcile.Request`) that returns a `Result` (or None) or raises. It lives apart from the
worker pool so that caches, reconcilers and tests can depend on the contract without pulling in
the machinery that runs it. Three kinds of failure, so that the log says what a human needs to
know and no more:

- `PermanentError` (controller-runtime's `TerminalError`): bad input, already reported where
  its owner looks (status, Event); not retried; one WARNING line.
- `TransientError`: a failure we understand and expect to pass (an API answer such as 429 or
  503, no answer at all); retried with backoff; one WARNING line, no traceback.
- anything else: a bug; retried with backoff; ERROR with the traceback.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["BadReconcileResult", "Key", "PermanentError", "ReconcileFunc", "Result", "TransientError"]

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects


@dataclass(frozen=True)
class Result:
    """What a successful reconcile asks for: nothing more, or another look after some seconds."""

    requeue_after: float | None = None  # seconds; None or 0 = done
    requeue: bool = False  # again after the rate limiter's delay (ignored with requeue_after)

    def __post_init__(self) -> None:
        value = self.requeue_after
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"requeue_after must be None or a finite number >= 0, got {value!r}")


ReconcileFunc = Callable[[Key], Awaitable[Result | None]]


class PermanentError(Exception):
    """Bad input (e.g. a bad spec): reported, never retried."""


class TransientError(Exception):
    """A failure we understand that should pass by itself: retried with backoff, no traceback."""


class BadReconcileResult(TypeError):
    """The reconciler returned something that is neither a Result nor None (a bug: a "panic")."""

"""Errors a reconciler raises to tell the worker pool how to treat a failure.

Raised by the operator's reconcile functions, interpreted by `labop.workers`. Three kinds, so
that the log says what a human needs to know and no more:

- `PermanentError` (controller-runtime's `TerminalError`): bad input, already reported where
  its owner looks (status, Event); not retried; one WARNING line.
- `TransientError`: a failure we understand and expect to pass (an API answer such as 429 or
  503, no answer at all); retried with backoff; one WARNING line, no traceback.
- anything else: a bug; retried with backoff; ERROR with the traceback.
"""

from __future__ import annotations


class PermanentError(Exception):
    """Bad input (e.g. a bad spec): reported, never retried."""


class TransientError(Exception):
    """A failure we understand that should pass by itself: retried with backoff, no traceback."""

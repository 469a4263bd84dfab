"""Errors a reconciler raises to tell the worker pool how to treat a failure.

Neighbours: raised by the operator's reconcile functions, interpreted by `labop.workers`
(the counterpart of controller-runtime's `reconcile.TerminalError`). Any other exception is
an ordinary, retryable error with rate-limited backoff.
"""

from __future__ import annotations


class PermanentError(Exception):
    """Bad input (e.g. a bad spec): reported, never retried."""

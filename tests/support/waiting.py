"""Waiting on real state: poll a condition with a generous timeout, never sleep as synchronisation.

Timeouts here are ceilings for a slow machine, not performance assertions; the benchmarks
(``make bench``) measure speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as TransportError

T = TypeVar("T")


class NotYet(Exception):
    """What a probe raises to say "not yet, and why" (the message shows on a timeout)."""


# What a probe may raise while the state it waits for is not there yet: an API answer (the
# object not created yet, a 409 or 5xx while the apiserver catches up) or no answer (a port not
# listening yet, an apiserver restarting: the client's urllib3 errors are not OSErrors).
# Anything else, an AssertionError or a TypeError, is a failure or a bug in the probe: it is
# raised at once, not polled away until the timeout hides it.
NOT_YET: tuple[type[Exception], ...] = (ApiException, TransportError, OSError)


def eventually(
    probe: Callable[[], T | None],
    *,
    timeout: float = 60.0,
    interval: float = 0.2,
    what: str = "",
    ignoring: tuple[type[Exception], ...] = NOT_YET,
) -> T:
    """Return the first truthy value ``probe`` gives; fail with the last value after ``timeout``.

    ``NotYet``, or an exception of a type in ``ignoring``, counts as a falsy value (the last one
    is reported on timeout); any other propagates at once.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = probe()
        except (NotYet, *ignoring) as err:  # type: ignore[misc]  # mypy cannot type a starred tuple here
            last = err
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what or probe!r}; last: {last!r}"
            )
        time.sleep(interval)

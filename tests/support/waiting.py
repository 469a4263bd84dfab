"""Waiting on real state: poll a condition with a generous timeout, never sleep as synchronisation.

Timeouts here are ceilings for a slow machine, not performance assertions; the benchmarks
(``make bench``) measure speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    probe: Callable[[], T | None], *, timeout: float = 60.0, interval: float = 0.2, what: str = ""
) -> T:
    """Return the first truthy value ``probe`` gives; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = probe()
        except Exception as err:  # a probe may race with object creation: keep polling
            last = err
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what or probe!r}; last: {last!r}"
            )
        time.sleep(interval)

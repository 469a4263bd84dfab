"""ServingState: the process-wide facts every listener shares.

One instance per process. ``serve`` flips it to shutting-down on SIGTERM/SIGINT; ``app``
answers ``/readyz`` from it; ``observe`` counts requests in and out of it so ``serve`` can say
how many were still running when shutdown began and how many it had to cancel.
"""

from __future__ import annotations


class ServingState:
    __slots__ = ("abandoned", "in_flight", "shutting_down")

    def __init__(self) -> None:
        self.shutting_down = False
        self.in_flight = 0
        # Requests cancelled before answering: at shutdown, those that outlived the timeout.
        self.abandoned = 0

    @property
    def ready(self) -> bool:
        return not self.shutting_down

    def begin_shutdown(self) -> None:
        self.shutting_down = True

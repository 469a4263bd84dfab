"""Events on the LabServer: what a user must see in ``kubectl describe lsrv``.

Role: build a core/v1 Event for a LabServer and post it; a failure to post is logged, never
raised (an Event is a courtesy, not part of the reconcile's outcome). The reconciler only
records on transitions (created a child, became Ready, a new problem), so no Event spam.

In the background (``background=True``, as the controller runs it; client-go's broadcaster does
the same): ``record`` only queues the Event and one sender task posts them in order, so a
reconcile never waits for an Event's round trip (at 1,000 new LabServers that was two of a first
pass's five requests, each waited for by a worker while the queue was long). The queue is
bounded: when full, an Event is dropped and logged, never waited for. The sender lingers a
moment (``LINGER_SECONDS``) before each batch, and the Events of a batch about the same object
with the same type and reason go out as one, their messages joined (client-go's correlator
aggregates similar Events the same way): a burst about one object costs one write. (The two
children a pass creates are already one Event, from the reconciler.)
``aclose`` posts what is queued (within a timeout) before the API client closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from labkit.logs import log_event
from labop.apierrors import ApiError, Verdict, classify
from labop.kubeapi import KubeApiLike

NORMAL, WARNING = "Normal", "Warning"
COMPONENT = "k8s-lab"
# Events queued for the background sender at most (client-go's broadcaster keeps 1,000); beyond,
# dropped. Thousands of new LabServers queue three Events each faster than one sender posts them.
QUEUE_SIZE = 4096
MESSAGE_LIMIT = 1024
# How long the sender waits for more Events before posting a batch: a pass that creates both
# children records its two Created Events well within it, even on a loaded machine.
LINGER_SECONDS = 1.0
# How long a stopping operator still posts queued Events (inside its own shutdown timeout).
DRAIN_SECONDS = 5.0
log = logging.getLogger("labop.recorder")


def build_event(
    ls: Mapping[str, Any],
    *,
    type_: str,
    reason: str,
    message: str,
    now: datetime,
    instance: str = COMPONENT,
) -> dict[str, Any]:
    """A pure builder: the Event object for ``ls`` (tested without a cluster)."""
    meta = ls["metadata"]
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": ls.get("apiVersion", "k8slab.dev/v1alpha1"),
            "kind": ls.get("kind", "LabServer"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        },
        "type": type_,
        "reason": reason,
        "message": message[:MESSAGE_LIMIT],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        # Which replica wrote it (its election identity): with standbys, who did what stays visible.
        "reportingInstance": instance[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def _subject(event: Mapping[str, Any]) -> tuple[Any, ...]:
    involved = event["involvedObject"]
    return (involved["uid"], involved["namespace"], involved["name"], event["type"], event["reason"])


def coalesce(events: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """Events about the same object with the same type and reason as one (messages joined in
    order, the last timestamp the latest), each with how many it stands for; first-seen order."""
    merged: dict[tuple[Any, ...], tuple[dict[str, Any], int]] = {}
    for event in events:
        subject = _subject(event)
        if subject not in merged:
            merged[subject] = (event, 1)
            continue
        first, count = merged[subject]
        joined = {
            **first,
            "message": f"{first['message']}; {event['message']}"[:MESSAGE_LIMIT],
            "lastTimestamp": event["lastTimestamp"],
        }
        merged[subject] = (joined, count + 1)
    return list(merged.values())


class EventRecorder:
    def __init__(
        self,
        api: KubeApiLike,
        *,
        instance: str = COMPONENT,
        background: bool = False,
        linger: float = LINGER_SECONDS,
    ) -> None:
        self._api = api
        self._linger = linger
        self._instance = instance
        self._background = background
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self._sender: asyncio.Task[None] | None = None

    async def record(self, ls: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        event = build_event(
            ls, type_=type_, reason=reason, message=message, now=datetime.now(UTC), instance=self._instance
        )
        if not self._background:
            await self._post(event)
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._log_not_posted(event, logging.WARNING, "queue-full")
            return
        if self._sender is None or self._sender.done():  # started by the first Event, on this loop
            # In a context of its own: not the log fields of the reconcile that happened to start it.
            self._sender = asyncio.get_running_loop().create_task(
                self._send_forever(), name="event-sender", context=contextvars.Context()
            )

    async def _send_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self._linger > 0:
                await asyncio.sleep(self._linger)
            while not self._queue.empty():  # whatever queued up meanwhile goes out coalesced
                batch.append(self._queue.get_nowait())
            for event, count in coalesce(batch):
                try:
                    await self._post(event)
                finally:
                    for _ in range(count):
                        self._queue.task_done()

    async def aclose(self) -> None:
        """Post what is queued (for at most DRAIN_SECONDS), then stop the sender."""
        if self._sender is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), DRAIN_SECONDS)
        self._sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sender
        self._sender = None

    async def _post(self, event: dict[str, Any]) -> None:
        try:
            await self._api.create_event(event["metadata"]["namespace"], event)
        except Exception as err:  # an Event must never fail a reconcile
            # Into a namespace being deleted nothing can be posted, and nobody would read it.
            gone = isinstance(err, ApiError) and classify(err) is Verdict.GONE
            self._log_not_posted(event, logging.DEBUG if gone else logging.WARNING, str(err))

    @staticmethod
    def _log_not_posted(event: Mapping[str, Any], level: int, error: str) -> None:
        # Named here too: a reconcile's log context names it as well, but not every caller has
        # one (and the background sender has none).
        involved = event["involvedObject"]
        log_event(
            log,
            "event not posted",
            level,
            namespace=involved["namespace"],
            name=involved["name"],
            reason=event["reason"],
            error=error,
        )

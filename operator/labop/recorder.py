"""Events on the LabServer: what a user must see in ``kubectl describe lsrv``.

Role: build a core/v1 Event for a LabServer and post it; a failure to post is logged, never
raised (an Event is a courtesy, not part of the reconcile's outcome). The reconciler only
records on transitions (created a child, became Ready, a new problem), so no Event spam.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from labkit.logs import log_event
from labop.apierrors import ApiError, Verdict, classify
from labop.kubeapi import KubeApiLike

NORMAL, WARNING = "Normal", "Warning"
COMPONENT = "k8s-lab"
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
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        # Which replica wrote it (its election identity): with standbys, who did what stays visible.
        "reportingInstance": instance[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class EventRecorder:
    def __init__(self, api: KubeApiLike, *, instance: str = COMPONENT) -> None:
        self._api = api
        self._instance = instance

    async def record(self, ls: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        meta = ls["metadata"]
        event = build_event(
            ls, type_=type_, reason=reason, message=message, now=datetime.now(UTC), instance=self._instance
        )
        try:
            await self._api.create_event(meta["namespace"], event)
        except Exception as err:  # an Event must never fail a reconcile
            # Into a namespace being deleted nothing can be posted, and nobody would read it.
            gone = isinstance(err, ApiError) and classify(err) is Verdict.GONE
            level = logging.DEBUG if gone else logging.WARNING
            # Named here too: a reconcile's log context names it as well, but not every caller has one.
            log_event(
                log,
                "event not posted",
                level,
                namespace=meta["namespace"],
                name=meta["name"],
                reason=reason,
                error=str(err),
            )

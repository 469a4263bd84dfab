"""When each LabServer was first observed (status.observedGeneration == generation: the first
pass over it is done) and first Ready, seen from a watch in a thread of the bench.

Why a watch and not a list every 0.2 s (the old harness): listing 10,000 LabServers five times a
second would load the apiserver more than what is measured. Times are when the watch event
reached the bench (monotonic clock); LabServers never turn un-Ready in these runs, so the
first time all are Ready is the latest of the first-Ready times.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from kubernetes.client import ApiClient

from opbench import rawwatch
from opbench.common import GROUP, NAMESPACE, PLURAL, VERSION, log, poll_until

PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"


def is_observed(ls: dict[str, Any]) -> bool:
    return bool((ls.get("status") or {}).get("observedGeneration") == ls["metadata"].get("generation"))


def is_ready(ls: dict[str, Any]) -> bool:
    conditions = (ls.get("status") or {}).get("conditions") or []
    return is_observed(ls) and any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class Tracker:
    def __init__(self, api: ApiClient) -> None:
        self._api = api
        self.observed: dict[str, float] = {}  # name -> first time observed
        self.ready: dict[str, float] = {}  # name -> first time Ready
        self.status_changes: Counter[str] = Counter()  # name -> status changes seen after creation
        self._status: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tracker", daemon=True)

    def __enter__(self) -> Tracker:
        self._thread.start()
        poll_until("the tracker's first list", self._synced.is_set, 60, every=0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rawwatch.list_then_watch(self._api, PATH, self._see, self._stop, on_synced=self._synced.set)
            except Exception as err:  # a broken stream: list again after a breath
                log(f"tracker: watch failed ({err!r}), relisting")
                time.sleep(0.5)

    def _see(self, kind: str, ls: dict[str, Any]) -> None:
        if kind == "DELETED":
            return
        name, now = ls["metadata"]["name"], time.monotonic()
        status = ls.get("status")
        with self._lock:
            if name in self._status and status != self._status[name]:
                self.status_changes[name] += 1
            self._status[name] = status
            if name not in self.observed and is_observed(ls):
                self.observed[name] = now
            if name not in self.ready and is_ready(ls):
                self.ready[name] = now

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return len(self.observed), len(self.ready)

    def reset(self) -> None:
        """Forget what was seen (a restarted operator is measured from scratch)."""
        with self._lock:
            self.observed.clear()
            self.ready.clear()
            self.status_changes.clear()

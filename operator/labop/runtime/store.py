"""The informer side of a controller: a store per watched kind, and when the stores are synced.

Role: client-go's ``cache.Store`` and ``HasSynced``, for an operator whose watches are somebody
else's (kopf's). ``Store`` keeps, per key, one compact entry of each object of a kind (what
``project`` makes of it: the caller chooses the fields, see ``labop.cache``), updated from every
watch event before its key is enqueued, so a reconcile reads the object as the event left it.
``ListingSync`` says when every store holds the whole initial listing of its kind: the workers
must not start before that, or a reconcile would take a child missing from a half-filled store
for one to create, and a restart would write. That is ``WaitForCacheSync``.

Why a store of our own and not the event source's: kopf's indexes did this job, but kopf gates
its handlers on them with a set of toggles, one per listed object, rescanned on every change:
quadratic in the objects listed, so a restart over 5,000 LabServers (15,000 objects) did not
finish its relist in ten minutes (BENCHMARKS.md). Here a listing costs one set insertion and one
removal per object.

How the listing is followed: the event source reports each listing it reads
(``listing_started``, ``listed`` per object, ``listing_done`` at its end) and the stores report
each object they got (``Store.apply`` calls ``seen``). A listing is complete when it is done and
every object it listed reached its store; an object may reach its store before the listing that
read it is done (the source's delivery runs beside its reading), or as a later event of the same
object (a source may coalesce events), or as its deletion: all count, by uid. Synced: every
kind's store has seen at least one complete listing and no listing is in progress. After that
the set stays (as ``HasSynced`` does): a relist after a lost watch is ordinary events.
Nothing here knows what is stored, and nothing here imports kopf.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from labop.runtime.reconcile import Key

__all__ = ["ListingSync", "Store", "object_key", "object_uid"]

Project = Callable[[Mapping[str, Any]], bytes]


def object_key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name")))


def object_uid(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


class ListingSync:
    """Follows the initial listings of a set of kinds until every store holds its kind's."""

    def __init__(self, kinds: Iterable[str]) -> None:
        self._unlisted = set(kinds)  # kinds with no complete listing yet
        self._reading: dict[object, tuple[str, set[str]]] = {}  # stream -> (kind, uids listed)
        self._waiting: dict[object, tuple[str, set[str]]] = {}  # stream done -> (kind, uids unseen)
        self._seen: set[str] = set()  # uids that reached a store while listings run
        self.synced = asyncio.Event()
        self._check()

    # --- from the event source --------------------------------------------------------------

    def listing_started(self, stream: object, kind: str) -> None:
        if not self.synced.is_set():
            self._reading[stream] = (kind, set())

    def listed(self, stream: object, uid: str) -> None:
        if stream in self._reading:
            self._reading[stream][1].add(uid)

    def listing_done(self, stream: object) -> None:
        if stream not in self._reading:
            return
        kind, uids = self._reading.pop(stream)
        self._waiting[stream] = (kind, uids - self._seen)
        self._settle(stream)

    # --- from the stores --------------------------------------------------------------------

    def seen(self, uid: str) -> None:
        if self.synced.is_set():
            return
        self._seen.add(uid)
        for stream, (_, unseen) in list(self._waiting.items()):
            if uid in unseen:
                unseen.discard(uid)
                self._settle(stream)

    # --- state ------------------------------------------------------------------------------

    def pending(self) -> int:
        """Objects of finished listings not in their store yet (for a log line)."""
        return sum(len(unseen) for _, unseen in self._waiting.values())

    def unsynced(self) -> list[str]:
        """The kinds whose initial listing is not complete yet (for a log line), sorted."""
        return sorted(self._unlisted)

    def _settle(self, stream: object) -> None:
        kind, unseen = self._waiting[stream]
        if unseen:
            return
        del self._waiting[stream]
        self._unlisted.discard(kind)
        self._check()

    def _check(self) -> None:
        if not self._unlisted and not self._reading and not self._waiting:
            self.synced.set()
            self._seen.clear()  # nothing to follow any more


class Store:
    """One kind's objects by key, as ``project`` made them; a deleted object's entry goes.

    Per key the latest object of that name: a DELETED event removes the entry only if it is the
    same object (uid), since the events of an object deleted and re-created under its name may
    arrive in any order (the source delivers each object's events in their order, not across).
    """

    def __init__(self, kind: str, project: Project, sync: ListingSync | None = None) -> None:
        self.kind = kind
        self._project = project
        self._sync = sync
        self._entries: dict[Key, tuple[str, bytes]] = {}

    def apply(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        """One watch event (``event_type`` None: an object of a listing)."""
        key, uid = object_key(obj), object_uid(obj)
        if event_type == "DELETED":
            held = self._entries.get(key)
            if held is not None and held[0] == uid:
                del self._entries[key]
        else:
            self._entries[key] = (uid, self._project(obj))
        if self._sync is not None:
            self._sync.seen(uid)

    def get(self, key: Key) -> bytes | None:
        held = self._entries.get(key)
        return None if held is None else held[1]

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[Key]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

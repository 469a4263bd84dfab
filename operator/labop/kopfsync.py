"""Where kopf's initial listings start and end, for ``labop.runtime.store.ListingSync``.

Role: tell the stores' sync which objects each of kopf's initial listings read, and when it is
over, so that the workers start once every store holds its kind (client-go's WaitForCacheSync).

Why this reaches into kopf: kopf knows where a listing ends (its watch stream yields a
``Bookmark.LISTED`` marker between the listed objects and the watch events) but gives that only
to its indexes, and its indexes gate every handler on a set of per-object toggles that makes a
relist quadratic (see ``labop.runtime.store``). No public hook says "listed"; a LIST of our own
could not know kopf's namespaces (``kopf run -n`` owns them) and would double the relist. So
``observe_listings`` wraps the one function kopf's watchers read their streams from,
``kopf._cogs.clients.watching.infinite_watch`` (looked up on its module at every call), and
passes every event through untouched. The kopf version is pinned (requirements lock); if a kopf
upgrade moves that function or the marker, ``observe_listings`` fails at start with a message
naming this module, never silently (the unit tests check the names too).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Container
from typing import Any, Protocol

from kopf._cogs.clients import watching

__all__ = ["ListingObserver", "observe_listings", "resource_name"]


class ListingObserver(Protocol):
    def listing_started(self, stream: object, kind: str) -> None: ...
    def listed(self, stream: object, uid: str) -> None: ...
    def listing_done(self, stream: object) -> None: ...


def resource_name(plural: str, group: str) -> str:
    """kubectl's name of a resource: ``deployments.apps``; a core one is its plural alone."""
    return f"{plural}.{group}" if group else plural


class _Target:
    observer: ListingObserver | None = None
    kinds: Container[str] = ()


_target = _Target()


def observe_listings(observer: ListingObserver, kinds: Container[str]) -> None:
    """From now on, report the initial listing of each watched resource named in ``kinds`` (by
    ``resource_name``) to ``observer``. Call before kopf starts its watchers (a startup handler).
    One observer per process: a second call replaces the first."""
    original = getattr(watching, "infinite_watch", None)
    marker = getattr(getattr(watching, "Bookmark", None), "LISTED", None)
    if original is None or marker is None:
        raise RuntimeError(
            "labop.kopfsync: this kopf has no watching.infinite_watch/Bookmark.LISTED; "
            "labop needs the kopf version of its requirements lock"
        )
    _target.observer, _target.kinds = observer, kinds
    if not getattr(original, "_labop_observed", False):
        watching.infinite_watch = _observed(original, marker)


def _observed(original: Any, marker: object) -> Any:
    async def infinite_watch(*, resource: Any, **kwargs: Any) -> AsyncIterator[Any]:
        observer, kind = _target.observer, resource_name(resource.plural, resource.group)
        if observer is None or kind not in _target.kinds:
            async for event in original(resource=resource, **kwargs):
                yield event
            return
        stream, listing = object(), True
        observer.listing_started(stream, kind)
        async for event in original(resource=resource, **kwargs):
            if listing and event is marker:
                observer.listing_done(stream)
                listing = False
            elif listing and isinstance(event, dict):
                uid = ((event.get("object") or {}).get("metadata") or {}).get("uid")
                if uid:
                    observer.listed(stream, str(uid))
            yield event

    infinite_watch._labop_observed = True  # type: ignore[attr-defined]
    return infinite_watch

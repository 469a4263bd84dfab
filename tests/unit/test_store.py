"""labop.runtime.store: a store per kind, and when every store holds its kind's initial listing."""

from __future__ import annotations

import json
from typing import Any

from labop.runtime.store import ListingSync, Store


def an_object(name: str, uid: str, namespace: str = "ns", **fields: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "uid": uid}, **fields}


def packed(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def a_store(sync: ListingSync | None = None, kind: str = "widgets") -> Store:
    return Store(kind, packed, sync)


# --------------------------------------------------------------------------- Store


def test_a_store_keeps_the_latest_projection_of_each_object_by_namespace_and_name() -> None:
    store = a_store()
    store.apply(None, an_object("a", "u1", spec=1))
    store.apply("MODIFIED", an_object("a", "u1", spec=2))
    assert json.loads(store.get(("ns", "a")) or b"")["spec"] == 2
    assert list(store) == [("ns", "a")] and len(store) == 1
    assert ("ns", "a") in store and ("ns", "b") not in store
    assert store.get(("ns", "b")) is None


def test_a_deletion_removes_the_entry() -> None:
    store = a_store()
    store.apply("ADDED", an_object("a", "u1"))
    store.apply("DELETED", an_object("a", "u1"))
    assert store.get(("ns", "a")) is None and len(store) == 0


def test_a_late_deletion_of_an_earlier_namesake_keeps_the_new_object() -> None:
    # Deleted and re-created under its name: the two objects' events may arrive in any order.
    store = a_store()
    store.apply("ADDED", an_object("a", "new", spec="new"))
    store.apply("DELETED", an_object("a", "old", spec="old"))
    assert json.loads(store.get(("ns", "a")) or b"")["spec"] == "new"


def test_a_deletion_of_an_unknown_object_changes_nothing() -> None:
    store = a_store()
    store.apply("DELETED", an_object("never-seen", "u1"))
    assert len(store) == 0


def test_a_cluster_scoped_object_has_an_empty_namespace_in_its_key() -> None:
    store = a_store()
    store.apply(None, {"metadata": {"name": "node-1", "uid": "u"}})
    assert list(store) == [("", "node-1")]


# --------------------------------------------------------------------------- ListingSync


def test_not_synced_before_every_kind_was_listed() -> None:
    sync = ListingSync(["widgets", "gadgets"])
    stream = object()
    sync.listing_started(stream, "widgets")
    sync.listing_done(stream)
    assert not sync.synced.is_set()
    other = object()
    sync.listing_started(other, "gadgets")
    sync.listing_done(other)
    assert sync.synced.is_set()


def test_synced_from_the_start_when_no_kind_is_followed() -> None:
    assert ListingSync([]).synced.is_set()


def test_a_listing_is_complete_only_once_every_listed_object_reached_its_store() -> None:
    sync = ListingSync(["widgets"])
    store = a_store(sync)
    stream = object()
    sync.listing_started(stream, "widgets")
    for uid in ("u1", "u2"):
        sync.listed(stream, uid)
    sync.listing_done(stream)
    store.apply(None, an_object("a", "u1"))
    assert not sync.synced.is_set() and sync.pending() == 1
    store.apply(None, an_object("b", "u2"))
    assert sync.synced.is_set() and sync.pending() == 0


def test_objects_that_reach_their_store_before_the_listing_ends_count() -> None:
    # The source delivers objects while it still reads the listing.
    sync = ListingSync(["widgets"])
    store = a_store(sync)
    stream = object()
    sync.listing_started(stream, "widgets")
    sync.listed(stream, "u1")
    store.apply(None, an_object("a", "u1"))
    sync.listing_done(stream)
    assert sync.synced.is_set()


def test_a_listed_object_that_arrives_as_a_later_event_or_as_its_deletion_counts() -> None:
    sync = ListingSync(["widgets"])
    store = a_store(sync)
    stream = object()
    sync.listing_started(stream, "widgets")
    sync.listed(stream, "edited")
    sync.listed(stream, "deleted")
    sync.listing_done(stream)
    store.apply("MODIFIED", an_object("a", "edited"))  # coalesced with its listing event
    store.apply("DELETED", an_object("b", "deleted"))
    assert sync.synced.is_set()


def test_an_unfinished_listing_of_another_stream_of_the_same_kind_holds_the_sync() -> None:
    # One stream per namespace when the operator watches several.
    sync = ListingSync(["widgets"])
    first, second = object(), object()
    sync.listing_started(first, "widgets")
    sync.listing_started(second, "widgets")
    sync.listing_done(first)
    assert not sync.synced.is_set()
    sync.listing_done(second)
    assert sync.synced.is_set()


def test_once_synced_it_stays_synced_through_later_listings() -> None:
    sync = ListingSync(["widgets"])
    stream = object()
    sync.listing_started(stream, "widgets")
    sync.listing_done(stream)
    relist = object()
    sync.listing_started(relist, "widgets")
    sync.listed(relist, "u1")
    sync.listing_done(relist)
    assert sync.synced.is_set() and sync.pending() == 0


def test_reports_from_an_unknown_stream_are_ignored() -> None:
    sync = ListingSync(["widgets"])
    sync.listed(object(), "u1")
    sync.listing_done(object())
    assert not sync.synced.is_set()

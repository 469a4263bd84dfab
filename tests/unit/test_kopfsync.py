"""labop.kopfsync: kopf's initial listings reported to an observer, every event passed through.

kopf's watchers are not run here: the wrapped function is replaced by a scripted stream, as
kopf's own tests do; the names it relies on are checked against the installed kopf.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from kopf._cogs.clients import watching

from labop import kopfsync
from labop.cache import DEPLOYMENTS, LABSERVERS, SERVICES

LISTED = watching.Bookmark.LISTED


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.streams: list[object] = []

    def listing_started(self, stream: object, kind: str) -> None:
        self.streams.append(stream)
        self.calls.append(("started", kind))

    def listed(self, stream: object, uid: str) -> None:
        self.calls.append(("listed", uid))

    def listing_done(self, stream: object) -> None:
        self.calls.append(("done", None))


def an_event(event_type: str | None, uid: str) -> dict[str, Any]:
    return {"type": event_type, "object": {"metadata": {"uid": uid, "name": uid}}}


SCRIPT: list[Any] = [
    an_event(None, "u1"),
    an_event(None, "u2"),
    LISTED,
    an_event("ADDED", "u3"),
    LISTED,  # a relist after a lost watch: not an initial listing any more
    an_event(None, "u4"),
]


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    async def infinite_watch(**_: Any) -> AsyncIterator[Any]:
        for event in SCRIPT:
            yield event

    monkeypatch.setattr(watching, "infinite_watch", infinite_watch)
    yield


async def read_all(plural: str, group: str) -> list[Any]:
    resource: Any = SimpleNamespace(plural=plural, group=group)  # what the wrapper reads of kopf's
    stream = watching.infinite_watch(settings=None, resource=resource, namespace=None)  # type: ignore[arg-type]
    return [event async for event in stream]


def test_the_kopf_names_labop_relies_on_exist_in_the_installed_kopf() -> None:
    assert callable(watching.infinite_watch)
    assert watching.Bookmark.LISTED is not None


def test_the_resource_names_are_kubectls_and_match_the_caches_kinds() -> None:
    assert kopfsync.resource_name("labservers", "k8slab.dev") == LABSERVERS
    assert kopfsync.resource_name("deployments", "apps") == DEPLOYMENTS
    assert kopfsync.resource_name("services", "") == SERVICES


async def test_an_observed_kinds_initial_listing_is_reported_and_every_event_passes_through(
    scripted: None,
) -> None:
    recorder = Recorder()
    kopfsync.observe_listings(recorder, {DEPLOYMENTS})
    assert await read_all("deployments", "apps") == SCRIPT
    assert recorder.calls == [("started", DEPLOYMENTS), ("listed", "u1"), ("listed", "u2"), ("done", None)]


async def test_a_kind_not_observed_passes_through_unreported(scripted: None) -> None:
    recorder = Recorder()
    kopfsync.observe_listings(recorder, {DEPLOYMENTS})
    assert await read_all("configmaps", "") == SCRIPT
    assert recorder.calls == []


async def test_each_watch_stream_is_reported_as_its_own_listing(scripted: None) -> None:
    recorder = Recorder()
    kopfsync.observe_listings(recorder, {SERVICES})
    await read_all("services", "")
    await read_all("services", "")  # e.g. a second namespace
    assert len(recorder.streams) == 2 and recorder.streams[0] is not recorder.streams[1]


async def test_observing_twice_wraps_kopf_once_and_reports_to_the_newest_observer(scripted: None) -> None:
    first, second = Recorder(), Recorder()
    kopfsync.observe_listings(first, {SERVICES})
    wrapped = watching.infinite_watch
    kopfsync.observe_listings(second, {SERVICES})
    assert watching.infinite_watch is wrapped
    await read_all("services", "")
    assert first.calls == [] and second.calls[0] == ("started", SERVICES)


def test_a_kopf_without_the_listing_marker_fails_at_start_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(watching, "Bookmark")
    with pytest.raises(RuntimeError, match=r"labop\.kopfsync"):
        kopfsync.observe_listings(Recorder(), {SERVICES})

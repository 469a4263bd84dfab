"""labop.recorder: the Event a LabServer gets, and posting it without ever failing a reconcile."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from tests.support.fakes import FakeApi
from tests.unit.factories import NOW, NOW_TEXT, a_labserver

from labop.recorder import NORMAL, WARNING, EventRecorder, build_event, coalesce


def test_an_event_is_about_the_labserver_by_uid() -> None:
    ls = a_labserver("web", namespace="team", uid="uid-1")
    event = build_event(ls, type_=NORMAL, reason="Created", message="Created Deployment web", now=NOW)
    assert event["involvedObject"] == {
        "apiVersion": "k8slab.dev/v1alpha1",
        "kind": "LabServer",
        "name": "web",
        "namespace": "team",
        "uid": "uid-1",
        "resourceVersion": "1",
    }


def test_an_event_is_a_core_v1_event_in_the_labservers_namespace_with_a_generated_name() -> None:
    event = build_event(a_labserver("web", namespace="team"), type_=NORMAL, reason="R", message="m", now=NOW)
    assert (event["apiVersion"], event["kind"]) == ("v1", "Event")
    assert event["metadata"] == {"generateName": "web.", "namespace": "team"}


def test_an_event_carries_type_reason_and_message() -> None:
    event = build_event(a_labserver(), type_=WARNING, reason="InvalidSpec", message="bad spec", now=NOW)
    assert (event["type"], event["reason"], event["message"]) == ("Warning", "InvalidSpec", "bad spec")
    assert event["count"] == 1
    assert event["source"] == {"component": "k8s-lab"}
    assert event["reportingComponent"] == "k8s-lab"


def test_an_events_timestamps_are_now_in_utc_to_the_second() -> None:
    event = build_event(a_labserver(), type_=NORMAL, reason="R", message="m", now=NOW)
    assert event["firstTimestamp"] == event["lastTimestamp"] == NOW_TEXT


def test_a_timestamp_in_another_zone_is_written_in_utc() -> None:
    two_hours_east = timezone(timedelta(hours=2))
    local = datetime(2030, 1, 2, 5, 4, 5, 999999, tzinfo=two_hours_east)
    event = build_event(a_labserver(), type_=NORMAL, reason="R", message="m", now=local)
    assert event["firstTimestamp"] == NOW_TEXT


def test_a_long_message_is_cut_to_1024_characters() -> None:
    event = build_event(a_labserver(), type_=NORMAL, reason="R", message="x" * 5000, now=NOW)
    assert event["message"] == "x" * 1024


def test_an_object_without_uid_or_type_meta_still_gets_an_event_about_a_labserver() -> None:
    ls: dict[str, Any] = {"metadata": {"name": "bare", "namespace": "lab"}}
    event = build_event(ls, type_=NORMAL, reason="R", message="m", now=NOW)
    involved = event["involvedObject"]
    assert (involved["apiVersion"], involved["kind"], involved["uid"]) == (
        "k8slab.dev/v1alpha1",
        "LabServer",
        "",
    )


async def test_the_recorder_posts_the_event_in_the_labservers_namespace() -> None:
    api = FakeApi()
    await EventRecorder(api).record(a_labserver("web", namespace="team"), NORMAL, "Ready", "1 of 1 available")
    ((namespace, event),) = api.arguments("create_event")
    assert namespace == event["metadata"]["namespace"] == event["involvedObject"]["namespace"] == "team"
    assert api.events == [("Normal", "Ready", "1 of 1 available")]


async def test_the_recorder_swallows_and_logs_a_failure_to_post(caplog: pytest.LogCaptureFixture) -> None:
    api = FakeApi()
    api.event_error = RuntimeError("apiserver down")
    with caplog.at_level(logging.WARNING, logger="labop.recorder"):
        await EventRecorder(api).record(a_labserver("web"), WARNING, "ChildConflict", "taken")
    assert "event not posted namespace=lab name=web reason=ChildConflict" in caplog.text
    assert "apiserver down" in caplog.text


async def test_the_recorder_does_not_swallow_cancellation() -> None:
    api = FakeApi()
    api.event_error = asyncio.CancelledError()
    with pytest.raises(asyncio.CancelledError):
        await EventRecorder(api).record(a_labserver(), NORMAL, "R", "m")


# --------------------------------------------------------------------------- in the background


class SlowApi(FakeApi):
    """Posts an Event only when the test lets it: Events queue up behind the one in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def create_event(self, namespace: str, event: dict[str, Any]) -> None:
        await self.gate.wait()
        await super().create_event(namespace, event)


async def test_in_the_background_record_returns_before_the_event_is_posted_and_aclose_posts_it() -> None:
    api = SlowApi()
    recorder = EventRecorder(api, background=True, linger=0)
    await recorder.record(a_labserver("web"), NORMAL, "Ready", "1 of 1 available")
    assert api.events == []  # the reconcile did not wait for the round trip
    api.gate.set()
    await recorder.aclose()
    assert api.events == [("Normal", "Ready", "1 of 1 available")]


async def test_events_that_queued_up_about_one_object_with_one_reason_are_posted_as_one() -> None:
    api = SlowApi()
    recorder = EventRecorder(api, background=True, linger=0)
    web, db = a_labserver("web", uid="uid-web"), a_labserver("db", uid="uid-db")
    await recorder.record(web, NORMAL, "Ready", "first, in flight")
    await asyncio.sleep(0)  # the sender takes it and waits on the API
    await recorder.record(web, NORMAL, "Created", "Created Deployment web")
    await recorder.record(db, NORMAL, "Created", "Created Deployment db")
    await recorder.record(web, NORMAL, "Created", "Created Service web")
    await recorder.record(web, WARNING, "Created", "a Warning is not a Normal")
    api.gate.set()
    await recorder.aclose()
    assert api.events == [
        ("Normal", "Ready", "first, in flight"),
        ("Normal", "Created", "Created Deployment web; Created Service web"),
        ("Normal", "Created", "Created Deployment db"),
        ("Warning", "Created", "a Warning is not a Normal"),
    ]


async def test_in_the_background_a_full_queue_drops_the_event_and_logs_it(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("labop.recorder.QUEUE_SIZE", 1)
    api = SlowApi()
    recorder = EventRecorder(api, background=True, linger=0)
    await recorder.record(a_labserver("web"), NORMAL, "R", "in flight")
    await asyncio.sleep(0)
    await recorder.record(a_labserver("web"), NORMAL, "R", "queued")
    with caplog.at_level(logging.WARNING, logger="labop.recorder"):
        await recorder.record(a_labserver("web"), NORMAL, "Ready", "dropped")
    assert "event not posted namespace=lab name=web reason=Ready error=queue-full" in caplog.text
    api.gate.set()
    await recorder.aclose()
    assert [message for _, _, message in api.events] == ["in flight", "queued"]


async def test_in_the_background_a_failure_to_post_is_logged_and_the_next_event_still_goes_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = FakeApi()
    api.event_error = RuntimeError("apiserver down")
    recorder = EventRecorder(api, background=True, linger=0)
    with caplog.at_level(logging.WARNING, logger="labop.recorder"):
        await recorder.record(a_labserver("web"), WARNING, "ChildConflict", "taken")
        await recorder.aclose()
    assert "apiserver down" in caplog.text
    api.event_error = None
    await recorder.record(a_labserver("web"), NORMAL, "Ready", "ok")
    await recorder.aclose()
    assert api.events == [("Normal", "Ready", "ok")]


async def test_the_sender_lingers_so_that_the_two_created_events_of_one_pass_go_out_as_one() -> None:
    api = FakeApi()
    recorder = EventRecorder(api, background=True, linger=0.05)
    web = a_labserver("web")
    await recorder.record(web, NORMAL, "Created", "Created Deployment web")
    await asyncio.sleep(0)  # the sender has it: it lingers instead of posting at once
    await recorder.record(web, NORMAL, "Created", "Created Service web")
    await recorder.aclose()
    assert api.events == [("Normal", "Created", "Created Deployment web; Created Service web")]


def test_coalesced_events_keep_the_first_timestamp_and_take_the_last() -> None:
    ls = a_labserver("web")
    early = build_event(ls, type_=NORMAL, reason="Created", message="a", now=NOW)
    late = build_event(ls, type_=NORMAL, reason="Created", message="b", now=NOW + timedelta(seconds=3))
    ((event, count),) = coalesce([early, late])
    assert count == 2
    assert (event["message"], event["firstTimestamp"]) == ("a; b", NOW_TEXT)
    assert event["lastTimestamp"] == late["lastTimestamp"] != NOW_TEXT

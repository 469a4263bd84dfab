"""labop.recorder: the Event a LabServer gets, and posting it without ever failing a reconcile."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from tests.support.fakes import FakeApi
from tests.unit.factories import NOW, NOW_TEXT, a_labserver

from labop.recorder import NORMAL, WARNING, EventRecorder, build_event


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

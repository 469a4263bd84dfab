"""event_priority: which watch events are new work (normal) and which are not (low).

A pure function of the event's type and the object (labop.runtime.controller); the handlers that
use it are tested in test_handlers.py, the queue's priorities in test_workqueue_priority.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from labop.runtime import LOW, NORMAL, Priority, event_priority


def an_object(generation: int | None = None, observed: int | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "w", "namespace": "ns"}}
    if generation is not None:
        obj["metadata"]["generation"] = generation
    if observed is not None:
        obj["status"] = {"observedGeneration": observed}
    return obj


@pytest.mark.parametrize(
    ("event_type", "obj", "priority"),
    [
        # kopf's initial listing (type None): low once the controller handled this generation
        (None, an_object(2, 2), LOW),
        (None, an_object(2, 1), NORMAL),  # edited while the operator was down
        (None, an_object(1), NORMAL),  # created while the operator was down, never handled
        ("ADDED", an_object(1), NORMAL),
        ("ADDED", an_object(1, 1), NORMAL),  # a creation is new work whatever it says
        ("MODIFIED", an_object(2, 2), LOW),  # a status write, a label edit: nothing new to act on
        ("MODIFIED", an_object(3, 2), NORMAL),  # a spec change bumped the generation
        ("MODIFIED", an_object(3), NORMAL),
        ("DELETED", an_object(2, 2), NORMAL),
        # a kind with no generation: nothing to compare, so only its listing is low
        (None, an_object(), LOW),
        ("MODIFIED", an_object(), NORMAL),
    ],
)
def test_a_primarys_event_is_low_when_it_brings_nothing_new_to_act_on(
    event_type: str | None, obj: dict[str, Any], priority: Priority
) -> None:
    assert event_priority(event_type, obj) is priority


@pytest.mark.parametrize(
    ("event_type", "priority"),
    [(None, LOW), ("ADDED", NORMAL), ("MODIFIED", NORMAL), ("DELETED", NORMAL)],
)
def test_an_owned_objects_event_is_low_only_in_the_initial_listing(
    event_type: str | None, priority: Priority
) -> None:
    # A child's generation says nothing about its owner; its status may (a Deployment ready).
    assert event_priority(event_type, an_object(4, 4), owned=True) is priority


def test_an_object_without_metadata_or_status_does_not_break_the_mapping() -> None:
    assert event_priority("MODIFIED", {}) is NORMAL
    assert event_priority(None, {"metadata": None, "status": None}) is LOW

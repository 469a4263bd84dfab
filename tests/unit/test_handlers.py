"""labop.handlers: what is registered with kopf, and each handler called as kopf calls it.

The handlers are called directly with the keyword arguments kopf passes (and a few extra ones,
which ``**_`` must absorb); no API server is involved. The end-to-end path through kopf runs in
the integration tier (tests/integration/test_operator.py).
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf
import pytest
from kubernetes.client import ApiClient
from tests.unit.factories import a_deployment, a_labserver, a_service

from labop import handlers
from labop.cache import Key
from labop.controller import Controller
from labop.runtime import Priority
from labop.settings import OperatorSettings

# What kopf passes besides the arguments a handler names; the handlers must take them in **_.
KOPF_EXTRAS: dict[str, Any] = {
    "logger": logging.getLogger("test"),
    "uid": "uid",
    "patch": {},
    "param": None,
    "retry": 0,
}


async def invoke(handler: Any, **kwargs: Any) -> Any:
    """Call a handler as kopf does: sync or async, by keyword only."""
    result = handler(**kwargs)
    return await result if inspect.isawaitable(result) else result


def a_body(raw: dict[str, Any]) -> kopf.Body:
    return kopf.Body(cast(kopf.RawBody, raw))


class RecordingController:
    """The two producer methods of Controller, recording what the handlers hand over."""

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.children: list[Mapping[str, Any]] = []
        self.priorities: list[Priority] = []
        self.stopped = False

    async def enqueue(self, key: Key, priority: Priority = Priority.NORMAL) -> None:
        self.keys.append(key)
        self.priorities.append(priority)

    async def enqueue_owner(self, child: Mapping[str, Any], priority: Priority = Priority.NORMAL) -> None:
        self.children.append(child)
        self.priorities.append(priority)

    async def stop(self) -> None:
        self.stopped = True


# --------------------------------------------------------------------------- registration


def registered(kind: str) -> list[Any]:
    # kopf has no public listing of its registry; these attributes are kopf 1.45's.
    registry = kopf.get_default_registry()
    return list(getattr(registry, f"_{kind}").get_all_handlers())


def selectors(kind: str) -> dict[str, tuple[str, str, str]]:
    """handler name -> (group, version, resource name) it was registered for."""
    return {
        h.fn.__name__: (h.selector.group, h.selector.version, h.selector.any_name) for h in registered(kind)
    }


def test_three_indexes_are_registered_one_per_watched_kind() -> None:
    assert selectors("indexing") == {
        "labserver_index": ("k8slab.dev", "v1alpha1", "labservers"),
        "deployment_index": ("apps", "v1", "deployments"),
        "service_index": ("", "v1", "services"),
    }


def test_three_event_handlers_are_registered_one_per_watched_kind() -> None:
    assert selectors("watching") == {
        "labserver_event": ("k8slab.dev", "v1alpha1", "labservers"),
        "deployment_event": ("apps", "v1", "deployments"),
        "service_event": ("", "v1", "services"),
    }


def test_no_state_tracking_handler_is_registered_so_kopf_writes_nothing_on_objects() -> None:
    assert registered("changing") == []
    assert registered("spawning") == []


def test_the_controller_starts_at_startup_and_stops_at_cleanup() -> None:
    names = {h.fn.__name__ for h in registered("activities")}
    assert {"start_controller", "stop_controller"} <= names


# --------------------------------------------------------------------------- indexes


async def test_the_labserver_index_keys_a_private_copy_by_namespace_and_name() -> None:
    raw = a_labserver("web", namespace="team", replicas=2)
    body = a_body(raw)
    indexed = await invoke(handlers.labserver_index, namespace="team", name="web", body=body, **KOPF_EXTRAS)
    ((key, entry),) = indexed.items()
    assert key == ("team", "web")
    assert json.loads(entry)["spec"] == {"replicas": 2}
    raw["spec"]["replicas"] = 5
    assert json.loads(entry)["spec"] == {"replicas": 2}


@pytest.mark.parametrize(
    ("index", "child"),
    [
        (handlers.deployment_index, a_deployment(a_labserver())),
        (handlers.service_index, a_service(a_labserver())),
    ],
)
async def test_the_child_indexes_keep_a_small_projection_not_the_whole_object(
    index: Any, child: dict[str, Any]
) -> None:
    indexed = await invoke(index, namespace="lab", name="hello", body=a_body(child), **KOPF_EXTRAS)
    assert list(indexed) == [("lab", "hello")]
    entry = json.loads(indexed[("lab", "hello")])
    assert set(entry) <= {"metadata", "spec", "status", "fields"}
    assert "template" not in entry.get("spec", {})
    assert [ref["uid"] for ref in entry["metadata"]["ownerReferences"]] == [
        ref["uid"] for ref in child["metadata"]["ownerReferences"]
    ]


# --------------------------------------------------------------------------- events


async def test_a_labserver_event_enqueues_its_key() -> None:
    controller = RecordingController()
    memo = kopf.Memo(controller=controller)
    body = a_body(a_labserver("web", namespace="team"))
    await invoke(
        handlers.labserver_event,
        namespace="team",
        name="web",
        memo=memo,
        body=body,
        type="MODIFIED",
        event={"type": "MODIFIED", "object": body},
        **KOPF_EXTRAS,
    )
    assert controller.keys == [("team", "web")]


@pytest.mark.parametrize("handler", [handlers.deployment_event, handlers.service_event])
async def test_a_child_event_hands_the_body_to_the_owner_mapping(handler: Any) -> None:
    controller = RecordingController()
    body = a_body(a_deployment(a_labserver()))
    await handler(
        type="MODIFIED",
        body=body,
        memo=kopf.Memo(controller=controller),
        namespace="lab",
        name="hello",
        **KOPF_EXTRAS,
    )
    assert controller.children == [body]
    assert controller.keys == []


def an_observed_labserver(generation: int, observed: int | None) -> dict[str, Any]:
    ls = a_labserver("web", namespace="team")
    ls["metadata"]["generation"] = generation
    if observed is not None:
        ls["status"] = {"observedGeneration": observed}
    return ls


@pytest.mark.parametrize(
    ("event_type", "generation", "observed", "priority"),
    [
        (None, 3, 3, Priority.LOW),  # listed after a start, handled already
        (None, 3, 2, Priority.NORMAL),  # listed, edited while the operator was down
        (None, 1, None, Priority.NORMAL),  # listed, created while the operator was down
        ("ADDED", 1, None, Priority.NORMAL),
        ("MODIFIED", 3, 3, Priority.LOW),  # our own status write, a label edit
        ("MODIFIED", 4, 3, Priority.NORMAL),  # a spec change
        ("DELETED", 3, 3, Priority.NORMAL),
    ],
)
async def test_a_labserver_event_is_low_priority_only_when_its_spec_was_handled_already(
    event_type: str | None, generation: int, observed: int | None, priority: Priority
) -> None:
    controller = RecordingController()
    body = a_body(an_observed_labserver(generation, observed))
    await invoke(
        handlers.labserver_event,
        namespace="team",
        name="web",
        memo=kopf.Memo(controller=controller),
        body=body,
        type=event_type,
        event={"type": event_type, "object": body},
        **KOPF_EXTRAS,
    )
    assert controller.priorities == [priority]


@pytest.mark.parametrize("handler", [handlers.deployment_event, handlers.service_event])
@pytest.mark.parametrize(
    ("event_type", "priority"),
    [
        (None, Priority.LOW),
        ("ADDED", Priority.NORMAL),
        ("MODIFIED", Priority.NORMAL),
        ("DELETED", Priority.NORMAL),
    ],
)
async def test_a_child_event_is_low_priority_only_in_the_initial_listing(
    handler: Any, event_type: str | None, priority: Priority
) -> None:
    controller = RecordingController()
    body = a_body(a_deployment(a_labserver()))
    await invoke(
        handler,
        type=event_type,
        body=body,
        memo=kopf.Memo(controller=controller),
        namespace="lab",
        name="hello",
        **KOPF_EXTRAS,
    )
    assert controller.priorities == [priority]


# --------------------------------------------------------------------------- lifecycle


def test_kopf_is_tuned_standalone_quiet_and_with_bounded_watches() -> None:
    kopf_settings = kopf.OperatorSettings()
    handlers.configure_kopf(kopf_settings, OperatorSettings(api_timeout=12.0))
    assert kopf_settings.peering.standalone
    assert kopf_settings.posting.level == logging.WARNING
    assert kopf_settings.watching.server_timeout is not None
    assert kopf_settings.watching.client_timeout is not None
    assert kopf_settings.watching.client_timeout > kopf_settings.watching.server_timeout
    assert kopf_settings.networking.request_timeout == 12.0


def test_kopf_builds_no_essence_of_an_object_since_no_handler_tracks_changes() -> None:
    # Safe only while no on.create/update/field handler is registered (the test above checks).
    kopf_settings = kopf.OperatorSettings()
    handlers.configure_kopf(kopf_settings, OperatorSettings())
    storage = kopf_settings.persistence.diffbase_storage
    body = a_body(a_labserver())
    assert isinstance(storage, handlers.NoDiffBase)
    assert storage.build(body=body) == storage.fetch(body=body) == {}


def test_the_index_functions_are_coroutines_so_kopf_runs_them_on_its_loop_not_in_a_thread() -> None:
    for index in (handlers.labserver_index, handlers.deployment_index, handlers.service_index):
        assert inspect.iscoroutinefunction(index)


async def test_startup_builds_the_controller_from_the_memos_settings_and_cleanup_stops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handlers, "load_client", ApiClient)  # no kubeconfig is read
    monkeypatch.setenv("LABOP_WORKERS", "9")  # loses to the memo's settings
    ours = OperatorSettings(workers=1, metrics_port=0, health_port=0, resync_seconds=0)
    memo = kopf.Memo({handlers.SETTINGS_MEMO_KEY: ours})
    indexes: dict[str, Any] = {"labserver_index": {}, "deployment_index": {}, "service_index": {}}

    await invoke(
        handlers.start_controller, settings=kopf.OperatorSettings(), memo=memo, **indexes, **KOPF_EXTRAS
    )
    controller = memo.controller
    try:
        assert isinstance(controller, Controller)
        assert controller.settings == ours
        assert controller.pool.running
    finally:
        await invoke(handlers.stop_controller, memo=memo, **KOPF_EXTRAS)
    assert not controller.pool.running


async def test_startup_reads_the_environment_when_no_settings_are_in_the_memo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handlers, "load_client", ApiClient)
    for name, value in {
        "WORKERS": "3",
        "METRICS_PORT": "0",
        "HEALTH_PORT": "0",
        "RESYNC_SECONDS": "0",
    }.items():
        monkeypatch.setenv(f"LABOP_{name}", value)
    memo = kopf.Memo()
    indexes: dict[str, Any] = {"labserver_index": {}, "deployment_index": {}, "service_index": {}}

    await invoke(
        handlers.start_controller, settings=kopf.OperatorSettings(), memo=memo, **indexes, **KOPF_EXTRAS
    )
    try:
        assert memo.controller.settings.workers == 3
    finally:
        await invoke(handlers.stop_controller, memo=memo, **KOPF_EXTRAS)


async def test_cleanup_without_a_started_controller_does_nothing() -> None:
    await invoke(handlers.stop_controller, memo=kopf.Memo(), **KOPF_EXTRAS)


async def test_cleanup_stops_the_controller_in_the_memo() -> None:
    controller = RecordingController()
    await invoke(handlers.stop_controller, memo=kopf.Memo(controller=controller), **KOPF_EXTRAS)
    assert controller.stopped

"""labop.handlers: what is registered with kopf, and each handler called as kopf calls it.

The handlers are called directly with the keyword arguments kopf passes (and a few extra ones,
which ``**_`` must absorb); no API server is involved. The end-to-end path through kopf runs in
the integration tier (tests/integration/test_operator.py).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf
import pytest
from kopf._core.reactor import inventory
from kubernetes.client import ApiClient
from prometheus_client import generate_latest
from tests.support.caches import list_into
from tests.unit.factories import a_deployment, a_labserver, a_service

from labop import handlers
from labop.cache import DEPLOYMENTS, LABSERVERS, SERVICES
from labop.controller import Controller
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


@pytest.fixture(autouse=True)
def kopfs_own_memories(monkeypatch: pytest.MonkeyPatch) -> None:
    """start_controller makes kopf's per-object memory ephemeral (labop.kopfmemory): undone after."""
    monkeypatch.setattr(inventory.ResourceMemories, "recall", inventory.ResourceMemories.recall)


def a_body(raw: dict[str, Any]) -> kopf.Body:
    return kopf.Body(cast(kopf.RawBody, raw))


class RecordingController:
    """The three event methods of Controller, recording what the handlers hand over."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str | None, Mapping[str, Any]]] = []
        self.stopped = False

    def labserver_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        self.events.append(("labserver", event_type, body))

    def deployment_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        self.events.append(("deployment", event_type, body))

    def service_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        self.events.append(("service", event_type, body))

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


def test_no_index_is_registered_since_kopf_gates_handlers_on_indexes_quadratically() -> None:
    assert registered("indexing") == []


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


# --------------------------------------------------------------------------- events


@pytest.mark.parametrize(
    ("handler", "kind", "body"),
    [
        (handlers.labserver_event, "labserver", a_labserver("web", namespace="team")),
        (handlers.deployment_event, "deployment", a_deployment(a_labserver())),
        (handlers.service_event, "service", a_service(a_labserver())),
    ],
)
@pytest.mark.parametrize("event_type", [None, "ADDED", "MODIFIED", "DELETED"])
async def test_each_handler_hands_its_event_type_and_body_to_the_controller_and_nothing_else(
    handler: Any, kind: str, body: dict[str, Any], event_type: str | None
) -> None:
    controller = RecordingController()
    kopf_body = a_body(body)
    await invoke(
        handler,
        type=event_type,
        event={"type": event_type, "object": kopf_body},
        body=kopf_body,
        memo=kopf.Memo(controller=controller),
        namespace=body["metadata"]["namespace"],
        name=body["metadata"]["name"],
        **KOPF_EXTRAS,
    )
    assert controller.events == [(kind, event_type, kopf_body)]


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


def test_kopf_holds_a_bounded_number_of_parsed_objects_at_once() -> None:
    kopf_settings = kopf.OperatorSettings()
    handlers.configure_kopf(kopf_settings, OperatorSettings())
    assert kopf_settings.watching.chunk_size == 500  # listings in pages
    assert kopf_settings.queueing.worker_limit == 256  # per-object tasks, each holding a body
    assert 0 < kopf_settings.queueing.idle_timeout <= 1  # and letting go of it soon


def test_kopf_builds_no_essence_of_an_object_since_no_handler_tracks_changes() -> None:
    # Safe only while no on.create/update/field handler is registered (the test above checks).
    kopf_settings = kopf.OperatorSettings()
    handlers.configure_kopf(kopf_settings, OperatorSettings())
    storage = kopf_settings.persistence.diffbase_storage
    body = a_body(a_labserver())
    assert isinstance(storage, handlers.NoDiffBase)
    assert storage.build(body=body) == storage.fetch(body=body) == {}


def test_the_handlers_are_coroutines_so_kopf_runs_them_on_its_loop_not_in_a_thread() -> None:
    for handler in (handlers.labserver_event, handlers.deployment_event, handlers.service_event):
        assert inspect.iscoroutinefunction(handler)


async def test_startup_builds_the_controller_from_the_memos_settings_and_cleanup_stops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handlers, "load_client", ApiClient)  # no kubeconfig is read
    monkeypatch.setenv("LABOP_WORKERS", "9")  # loses to the memo's settings
    ours = OperatorSettings(workers=1, metrics_port=0, health_port=0, resync_seconds=0)
    memo = kopf.Memo({handlers.SETTINGS_MEMO_KEY: ours})
    await invoke(handlers.start_controller, settings=kopf.OperatorSettings(), memo=memo, **KOPF_EXTRAS)
    controller = memo.controller
    try:
        assert isinstance(controller, Controller)
        assert controller.settings == ours
        # The writes count their requests on the registry /metrics serves (client-go's name).
        assert b"# TYPE rest_client_requests_total counter" in generate_latest(controller.registry)
        assert not controller.pool.running, "the workers wait for kopf's listings (labop.kopfsync)"
        for kind in (LABSERVERS, DEPLOYMENTS, SERVICES):
            list_into(controller.cache, kind)
        await asyncio.wait_for(controller.cache.sync.synced.wait(), timeout=5)
        while not controller.pool.running:  # noqa: ASYNC110 - the starter task runs next
            await asyncio.sleep(0.01)
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
    await invoke(handlers.start_controller, settings=kopf.OperatorSettings(), memo=memo, **KOPF_EXTRAS)
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

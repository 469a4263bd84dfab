"""Every route on every listener, over real sockets, two listeners with separate routers."""

from __future__ import annotations

import pytest
from tests.labhttp.testkit import Listeners, two_listeners

from labhttp.app import HEALTHY
from labhttp.settings import DEFAULT_MESSAGE, Settings


@pytest.mark.parametrize("listener", ["api", "metrics"])
async def test_root_answers_the_message_as_plain_text_on_every_listener(
    listeners: Listeners, listener: str
) -> None:
    async with listeners.session.get(listeners.url(listener, "/")) as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        assert await response.text() == "Hello from the test"


@pytest.mark.parametrize("listener", ["api", "metrics"])
async def test_health_answers_server_is_healthy(listeners: Listeners, listener: str) -> None:
    async with listeners.session.get(listeners.url(listener, "/health")) as response:
        assert response.status == 200
        assert await response.text() == HEALTHY == "Server is healthy"


@pytest.mark.parametrize("listener", ["api", "metrics"])
async def test_readyz_answers_200_while_serving(listeners: Listeners, listener: str) -> None:
    async with listeners.session.get(listeners.url(listener, "/readyz")) as response:
        assert response.status == 200


async def test_readyz_answers_503_on_every_listener_once_shutdown_has_begun(listeners: Listeners) -> None:
    listeners.state.begin_shutdown()
    for listener in ("api", "metrics"):
        async with listeners.session.get(listeners.url(listener, "/readyz")) as response:
            assert response.status == 503


async def test_health_stays_200_while_shutting_down_so_the_pod_is_not_restarted(listeners: Listeners) -> None:
    listeners.state.begin_shutdown()
    async with listeners.session.get(listeners.url("api", "/health")) as response:
        assert response.status == 200


async def test_head_is_answered_for_get_routes_without_a_body(listeners: Listeners) -> None:
    async with listeners.session.head(listeners.url("api", "/")) as response:
        assert response.status == 200
        assert await response.read() == b""


async def test_each_listener_has_its_own_router(listeners: Listeners) -> None:
    assert listeners.apps["api"].router is not listeners.apps["metrics"].router
    async with listeners.session.get(listeners.url("metrics", "/metrics")) as response:
        assert response.status == 200
    async with listeners.session.get(listeners.url("api", "/metrics")) as response:
        assert response.status == 404


async def test_debug_sleep_answers_after_the_requested_time(listeners: Listeners) -> None:
    async with listeners.session.get(listeners.url("api", "/debug/sleep?seconds=0")) as response:
        assert response.status == 200


@pytest.mark.parametrize("seconds", ["-1", "61", "soon", "nan"])
async def test_debug_sleep_refuses_bad_durations(listeners: Listeners, seconds: str) -> None:
    async with listeners.session.get(listeners.url("api", f"/debug/sleep?seconds={seconds}")) as response:
        assert response.status == 400


@pytest.mark.parametrize("settings", [two_listeners()])
async def test_defaults_answer_the_lesson_message_and_have_no_debug_routes(
    listeners: Listeners, settings: Settings
) -> None:
    async with listeners.session.get(listeners.url("api", "/")) as response:
        assert await response.text() == DEFAULT_MESSAGE == "Hello, Kubernetes and Istio!"
    async with listeners.session.get(listeners.url("api", "/debug/sleep?seconds=0")) as response:
        assert response.status == 404


@pytest.mark.parametrize("settings", [two_listeners(metrics_listener="api")])
async def test_the_named_metrics_listener_serves_metrics_instead(
    listeners: Listeners, settings: Settings
) -> None:
    async with listeners.session.get(listeners.url("api", "/metrics")) as response:
        assert response.status == 200
    async with listeners.session.get(listeners.url("metrics", "/metrics")) as response:
        assert response.status == 404

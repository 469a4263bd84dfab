"""Starting and stopping listeners in this process: binding, bind failures, graceful drain.

``serve()`` itself (signal handlers) is exercised as a subprocess in test_labhttp_cli.py; here
the pieces it is made of run in the test's own event loop.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from tests.labhttp.testkit import EVENT_TIMEOUT, LogEvents, two_listeners
from yarl import URL

from labhttp.metrics import RequestMetrics, make_registry
from labhttp.serve import Serving, StartupError, start_listeners, stop_listeners
from labhttp.settings import Listener, Settings
from labhttp.state import ServingState


async def fetch(session: aiohttp.ClientSession, url: URL) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


def base_url(serving: Serving, name: str) -> URL:
    [listener] = [bound for bound in serving.bound if bound.name == name]
    return URL(f"http://{listener.address}")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # A fresh connection per request: requests made during shutdown must not reuse old ones.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        yield session


async def start(settings: Settings) -> tuple[Serving, ServingState]:
    state = ServingState()
    serving = await start_listeners(settings, metrics=RequestMetrics(make_registry()), state=state)
    return serving, state


async def test_every_listener_is_bound_on_its_own_port(session: aiohttp.ClientSession) -> None:
    serving, state = await start(two_listeners())
    try:
        ports = {listener.name: listener.port for listener in serving.bound}
        assert set(ports) == {"api", "metrics"}
        assert 0 not in ports.values() and len(set(ports.values())) == 2
        for name in ports:
            async with session.get(base_url(serving, name) / "health") as response:
                assert response.status == 200
    finally:
        await stop_listeners(serving, two_listeners(), state)


async def test_a_port_in_use_is_a_startup_error_naming_the_listener() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        settings = Settings(
            listeners=(Listener("api", "127.0.0.1", 0), Listener("metrics", "127.0.0.1", port))
        )
        with pytest.raises(StartupError) as raised:
            await start(settings)
    assert str(raised.value) == f"cannot listen for metrics on 127.0.0.1:{port}: address already in use"


async def test_shutdown_waits_for_a_request_in_flight(
    session: aiohttp.ClientSession, log_events: LogEvents
) -> None:
    settings = two_listeners(debug_routes=True, shutdown_timeout=EVENT_TIMEOUT)
    serving, state = await start(settings)
    slow = asyncio.create_task(fetch(session, base_url(serving, "api") / "debug/sleep" % {"seconds": "0.3"}))
    await log_events.wait_for("debug-sleep")
    assert state.in_flight == 1

    await stop_listeners(serving, settings, state)

    assert await slow == (200, "slept 0.3s")
    assert (state.ready, state.in_flight, state.abandoned) == (False, 0, 0)


async def test_shutdown_cancels_a_request_that_outlives_the_timeout(
    session: aiohttp.ClientSession, log_events: LogEvents
) -> None:
    settings = two_listeners(debug_routes=True, shutdown_timeout=0.2)
    serving, state = await start(settings)
    slow = asyncio.create_task(fetch(session, base_url(serving, "api") / "debug/sleep" % {"seconds": "60"}))
    await log_events.wait_for("debug-sleep")
    assert state.in_flight == 1

    async with asyncio.timeout(EVENT_TIMEOUT):
        await stop_listeners(serving, settings, state)

    with pytest.raises(aiohttp.ClientError):
        await slow
    assert state.abandoned == 1


async def test_during_the_shutdown_delay_readiness_fails_but_requests_are_served(
    session: aiohttp.ClientSession, log_events: LogEvents
) -> None:
    settings = two_listeners(shutdown_delay=1.0)
    serving, state = await start(settings)
    stopping = asyncio.create_task(stop_listeners(serving, settings, state))
    await log_events.wait_for("shutdown-delay")

    assert await fetch(session, base_url(serving, "api") / "readyz") == (503, "shutting down")
    assert (await fetch(session, base_url(serving, "api") / ""))[0] == 200

    await stopping
    with pytest.raises(aiohttp.ClientConnectionError):
        await fetch(session, base_url(serving, "api") / "")

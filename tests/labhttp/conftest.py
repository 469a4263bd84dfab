"""Fixtures for the labhttp tier: real sockets on 127.0.0.1, no cluster.

``listeners`` starts two applications (api and metrics), each with its own router, AppRunner
and TCPSite on port 0, in the test's event loop. ``labhttp_processes`` cleans up servers a test
runs as subprocesses. Helpers are in ``testkit``.

No ``__init__.py`` here on purpose: a package named ``labhttp`` under tests/ would shadow the
real one.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web
from tests.labhttp.testkit import LabhttpProcess, Listeners, LogEvents, two_listeners
from yarl import URL

from labhttp.app import make_app
from labhttp.metrics import RequestMetrics, make_registry
from labhttp.settings import Settings
from labhttp.state import ServingState


@pytest.fixture
def settings() -> Settings:
    return two_listeners(message="Hello from the test", debug_routes=True)


@pytest.fixture
async def listeners(settings: Settings) -> AsyncIterator[Listeners]:
    state = ServingState()
    metrics = RequestMetrics(make_registry())
    runners: list[web.AppRunner] = []
    async with aiohttp.ClientSession() as session:
        running = Listeners(settings=settings, state=state, metrics=metrics, session=session)
        try:
            for listener in settings.listeners:
                app = make_app(settings, listener, metrics=metrics, state=state)
                runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
                await runner.setup()
                runners.append(runner)
                site = web.TCPSite(runner, listener.host, port=0)
                await site.start()
                running.apps[listener.name] = app
                running.urls[listener.name] = URL.build(scheme="http", host=listener.host, port=site.port)
            yield running
        finally:
            for runner in runners:
                await runner.cleanup()


@pytest.fixture
def log_events() -> Iterator[LogEvents]:
    """labhttp's own log events in this process, at INFO, for tests to wait on."""
    logger = logging.getLogger("labhttp")
    handler, saved_level = LogEvents(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(saved_level)


@pytest.fixture
async def labhttp_processes() -> AsyncIterator[list[LabhttpProcess]]:
    """Collects processes a test starts and kills any it left running."""
    started: list[LabhttpProcess] = []
    yield started
    for process in started:
        process.kill()
        await process.process.wait()

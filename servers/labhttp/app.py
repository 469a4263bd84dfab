"""``make_app``: one aiohttp application, with its own router, for one named listener.

This is the lesson's "one ServeMux per server": ``serve`` calls ``make_app`` once per listener
and gives each result its own AppRunner and TCPSite, all in one event loop. Every listener
answers ``/``, ``/health`` and ``/readyz``; the metrics listener also answers ``/metrics``
(prometheus-client's aiohttp handler over the process's registry); ``--debug-routes`` adds
``/debug/sleep`` for tests. ``observe`` is the outermost middleware, then the body-size guard,
then the route handlers.
"""

from __future__ import annotations

import asyncio
import logging
import math

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client.aiohttp import make_aiohttp_handler

from labhttp.metrics import RequestMetrics
from labhttp.observe import make_observer
from labhttp.settings import Listener, Settings
from labhttp.state import ServingState
from labkit.logs import log_event

SETTINGS_KEY = web.AppKey("settings", Settings)
LISTENER_KEY = web.AppKey("listener", Listener)
STATE_KEY = web.AppKey("state", ServingState)

HEALTHY = "Server is healthy"
DEBUG_SLEEP_MAX_SECONDS = 60.0

logger = logging.getLogger("labhttp.app")


def make_app(
    settings: Settings, listener: Listener, *, metrics: RequestMetrics, state: ServingState
) -> web.Application:
    app = web.Application(
        middlewares=[make_observer(listener.name, metrics, state), limit_body],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS_KEY] = settings
    app[LISTENER_KEY] = listener
    app[STATE_KEY] = state
    app.router.add_get("/", handle_root)
    app.router.add_get("/health", handle_health)
    app.router.add_get("/readyz", handle_readyz)
    if listener.name == settings.metrics_listener:
        app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))
    if settings.debug_routes:
        app.router.add_get("/debug/sleep", handle_debug_sleep)
    return app


@web.middleware
async def limit_body(request: web.Request, handler: Handler) -> web.StreamResponse:
    """413 for bodies over client_max_size on every path, even those that never read a body.

    A declared Content-Length is refused before reading anything; a chunked body is read (and
    discarded) only up to the limit, which is where ``request.read`` raises.
    """
    limit = request.app[SETTINGS_KEY].max_body_bytes
    declared = request.content_length
    if declared is not None and declared > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=declared)
    if declared is None and request.body_exists:
        await request.read()
    return await handler(request)


async def handle_root(request: web.Request) -> web.Response:
    return web.Response(text=request.app[SETTINGS_KEY].message)


async def handle_health(request: web.Request) -> web.Response:
    # Liveness: the loop answers. Deliberately true while shutting down, so the kubelet does
    # not restart a pod that is only draining.
    return web.Response(text=HEALTHY)


async def handle_readyz(request: web.Request) -> web.Response:
    if request.app[STATE_KEY].ready:
        return web.Response(text="ready")
    return web.Response(status=503, text="shutting down")


async def handle_debug_sleep(request: web.Request) -> web.Response:
    """Hold the request for ``?seconds=N`` so tests can have one in flight during shutdown."""
    try:
        seconds = float(request.query.get("seconds", "1"))
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= DEBUG_SLEEP_MAX_SECONDS:
        raise web.HTTPBadRequest(text=f"seconds must be from 0 to {DEBUG_SLEEP_MAX_SECONDS:g}")
    # Tests wait for this line to know the request is in flight (no sleeping to synchronise).
    log_event(logger, "debug-sleep", listener=request.app[LISTENER_KEY].name, seconds=seconds)
    await asyncio.sleep(seconds)
    return web.Response(text=f"slept {seconds:g}s")

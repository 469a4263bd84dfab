"""The outermost middleware of every listener: time each request, then record it twice.

Once into ``metrics.RequestMetrics`` (count, latency, in-flight) and once as a structured
access line through ``labkit.logs`` (logger ``labhttp.access``). It wraps 404 and 405 too, since
aiohttp runs middlewares around its routing errors. ``app`` installs it via ``make_observer``;
``state.ServingState`` gets the in-flight count that ``serve`` reports at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from labhttp.metrics import UNMATCHED_ROUTE, RequestMetrics
from labhttp.state import ServingState
from labkit.logs import log_event

access_logger = logging.getLogger("labhttp.access")

# nginx's code for "the request ended before a response": here, cancelled by shutdown.
STATUS_ABANDONED = 499


def route_label(request: web.Request) -> str:
    """The route template that matched, or one fixed label, so label values stay bounded."""
    resource = request.match_info.route.resource
    return UNMATCHED_ROUTE if resource is None else resource.canonical


def make_observer(listener: str, metrics: RequestMetrics, state: ServingState) -> Middleware:
    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        state.in_flight += 1
        metrics.started(listener)
        status = 500  # stays so if the handler raises something that is not an HTTP answer
        size: int | None = None
        try:
            response = await handler(request)
            status, size = response.status, response.content_length
            return response
        except web.HTTPException as exc:
            status, size = exc.status, exc.content_length
            raise
        except asyncio.CancelledError:
            status = STATUS_ABANDONED
            state.abandoned += 1
            raise
        finally:
            state.in_flight -= 1
            elapsed = time.perf_counter() - started
            route = route_label(request)
            metrics.observe(listener, route, status, elapsed)
            log_event(
                access_logger,
                "request",
                listener=listener,
                method=request.method,
                path=request.path,
                route=route,
                status=status,
                bytes=size,
                duration_ms=elapsed * 1000,
                remote=request.remote,
                user_agent=request.headers.get("User-Agent"),
            )

    return observe

"""The operator's own HTTP endpoints: ``/metrics`` on one port, ``/healthz`` and ``/readyz`` on another.

Role: two small aiohttp applications (as controller-runtime separates its metrics and health
probe listeners), each on its own ``AppRunner``/``TCPSite``. ``/metrics`` is prometheus-client's own
aiohttp handler: the exposition format the scraper's Accept asks for (OpenMetrics or text) and
gzip when it accepts it. ``/healthz`` says the worker pool is
alive; ``/readyz`` that the controller has started (kopf gates the handlers on the initial
listing of every watched kind itself). The checks and the registry are passed in, so this
module knows nothing of what it reports on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

CHECKS = web.AppKey("checks", dict[str, Callable[[], bool]])


def _probe(check_name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        ok = request.app[CHECKS][check_name]()
        return web.Response(status=200 if ok else 503, text="ok\n" if ok else f"{check_name} failing\n")

    return handler


def make_metrics_app(registry: CollectorRegistry) -> web.Application:
    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    return app


def make_health_app(healthy: Callable[[], bool], ready: Callable[[], bool]) -> web.Application:
    app = web.Application()
    app[CHECKS] = {"healthz": healthy, "readyz": ready}
    app.router.add_get("/healthz", _probe("healthz"))
    app.router.add_get("/readyz", _probe("readyz"))
    return app


@dataclass
class Listener:
    runner: web.AppRunner
    port: int


async def serve(app: web.Application, host: str, port: int) -> Listener:
    """Start ``app`` on host:port (0 = any free port) and return the port it got."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()  # a port in use must not leave the runner behind
        raise
    bound = runner.addresses[0][1] if runner.addresses else port
    return Listener(runner=runner, port=int(bound))

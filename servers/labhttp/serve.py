"""Serving in one process: runners and sites, signals, graceful shutdown.

``serve`` starts one AppRunner + TCPSite per listener (each around its own ``app.make_app``
application) in the running event loop, reports the bound addresses through ``on_ready``,
then waits for SIGTERM or SIGINT. Shutdown, in order: ``/readyz`` turns 503 (``state``); the
listeners keep accepting for ``shutdown_delay`` so load balancers notice; the sites close;
in-flight requests get ``shutdown_timeout`` to finish, and are cancelled after it.

``cli`` runs ``serve`` directly; ``workers`` runs it in each child process. A listener that
cannot be bound raises ``StartupError`` with one human line.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from labhttp import __version__
from labhttp.app import make_app
from labhttp.metrics import RequestMetrics, make_registry
from labhttp.settings import Listener, Settings
from labhttp.state import ServingState
from labkit.logs import log_event

logger = logging.getLogger("labhttp.serve")

SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_BIND_ERRORS = {
    errno.EADDRINUSE: "address already in use",
    errno.EADDRNOTAVAIL: "address not available on this machine",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
}


class StartupError(Exception):
    """The server cannot start; the message is one line meant for humans."""


@dataclass(frozen=True, slots=True)
class Serving:
    """The started listeners, with the ports the kernel actually bound (port 0 resolved)."""

    runners: tuple[web.AppRunner, ...]
    bound: tuple[Listener, ...]


async def start_listeners(settings: Settings, *, metrics: RequestMetrics, state: ServingState) -> Serving:
    """Start every listener, or none: a failure stops those already started."""
    runners: list[web.AppRunner] = []
    bound: list[Listener] = []
    try:
        for listener in settings.listeners:
            app = make_app(settings, listener, metrics=metrics, state=state)
            # access_log=None: ``observe`` writes the access line, with the route and listener.
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=settings.shutdown_timeout)
            await runner.setup()
            runners.append(runner)
            bound.append(await _start_site(runner, listener, reuse_port=settings.workers > 1))
    except BaseException:
        await asyncio.gather(*(runner.cleanup() for runner in runners))
        raise
    return Serving(runners=tuple(runners), bound=tuple(bound))


async def _start_site(runner: web.AppRunner, listener: Listener, *, reuse_port: bool) -> Listener:
    # reuse_port only with --workers: otherwise a second copy on the same port must fail loudly.
    site = web.TCPSite(runner, listener.host, listener.port, reuse_port=reuse_port or None)
    try:
        await site.start()
    except OSError as exc:
        raise bind_failure(listener, exc) from None
    log_event(
        logger, "listening", listener=listener.name, address=f"{listener.host}:{site.port}", pid=os.getpid()
    )
    return Listener(name=listener.name, host=listener.host, port=site.port)


def bind_failure(listener: Listener, exc: OSError) -> StartupError:
    """The one line to say why a listener could not be bound."""
    if isinstance(exc, socket.gaierror):
        reason = f"cannot resolve host {listener.host!r}"
    else:
        reason = _BIND_ERRORS.get(exc.errno or 0, exc.strerror or str(exc))
    return StartupError(f"cannot listen for {listener.name} on {listener.address}: {reason}")


async def stop_listeners(serving: Serving, settings: Settings, state: ServingState) -> None:
    """Fail readiness, keep serving for the delay, then close and drain every listener at once."""
    state.begin_shutdown()
    if settings.shutdown_delay:
        log_event(logger, "shutdown-delay", seconds=settings.shutdown_delay)
        await asyncio.sleep(settings.shutdown_delay)
    log_event(logger, "draining", in_flight=state.in_flight, timeout_s=settings.shutdown_timeout)
    # Concurrently, so the timeout bounds the whole drain rather than adding up per listener.
    await asyncio.gather(*(runner.cleanup() for runner in serving.runners))


def _install_signal_handlers(stop: asyncio.Future[signal.Signals]) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        if stop.done():
            log_event(logger, "signal-ignored", signal=signum.name, reason="already shutting down")
        else:
            stop.set_result(signum)

    for signum in SHUTDOWN_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)


async def serve(settings: Settings, *, on_ready: Callable[[tuple[Listener, ...]], None]) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully and return."""
    stop: asyncio.Future[signal.Signals] = asyncio.get_running_loop().create_future()
    # Before binding: a SIGTERM during startup must mean "shut down", not the default kill.
    _install_signal_handlers(stop)
    state = ServingState()
    metrics = RequestMetrics(make_registry())
    serving = await start_listeners(settings, metrics=metrics, state=state)
    on_ready(serving.bound)
    signum = await stop
    log_event(logger, "shutdown-begun", signal=signum.name, in_flight=state.in_flight)
    await stop_listeners(serving, settings, state)
    log_event(logger, "stopped", abandoned=state.abandoned)


def log_serving(settings: Settings, bound: tuple[Listener, ...], *, workers: int = 1) -> None:
    """The startup line: tests, scripts and humans read the bound addresses from it."""
    log_event(
        logger,
        "serving",
        version=__version__,
        pid=os.getpid(),
        listeners=",".join(str(listener) for listener in bound),
        metrics_listener=settings.metrics_listener,
        workers=workers,
    )

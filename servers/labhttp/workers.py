"""``--workers N``: a parent process supervising N serving processes that share each port.

Each child runs ``serve.serve`` with its own event loop and binds every listener with
SO_REUSEPORT, so the kernel spreads new connections across the children. The parent serves
nothing. It first binds each address itself (reuse-port, not listening): that turns port 0
into one concrete port all children share, and makes "address already in use" fail at start,
in the parent, with exit status 2. Then it starts the children (``spawn``: no forked event
loop or locks), waits until every one reports ready, and watches them:

- SIGTERM or SIGINT: forward SIGTERM to every child, wait for their graceful shutdown, exit 0.
- a child exiting on its own: stop the others and exit 1. Restarting belongs to the kubelet,
  which counts restarts and backs off; a hidden in-process restart would mask a crash loop.

Each child keeps its own metrics registry, so a scrape of /metrics reports the one child
that answered it. That is why pods run one worker and scale by replicas; ``--workers`` is for
bare-metal use and the benchmark. ``cli`` calls ``supervise``; children log with ``worker=N``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType

from labhttp.serve import SHUTDOWN_SIGNALS, StartupError, bind_failure, log_serving, serve
from labhttp.settings import Listener, Settings
from labkit.logs import configure_logging, log_event

logger = logging.getLogger("labhttp.workers")

EXIT_OK = 0
EXIT_WORKER_DIED = 1
EXIT_USAGE = 2
# Beyond the children's own delay + timeout (aiohttp may spend the timeout twice: once
# waiting, once cancelling), before the parent stops waiting and kills them.
STOP_MARGIN_SECONDS = 5.0


@dataclass(slots=True)
class Worker:
    index: int
    process: BaseProcess
    messages: Connection


class Stopped(Exception):
    """The supervisor was told to stop while it waited; carries the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# --- child side ------------------------------------------------------------------------------


def run_worker(settings: Settings, index: int, messages: Connection) -> None:
    """A child's whole life: serve, telling the parent once it is ready (or why it cannot be)."""
    configure_logging(settings.log_format, static={"worker": index}, own="labhttp")
    try:
        asyncio.run(serve(settings, on_ready=lambda bound: messages.send(("ready", ""))))
    except StartupError as exc:
        messages.send(("failed", str(exc)))
        sys.exit(EXIT_USAGE)


# --- parent side -----------------------------------------------------------------------------


def supervise(settings: Settings) -> int:
    reservations = reserve_ports(settings.listeners)
    pinned = dataclasses.replace(settings, listeners=tuple(bound for bound, _ in reservations))
    workers: list[Worker] = []
    try:
        with SignalWakeup() as wakeup:
            try:
                for index in range(settings.workers):
                    workers.append(_spawn(pinned, index))
                _wait_until_ready(workers, wakeup)
                _release(reservations)  # the children hold the ports now
                log_serving(pinned, pinned.listeners, workers=settings.workers)
                return _watch(workers, wakeup, settings)
            except Stopped as stopped:
                log_event(logger, "shutdown-begun", signal=str(stopped))
                return _stop(workers, settings)
            except StartupError:
                _stop(workers, settings)
                raise
    finally:
        _release(reservations)


def reserve_ports(listeners: Iterable[Listener]) -> list[tuple[Listener, socket.socket]]:
    """Bind every address with SO_REUSEPORT (no listen): resolves port 0, detects ports in use."""
    reserved: list[tuple[Listener, socket.socket]] = []
    try:
        for listener in listeners:
            reserved.append(_reserve(listener))
    except BaseException:
        _release(reserved)
        raise
    return reserved


def _reserve(listener: Listener) -> tuple[Listener, socket.socket]:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            listener.host, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise bind_failure(listener, exc) from None
    try:
        # The options asyncio sets for reuse_port=True; the children's sockets must match them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise bind_failure(listener, exc) from None
    return dataclasses.replace(listener, port=sock.getsockname()[1]), sock


def _release(reservations: list[tuple[Listener, socket.socket]]) -> None:
    for _, sock in reservations:
        sock.close()


def _spawn(settings: Settings, index: int) -> Worker:
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=run_worker, args=(settings, index, send), name=f"labhttp-worker-{index}")
    process.start()
    send.close()  # the child holds the only sending end now
    return Worker(index=index, process=process, messages=receive)


def _wait_until_ready(workers: list[Worker], wakeup: socket.socket) -> None:
    """Return once every child said "ready"; any child exiting meanwhile fails the start."""
    pending = {worker.messages: worker for worker in workers}
    sentinels = {worker.process.sentinel: worker for worker in workers}
    while pending:
        for ready in wait([*pending, *sentinels, wakeup]):
            if ready is wakeup:
                raise Stopped(_read_signal(wakeup))
            if isinstance(ready, Connection):
                _take_ready_message(pending.pop(ready), ready)
            elif isinstance(ready, int):
                worker = sentinels[ready]
                if worker.messages in pending:
                    # Its own reason first, e.g. which address it could not bind.
                    del pending[worker.messages]
                    _take_ready_message(worker, worker.messages)
                worker.process.join()
                raise StartupError(
                    f"worker {worker.index} exited with status {worker.process.exitcode} at start"
                )


def _take_ready_message(worker: Worker, messages: Connection) -> None:
    try:
        kind, detail = messages.recv()
    except EOFError:
        kind, detail = "failed", f"worker {worker.index} exited before it was ready"
    if kind != "ready":
        raise StartupError(detail)


def _watch(workers: list[Worker], wakeup: socket.socket, settings: Settings) -> int:
    """Block until a signal (graceful stop, 0) or a child's own exit (stop the rest, 1)."""
    sentinels = {worker.process.sentinel: worker for worker in workers}
    ready = wait([*sentinels, wakeup])
    if wakeup in ready:
        raise Stopped(_read_signal(wakeup))
    worker = sentinels[next(r for r in ready if isinstance(r, int))]
    worker.process.join()
    log_event(logger, "worker-exited", logging.ERROR, worker=worker.index, status=worker.process.exitcode)
    _stop(workers, settings)
    return EXIT_WORKER_DIED


def _stop(workers: list[Worker], settings: Settings) -> int:
    """SIGTERM every live child, wait for their own graceful shutdown, kill what outlives it."""
    for worker in workers:
        if worker.process.is_alive() and worker.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):  # it may exit between the check and the kill
                os.kill(worker.process.pid, signal.SIGTERM)
    deadline = (
        time.monotonic() + settings.shutdown_delay + 2 * settings.shutdown_timeout + STOP_MARGIN_SECONDS
    )
    statuses = []
    for worker in workers:
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            log_event(logger, "worker-killed", logging.ERROR, worker=worker.index)
            worker.process.kill()
        worker.process.join()
        statuses.append(worker.process.exitcode)
    log_event(logger, "stopped", workers=len(workers), statuses=",".join(map(str, statuses)))
    # -SIGTERM: a child stopped before it had installed its handlers, so it had nothing in flight.
    clean = (0, -signal.SIGTERM)
    return EXIT_OK if all(status in clean for status in statuses) else EXIT_WORKER_DIED


class SignalWakeup:
    """SIGTERM and SIGINT as bytes on a socket, so one ``wait()`` covers children and signals."""

    def __init__(self) -> None:
        self._readable, self._writable = socket.socketpair()
        self._old_fd = -1
        self._old_handlers: list[
            signal.Handlers | Callable[[int, FrameType | None], object] | int | None
        ] = []

    def __enter__(self) -> socket.socket:
        for end in (self._readable, self._writable):
            end.setblocking(False)
        self._old_fd = signal.set_wakeup_fd(self._writable.fileno())
        # The wakeup byte is only written for signals with a Python-level handler.
        self._old_handlers = [signal.signal(signum, _ignore) for signum in SHUTDOWN_SIGNALS]
        return self._readable

    def __exit__(self, *exc_info: object) -> None:
        signal.set_wakeup_fd(self._old_fd)
        for signum, handler in zip(SHUTDOWN_SIGNALS, self._old_handlers, strict=True):
            signal.signal(signum, handler)
        self._readable.close()
        self._writable.close()


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Nothing to do: the signal number is already on the wakeup socket."""


def _read_signal(wakeup: socket.socket) -> int:
    return wakeup.recv(1)[0]

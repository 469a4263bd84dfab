"""Helpers for the labhttp tests: settings for two listeners, and the server as a subprocess.

``LabhttpProcess`` runs ``python -m labhttp`` with JSON logs and waits for log events instead of
sleeping. Fixtures that use these live in ``conftest.py`` beside this file. Import it as
``tests.labhttp.testkit``, like ``tests.support``: the repository root is on the test path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from labhttp.metrics import RequestMetrics
from labhttp.settings import Listener, Settings
from labhttp.state import ServingState

# Generous: the machine may be busy; waits end as soon as the awaited line arrives.
EVENT_TIMEOUT = 20.0
MAX_BODY_BYTES = 1024


def two_listeners(**overrides: Any) -> Settings:
    listeners = (Listener("api", "127.0.0.1", 0), Listener("metrics", "127.0.0.1", 0))
    return Settings(listeners=listeners, max_body_bytes=MAX_BODY_BYTES, **overrides)


@dataclass
class Listeners:
    """Two running listeners, their shared state and metrics, and a client session."""

    settings: Settings
    state: ServingState
    metrics: RequestMetrics
    session: aiohttp.ClientSession
    urls: dict[str, URL] = field(default_factory=dict)
    apps: dict[str, web.Application] = field(default_factory=dict)

    def url(self, listener: str, path: str) -> URL:
        return self.urls[listener].join(URL(path))


class LogEvents(logging.Handler):
    """Collects the events labhttp logs in this process, so tests can wait for one."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[str] = []
        self._arrived = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())
        self._arrived.set()

    async def wait_for(self, event: str) -> None:
        async with asyncio.timeout(EVENT_TIMEOUT):
            while event not in self.seen:
                self._arrived.clear()
                await self._arrived.wait()


# --- the server as a subprocess --------------------------------------------------------------


class LabhttpProcess:
    """``python -m labhttp`` with JSON logs; events are read from its stdout as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, *args: str, env: dict[str, str] | None = None) -> LabhttpProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "labhttp",
            "--log-format",
            "json",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=subprocess_env(env),
        )
        return cls(process)

    async def wait_for_event(self, event: str) -> dict[str, Any]:
        """Read log lines until one has this event (also looking at those read before)."""
        for seen in self.events:
            if seen["event"] == event:
                return seen
        async with asyncio.timeout(EVENT_TIMEOUT):
            while True:
                line = await self._stdout().readline()
                if not line:
                    raise AssertionError(f"labhttp exited before logging {event!r}; saw {self.events}")
                record: dict[str, Any] = json.loads(line)
                self.events.append(record)
                if record["event"] == event:
                    return record

    async def serving_urls(self) -> dict[str, URL]:
        """Listener name -> base URL, from the startup line."""
        serving = await self.wait_for_event("serving")
        urls = {}
        for item in serving["listeners"].split(","):
            name, _, address = item.partition("=")
            urls[name] = URL(f"http://{address}")
        return urls

    def send_signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    async def finish(self) -> tuple[int, str]:
        """Wait for exit; the exit status and all of stderr. Remaining stdout is kept as events."""
        async with asyncio.timeout(EVENT_TIMEOUT):
            stdout, stderr = await self.process.communicate()
        self.events.extend(json.loads(line) for line in stdout.splitlines() if line.strip())
        assert self.process.returncode is not None
        return self.process.returncode, stderr.decode()

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()

    def _stdout(self) -> asyncio.StreamReader:
        assert self.process.stdout is not None
        return self.process.stdout


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LABHTTP_")}
    env.update(extra or {})
    return env

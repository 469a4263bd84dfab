"""``python -m labhttp`` as a real process: signals, graceful shutdown, exit statuses, workers.

Ports are port 0, read back from the ``serving`` log line; every wait is for a log line or an
exit, never for time to pass.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket

import aiohttp
import pytest
from tests.labhttp.testkit import LabhttpProcess
from yarl import URL

LOOPBACK = ("--listen", "api=127.0.0.1:0", "--listen", "metrics=127.0.0.1:0")


async def fetch(url: URL) -> tuple[int, str]:
    # A new connection each time: during shutdown, reusing an old one would prove nothing.
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
        session.get(url) as response,
    ):
        return response.status, await response.text()


async def start(
    processes: list[LabhttpProcess], *args: str, env: dict[str, str] | None = None
) -> LabhttpProcess:
    process = await LabhttpProcess.start(*args, env=env)
    processes.append(process)
    return process


async def test_sigterm_fails_readiness_lets_the_slow_request_finish_and_exits_0(
    labhttp_processes: list[LabhttpProcess],
) -> None:
    server = await start(labhttp_processes, *LOOPBACK, "--debug-routes", "--shutdown-delay", "2")
    api = (await server.serving_urls())["api"]
    slow = asyncio.create_task(fetch(api / "debug/sleep" % {"seconds": "3"}))
    await server.wait_for_event("debug-sleep")

    server.send_signal(signal.SIGTERM)
    await server.wait_for_event("shutdown-begun")
    assert await fetch(api / "readyz") == (503, "shutting down")
    assert await fetch(api / "health") == (200, "Server is healthy")

    assert await slow == (200, "slept 3s")
    status, stderr = await server.finish()
    assert status == 0
    assert "Traceback" not in stderr
    events = {event["event"]: event for event in server.events}
    assert events["draining"]["in_flight"] == 1
    assert events["stopped"]["abandoned"] == 0


async def test_configured_from_the_environment_it_serves_and_sigint_stops_it_with_status_0(
    labhttp_processes: list[LabhttpProcess],
) -> None:
    env = {"LABHTTP_LISTEN": "web=127.0.0.1:0", "LABHTTP_MESSAGE": "from the pod spec"}
    server = await start(labhttp_processes, env=env)
    urls = await server.serving_urls()
    assert list(urls) == ["web"]
    assert await fetch(urls["web"] / "") == (200, "from the pod spec")
    # The only listener is also the metrics listener.
    assert (await fetch(urls["web"] / "metrics"))[0] == 200

    server.send_signal(signal.SIGINT)
    status, stderr = await server.finish()
    assert (status, stderr) == (0, "")
    access = [event for event in server.events if event["event"] == "request"]
    assert [(event["listener"], event["route"], event["status"]) for event in access] == [
        ("web", "/", 200),
        ("web", "/metrics", 200),
    ]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--listen", "api=127.0.0.1"], {}, "--listen: 'api=127.0.0.1': expected NAME=HOST:PORT"),
        (["--listen", "api=127.0.0.1:1", "--listen", "api=127.0.0.1:2"], {}, "'api' is given twice"),
        (["--listen", "a=127.0.0.1:8080", "--listen", "b=127.0.0.1:8080"], {}, "share port 8080"),
        ([], {"LABHTTP_LISTEN": "api=127.0.0.1:http"}, "LABHTTP_LISTEN: 'api=127.0.0.1:http': port must be"),
        (["--workers", "0"], {}, "--workers: '0': expected a whole number"),
    ],
    ids=["malformed-listen", "duplicate-name", "duplicate-port", "malformed-env", "zero-workers"],
)
async def test_bad_settings_exit_2_with_one_line_on_stderr(
    labhttp_processes: list[LabhttpProcess], args: list[str], env: dict[str, str], message: str
) -> None:
    server = await start(labhttp_processes, *args, env=env)
    status, stderr = await server.finish()
    assert status == 2
    assert stderr.count("\n") == 1
    assert stderr.startswith("labhttp: error: ")
    assert message in stderr
    assert server.events == []


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_port_in_use_exits_2_with_one_line_on_stderr(
    labhttp_processes: list[LabhttpProcess], workers: str
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        server = await start(labhttp_processes, "--listen", f"api=127.0.0.1:{port}", "--workers", workers)
        status, stderr = await server.finish()
    assert status == 2
    assert stderr == f"labhttp: error: cannot listen for api on 127.0.0.1:{port}: address already in use\n"


async def test_workers_share_each_port_and_stop_together_on_sigterm(
    labhttp_processes: list[LabhttpProcess],
) -> None:
    server = await start(labhttp_processes, *LOOPBACK, "--workers", "2")
    urls = await server.serving_urls()
    for _ in range(4):
        assert await fetch(urls["api"] / "") == (200, "Hello, Kubernetes and Istio!")
    listening = [event for event in server.events if event["event"] == "listening"]
    assert sorted((event["worker"], event["listener"]) for event in listening) == [
        (0, "api"),
        (0, "metrics"),
        (1, "api"),
        (1, "metrics"),
    ]
    assert {event["address"] for event in listening if event["listener"] == "api"} == {urls["api"].authority}

    server.send_signal(signal.SIGTERM)
    status, stderr = await server.finish()
    assert status == 0
    assert "Traceback" not in stderr
    stopped = [event for event in server.events if event["event"] == "stopped" and "worker" not in event]
    assert stopped[0]["statuses"] == "0,0"


async def test_a_worker_that_dies_stops_the_others_and_the_supervisor_exits_1(
    labhttp_processes: list[LabhttpProcess],
) -> None:
    server = await start(labhttp_processes, *LOOPBACK, "--workers", "2")
    await server.serving_urls()
    [victim] = {
        event["pid"] for event in server.events if event["event"] == "listening" and event["worker"] == 0
    }

    os.kill(victim, signal.SIGKILL)

    status, stderr = await server.finish()
    assert status == 1
    assert "Traceback" not in stderr
    [exited] = [event for event in server.events if event["event"] == "worker-exited"]
    assert (exited["level"], exited["worker"], exited["status"]) == ("error", 0, -signal.SIGKILL)
    assert any(event["event"] == "stopped" and event.get("worker") == 1 for event in server.events)

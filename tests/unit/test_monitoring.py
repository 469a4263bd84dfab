"""labop.monitoring: /metrics, /healthz and /readyz, served on loopback ports the OS picks."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from labop.monitoring import Listener, make_health_app, make_metrics_app, serve

pytestmark = pytest.mark.timeout(10)


class Checks:
    """The two callables behind /healthz and /readyz, flipped by the tests."""

    def __init__(self) -> None:
        self.healthy = True
        self.ready = False
        self.asked: list[str] = []

    def health(self) -> bool:
        self.asked.append("healthz")
        return self.healthy

    def readiness(self) -> bool:
        self.asked.append("readyz")
        return self.ready


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


class Servers:
    """Serves apps on loopback ports the OS picks, and stops them all at the end."""

    def __init__(self) -> None:
        self.started: list[Listener] = []

    async def start(self, app: web.Application) -> Listener:
        listener = await serve(app, "127.0.0.1", 0)
        self.started.append(listener)
        return listener

    async def stop(self) -> None:
        for listener in self.started:
            await listener.runner.cleanup()


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    servers = Servers()
    yield servers
    await servers.stop()


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("labop_test_things", "Things counted by the test.", registry=registry).inc(3)
    return registry


async def get(http: aiohttp.ClientSession, listener: Listener, path: str) -> tuple[int, str, str]:
    async with http.get(f"http://127.0.0.1:{listener.port}{path}") as resp:
        return resp.status, await resp.text(), resp.headers.get("Content-Type", "")


async def test_serve_on_port_0_reports_the_port_it_got(registry: CollectorRegistry) -> None:
    listener = await serve(make_metrics_app(registry), "127.0.0.1", 0)
    try:
        assert listener.port > 0
    finally:
        await listener.runner.cleanup()


async def test_metrics_serves_the_registrys_text_format(
    http: aiohttp.ClientSession, servers: Servers, registry: CollectorRegistry
) -> None:
    listener = await servers.start(make_metrics_app(registry))
    status, body, content_type = await get(http, listener, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(body)}
    (sample,) = [s for s in families["labop_test_things"].samples if s.name == "labop_test_things_total"]
    assert sample.value == 3


async def test_metrics_speaks_openmetrics_to_a_scraper_that_asks_for_it(
    http: aiohttp.ClientSession, servers: Servers, registry: CollectorRegistry
) -> None:
    listener = await servers.start(make_metrics_app(registry))
    accept = {"Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"}
    async with http.get(f"http://127.0.0.1:{listener.port}/metrics", headers=accept) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/openmetrics-text"
        body = await resp.text()
    assert "labop_test_things_total 3.0" in body
    assert body.endswith("# EOF\n")


async def test_metrics_are_gzipped_for_a_scraper_that_accepts_it(
    http: aiohttp.ClientSession, servers: Servers, registry: CollectorRegistry
) -> None:
    listener = await servers.start(make_metrics_app(registry))
    url = f"http://127.0.0.1:{listener.port}/metrics"
    async with http.get(url, headers={"Accept-Encoding": "gzip"}, auto_decompress=False) as resp:
        assert resp.headers.get("Content-Encoding") == "gzip"
        body = gzip.decompress(await resp.read()).decode()
    assert "labop_test_things_total 3.0" in body
    async with http.get(url, headers={"Accept-Encoding": "identity"}, auto_decompress=False) as resp:
        assert "Content-Encoding" not in resp.headers
        assert "labop_test_things_total 3.0" in await resp.text()


async def test_metrics_shows_what_changed_since_the_last_scrape(
    http: aiohttp.ClientSession, servers: Servers
) -> None:
    registry = CollectorRegistry()
    counter = Counter("labop_test_scrapes", "Scrapes.", registry=registry)
    listener = await servers.start(make_metrics_app(registry))
    counter.inc()
    assert "labop_test_scrapes_total 1.0" in (await get(http, listener, "/metrics"))[1]
    counter.inc()
    assert "labop_test_scrapes_total 2.0" in (await get(http, listener, "/metrics"))[1]


async def test_the_metrics_port_serves_nothing_else(
    http: aiohttp.ClientSession, servers: Servers, registry: CollectorRegistry
) -> None:
    listener = await servers.start(make_metrics_app(registry))
    assert (await get(http, listener, "/healthz"))[0] == 404


async def test_healthz_is_200_while_its_check_passes_and_503_when_it_fails(
    http: aiohttp.ClientSession, servers: Servers
) -> None:
    checks = Checks()
    listener = await servers.start(make_health_app(checks.health, checks.readiness))
    assert (await get(http, listener, "/healthz"))[:2] == (200, "ok\n")
    checks.healthy = False
    assert (await get(http, listener, "/healthz"))[:2] == (503, "healthz failing\n")


async def test_readyz_follows_its_own_check_not_the_health_check(
    http: aiohttp.ClientSession, servers: Servers
) -> None:
    checks = Checks()
    listener = await servers.start(make_health_app(checks.health, checks.readiness))
    assert (await get(http, listener, "/readyz"))[:2] == (503, "readyz failing\n")
    checks.ready = True
    assert (await get(http, listener, "/readyz"))[:2] == (200, "ok\n")
    checks.healthy = False
    assert (await get(http, listener, "/readyz"))[0] == 200


async def test_each_probe_asks_its_check_on_every_request(
    http: aiohttp.ClientSession, servers: Servers
) -> None:
    checks = Checks()
    listener = await servers.start(make_health_app(checks.health, checks.readiness))
    for path in ("/healthz", "/readyz", "/healthz"):
        await get(http, listener, path)
    assert checks.asked == ["healthz", "readyz", "healthz"]


async def test_the_health_port_serves_no_metrics(http: aiohttp.ClientSession, servers: Servers) -> None:
    checks = Checks()
    listener = await servers.start(make_health_app(checks.health, checks.readiness))
    assert (await get(http, listener, "/metrics"))[0] == 404


async def test_cleaning_up_the_runner_closes_the_port(
    http: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    listener = await serve(make_metrics_app(registry), "127.0.0.1", 0)
    await listener.runner.cleanup()
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(http, listener, "/metrics")

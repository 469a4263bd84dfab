"""The metrics listener's /metrics, parsed as Prometheus text, counts by listener, route and code."""

from __future__ import annotations

import gzip

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from tests.labhttp.testkit import Listeners

from labhttp.metrics import UNMATCHED_ROUTE, RequestMetrics, make_registry

REQUESTS = "labhttp_http_requests_total"
LATENCY_COUNT = "labhttp_http_request_duration_seconds_count"


async def scrape(listeners: Listeners) -> list[Sample]:
    async with listeners.session.get(listeners.url("metrics", "/metrics")) as response:
        assert response.status == 200
        text = await response.text()
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The value of the one sample with this name and exactly these labels; 0 if absent."""
    matches = [sample.value for sample in samples if sample.name == name and sample.labels == labels]
    assert len(matches) <= 1
    return matches[0] if matches else 0.0


async def hit(listeners: Listeners, listener: str, path: str, method: str = "GET") -> None:
    async with listeners.session.request(method, listeners.url(listener, path)) as response:
        await response.read()


async def test_requests_are_counted_by_listener_route_and_code(listeners: Listeners) -> None:
    await hit(listeners, "api", "/")
    await hit(listeners, "api", "/")
    await hit(listeners, "api", "/health")
    await hit(listeners, "metrics", "/health")
    await hit(listeners, "api", "/health", method="DELETE")

    samples = await scrape(listeners)

    assert value(samples, REQUESTS, listener="api", route="/", code="200") == 2
    assert value(samples, REQUESTS, listener="api", route="/health", code="200") == 1
    assert value(samples, REQUESTS, listener="metrics", route="/health", code="200") == 1
    assert value(samples, REQUESTS, listener="api", route=UNMATCHED_ROUTE, code="405") == 1
    assert value(samples, REQUESTS, listener="metrics", route="/", code="200") == 0


async def test_the_latency_histogram_counts_the_same_requests(listeners: Listeners) -> None:
    for _ in range(3):
        await hit(listeners, "api", "/")

    samples = await scrape(listeners)

    assert value(samples, LATENCY_COUNT, listener="api", route="/", code="200") == 3
    buckets = [s for s in samples if s.name == "labhttp_http_request_duration_seconds_bucket"]
    assert {s.labels["le"] for s in buckets} >= {"0.0005", "0.001", "+Inf"}


async def test_unknown_paths_share_one_route_label_so_cardinality_stays_bounded(listeners: Listeners) -> None:
    for path in ("/a", "/b/c", "/d?e=f", "/%20"):
        await hit(listeners, "api", path)

    samples = await scrape(listeners)

    assert value(samples, REQUESTS, listener="api", route=UNMATCHED_ROUTE, code="404") == 4
    routes = {s.labels["route"] for s in samples if s.name == REQUESTS}
    assert routes <= {"/", "/health", "/readyz", "/metrics", "/debug/sleep", UNMATCHED_ROUTE}


async def test_a_scrape_counts_itself_once_it_has_answered(listeners: Listeners) -> None:
    await scrape(listeners)
    samples = await scrape(listeners)
    assert value(samples, REQUESTS, listener="metrics", route="/metrics", code="200") == 1


async def test_process_and_platform_metrics_are_exposed(listeners: Listeners) -> None:
    names = {sample.name for sample in await scrape(listeners)}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"} <= names


async def test_nothing_is_in_flight_between_requests(listeners: Listeners) -> None:
    await hit(listeners, "api", "/")
    samples = await scrape(listeners)
    assert value(samples, "labhttp_http_requests_in_flight", listener="api") == 0
    # The scrape itself is the one request in flight on the metrics listener.
    assert value(samples, "labhttp_http_requests_in_flight", listener="metrics") == 1


def test_each_registry_holds_its_own_metrics_so_app_instances_share_nothing() -> None:
    first, second = RequestMetrics(make_registry()), RequestMetrics(make_registry())
    first.started("api")
    first.observe("api", "/", 200, 0.001)
    assert first.registry.get_sample_value(REQUESTS, {"listener": "api", "route": "/", "code": "200"}) == 1
    assert (
        second.registry.get_sample_value(REQUESTS, {"listener": "api", "route": "/", "code": "200"}) is None
    )


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [("", "text/plain"), ("application/openmetrics-text; version=1.0.0", "application/openmetrics-text")],
)
async def test_metrics_answer_in_the_format_the_scraper_accepts(
    listeners: Listeners, accept: str, content_type: str
) -> None:
    headers = {"Accept": accept} if accept else {}
    async with listeners.session.get(listeners.url("metrics", "/metrics"), headers=headers) as response:
        assert response.content_type == content_type


async def test_metrics_are_gzipped_for_a_scraper_that_accepts_it(listeners: Listeners) -> None:
    url = listeners.url("metrics", "/metrics")
    async with listeners.session.get(url, headers={"Accept-Encoding": "gzip"}, auto_decompress=False) as resp:
        assert resp.headers.get("Content-Encoding") == "gzip"
        body = gzip.decompress(await resp.read()).decode()
    assert "labhttp_http_requests_total" in body

"""Prometheus metrics on an explicit registry (never the global one).

``serve`` makes one registry per process with ``make_registry`` (process and platform collectors
included) and one ``RequestMetrics`` on it that every listener records into; ``observe`` calls
``RequestMetrics.observe`` per request; ``app`` serves the registry on the metrics listener only,
through prometheus-client's own aiohttp handler (OpenMetrics or text by Accept, gzip when accepted).
Tests make a registry each, so nothing leaks between application instances.

Labels are bounded on purpose: ``route`` is the route template, and every request that matched
no route shares ``UNMATCHED_ROUTE``; the HTTP method is left out because clients can invent them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

UNMATCHED_ROUTE = "<unmatched>"

# The default buckets start at 5 ms; a lab server mostly answers well under 1 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def make_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


class RequestMetrics:
    """Request count, latency and in-flight gauge, labelled by listener, route and code."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        labels = ("listener", "route", "code")
        self._requests = Counter(
            "labhttp_http_requests",
            "HTTP requests answered, by listener, route template and status code.",
            labels,
            registry=registry,
        )
        self._latency = Histogram(
            "labhttp_http_request_duration_seconds",
            "Time spent handling HTTP requests, by listener, route template and status code.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._in_flight = Gauge(
            "labhttp_http_requests_in_flight",
            "HTTP requests being handled now, by listener.",
            ("listener",),
            registry=registry,
        )

    def started(self, listener: str) -> None:
        self._in_flight.labels(listener).inc()

    def observe(self, listener: str, route: str, code: int, seconds: float) -> None:
        self._in_flight.labels(listener).dec()
        self._requests.labels(listener, route, str(code)).inc()
        self._latency.labels(listener, route, str(code)).observe(seconds)

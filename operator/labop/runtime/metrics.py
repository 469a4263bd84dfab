"""Prometheus metrics of the work queue and the worker pool, under controller-runtime's names.

A work queue reports to a `QueueMetrics` (the queue's `QueueMetricsSink`), a worker pool to a
`ControllerMetrics`; whoever built them serves the registry (e.g. with
`prometheus_client.generate_latest(registry)`).

Nothing here touches prometheus-client's global default registry: every object is built on a
`CollectorRegistry` passed in explicitly. Several queues or controllers may share one registry
(their series differ by the `name`/`controller` labels), and tests use a fresh registry each.
The metric families are created once per registry and shared by every object built on it.

Names, types, labels and buckets follow controller-runtime (pkg/metrics and
internal/controller/metrics):

* workqueue_depth{name,controller,priority} (gauge: keys marked for processing and not yet
  taken by a worker, i.e. waiting, parked, or added again while processing, as client-go counts
  it; `priority` is "low" or "normal", the lane the key waits in, as controller-runtime's
  priority queue labels it; both series exist from the start at 0; `sum without (priority)` is
  the depth of old), workqueue_adds_total (counter: keys newly marked; a low key moved up is not
  a new add), workqueue_retries_total (counter), workqueue_queue_duration_seconds and
  workqueue_work_duration_seconds (histograms, buckets 1e-8 .. 1e3 by factors of 10),
  workqueue_unfinished_work_seconds and workqueue_longest_running_processor_seconds (gauges
  computed at scrape time); labels `name` and `controller`.
* controller_runtime_reconcile_total{controller,result} (result = success | error | requeue |
  requeue_after, all four present from the start at 0), controller_runtime_reconcile_errors_total,
  controller_runtime_terminal_reconcile_errors_total, controller_runtime_reconcile_panics_total,
  controller_runtime_reconcile_time_seconds (histogram, 0.005 .. 60 s),
  controller_runtime_max_concurrent_reconciles and controller_runtime_active_workers (gauges);
  label `controller`.
* ours, no controller-runtime equivalent: controller_resync_keys_total{controller} (keys a
  resync pass added or found already queued) and controller_resync_passes_total{controller}
  (passes that walked every cached key), both from the start at 0. Their ratio is the number of
  keys per pass: every cached key, since a resync drops none.

prometheus-client also exports a `*_created` sample next to each counter and histogram; it is
harmless and can be switched off process-wide with PROMETHEUS_DISABLE_CREATED_SERIES=True.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Iterable
from typing import Final, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from labop.runtime.clock import Clock, MonotonicClock
from labop.runtime.workqueue import NORMAL, Priority

F = TypeVar("F")


def once_per_registry(build: Callable[[CollectorRegistry], F]) -> Callable[[CollectorRegistry], F]:
    """``build(registry)`` made once per registry and shared by every later caller (a family
    registered twice on one registry is an error); a registry's families go with it."""
    made: weakref.WeakKeyDictionary[CollectorRegistry, F] = weakref.WeakKeyDictionary()

    def families(registry: CollectorRegistry) -> F:
        found = made.get(registry)
        if found is None:
            found = made[registry] = build(registry)
        return found

    return families


__all__ = [
    "QUEUE_DURATION_BUCKETS",
    "RECONCILE_RESULTS",
    "RECONCILE_TIME_BUCKETS",
    "ControllerMetrics",
    "QueueMetrics",
]

_QUEUE_LABELS: Final = ("name", "controller")
_DEPTH_LABELS: Final = (*_QUEUE_LABELS, "priority")
# controller-runtime: prometheus.ExponentialBuckets(10e-9, 10, 12), i.e. 1e-8 s .. 1000 s.
QUEUE_DURATION_BUCKETS: Final = tuple(float(f"1e{exponent}") for exponent in range(-8, 4))
# controller-runtime's reconcile_time_seconds buckets.
RECONCILE_TIME_BUCKETS: Final = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5),
    *(0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5),
    *(5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0),
)
RECONCILE_RESULTS: Final = ("success", "error", "requeue", "requeue_after")

_UNFINISHED: Final = "workqueue_unfinished_work_seconds"
_LONGEST: Final = "workqueue_longest_running_processor_seconds"


# --------------------------------------------------------------------------- work queue


class QueueMetrics:
    """The `workqueue_*` series of one queue; pass it as `WorkQueue(..., metrics=...)`.

    Give it the queue's clock (`clock=`) so that durations are measured on the same time line
    (a `FakeClock` in tests). A second `QueueMetrics` with the same name on the same registry
    shares the counters and takes over the scrape-time gauges.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        name: str,
        *,
        controller: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        families = _workqueue_families(registry)
        self.name = name
        self.controller = controller if controller is not None else name
        self._clock: Clock = clock or MonotonicClock()
        labels = {"name": self.name, "controller": self.controller}
        self._depth = {p: families.depth.labels(**labels, priority=p.label) for p in Priority}
        self._adds = families.adds.labels(**labels)
        self._retries = families.retries.labels(**labels)
        self._queue_duration = families.queue_duration.labels(**labels)
        self._work_duration = families.work_duration.labels(**labels)
        self._added_at: dict[Hashable, float] = {}
        self._started_at: dict[Hashable, float] = {}
        families.in_flight.track(self)

    def add(self, key: Hashable, priority: Priority = NORMAL) -> None:
        self._adds.inc()
        self._depth[priority].inc()
        self._added_at.setdefault(key, self._clock.now())

    def promote(self, key: Hashable) -> None:
        self._depth[Priority.LOW].dec()
        self._depth[Priority.NORMAL].inc()

    def get(self, key: Hashable, priority: Priority = NORMAL) -> None:
        now = self._clock.now()
        self._depth[priority].dec()
        self._started_at[key] = now
        added = self._added_at.pop(key, None)
        if added is not None:
            self._queue_duration.observe(now - added)

    def done(self, key: Hashable) -> None:
        started = self._started_at.pop(key, None)
        if started is not None:
            self._work_duration.observe(self._clock.now() - started)

    def retry(self) -> None:
        self._retries.inc()

    def in_flight_seconds(self) -> tuple[float, float]:
        """(unfinished work: sum of the ages of keys in processing, age of the oldest one)."""
        now = self._clock.now()
        # The scrape may run in the HTTP server's thread while the loop mutates the dict:
        # tuple(dict.values()) is one C call under the GIL, so it sees a consistent snapshot.
        ages = [now - started for started in tuple(self._started_at.values())]
        return sum(ages), max(ages, default=0.0)


class _InFlightCollector:
    """Computes the two in-flight gauges of every queue of a registry when it is scraped."""

    def __init__(self) -> None:
        self._queues: dict[tuple[str, str], QueueMetrics] = {}

    def track(self, metrics: QueueMetrics) -> None:
        self._queues[(metrics.name, metrics.controller)] = metrics

    def describe(self) -> Iterable[Metric]:
        return [_gauge_family(_UNFINISHED), _gauge_family(_LONGEST)]

    def collect(self) -> Iterable[Metric]:
        unfinished = _gauge_family(_UNFINISHED)
        longest = _gauge_family(_LONGEST)
        for (name, controller), metrics in tuple(self._queues.items()):
            total, oldest = metrics.in_flight_seconds()
            unfinished.add_metric([name, controller], total)
            longest.add_metric([name, controller], oldest)
        return [unfinished, longest]


def _gauge_family(name: str) -> GaugeMetricFamily:
    helps = {
        _UNFINISHED: "Seconds of work in progress not yet observed by work_duration; large values "
        "suggest stuck workers.",
        _LONGEST: "Seconds the longest-running key of the queue has been processing.",
    }
    return GaugeMetricFamily(name, helps[name], labels=list(_QUEUE_LABELS))


class _WorkqueueFamilies:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.depth = Gauge(
            "workqueue_depth", "Keys waiting to be processed, by priority.", _DEPTH_LABELS, registry=registry
        )
        self.adds = Counter(
            "workqueue_adds_total", "Keys newly marked for processing.", _QUEUE_LABELS, registry=registry
        )
        self.retries = Counter(
            "workqueue_retries_total", "Delayed (retry) adds requested.", _QUEUE_LABELS, registry=registry
        )
        self.queue_duration = Histogram(
            "workqueue_queue_duration_seconds",
            "Seconds a key waits in the queue before a worker takes it.",
            _QUEUE_LABELS,
            registry=registry,
            buckets=QUEUE_DURATION_BUCKETS,
        )
        self.work_duration = Histogram(
            "workqueue_work_duration_seconds",
            "Seconds a worker holds a key.",
            _QUEUE_LABELS,
            registry=registry,
            buckets=QUEUE_DURATION_BUCKETS,
        )
        self.in_flight = _InFlightCollector()
        registry.register(self.in_flight)


_workqueue_families = once_per_registry(_WorkqueueFamilies)


# --------------------------------------------------------------------------- controller


class ControllerMetrics:
    """The `controller_runtime_*` series of one controller; pass it to `WorkerPool(metrics=...)`."""

    def __init__(self, registry: CollectorRegistry, controller: str) -> None:
        families = _controller_families(registry)
        self.controller = controller
        self._totals = {result: families.total.labels(controller, result) for result in RECONCILE_RESULTS}
        self._errors = families.errors.labels(controller)
        self._terminal_errors = families.terminal_errors.labels(controller)
        self._panics = families.panics.labels(controller)
        self._time = families.time.labels(controller)
        self._max_concurrent = families.max_concurrent.labels(controller)
        self._active = families.active.labels(controller)
        self._resync_keys = families.resync_keys.labels(controller)
        self._resync_passes = families.resync_passes.labels(controller)

    def reconciled(self, result: str, seconds: float) -> None:
        """One reconcile ended with `result` (one of RECONCILE_RESULTS) after `seconds`."""
        self._totals[result].inc()
        self._time.observe(seconds)

    def error(self, *, terminal: bool = False) -> None:
        self._errors.inc()
        if terminal:
            self._terminal_errors.inc()

    def panic(self) -> None:
        self._panics.inc()

    def set_max_concurrent(self, workers: int) -> None:
        self._max_concurrent.set(workers)

    def worker_busy(self) -> None:
        self._active.inc()

    def worker_idle(self) -> None:
        self._active.dec()

    def resync_pass(self, keys: int) -> None:
        """A resync pass walked the cache and queued (or found queued) `keys` keys."""
        self._resync_keys.inc(keys)
        self._resync_passes.inc()


class _ControllerFamilies:
    def __init__(self, registry: CollectorRegistry) -> None:
        by_controller = ("controller",)
        self.total = Counter(
            "controller_runtime_reconcile_total",
            "Reconciliations per controller and result.",
            ("controller", "result"),
            registry=registry,
        )
        self.errors = Counter(
            "controller_runtime_reconcile_errors_total",
            "Reconciliations that failed.",
            by_controller,
            registry=registry,
        )
        self.terminal_errors = Counter(
            "controller_runtime_terminal_reconcile_errors_total",
            "Reconciliations that failed for good (not retried).",
            by_controller,
            registry=registry,
        )
        self.panics = Counter(
            "controller_runtime_reconcile_panics_total",
            "Reconciliations that broke the reconciler's contract (a bug), caught by the worker.",
            by_controller,
            registry=registry,
        )
        self.time = Histogram(
            "controller_runtime_reconcile_time_seconds",
            "Seconds per reconciliation.",
            by_controller,
            registry=registry,
            buckets=RECONCILE_TIME_BUCKETS,
        )
        self.max_concurrent = Gauge(
            "controller_runtime_max_concurrent_reconciles",
            "Workers of the controller.",
            by_controller,
            registry=registry,
        )
        self.active = Gauge(
            "controller_runtime_active_workers",
            "Workers reconciling right now.",
            by_controller,
            registry=registry,
        )
        self.resync_keys = Counter(
            "controller_resync_keys_total",
            "Keys the periodic (or leader's) resync added or found already queued.",
            by_controller,
            registry=registry,
        )
        self.resync_passes = Counter(
            "controller_resync_passes_total",
            "Resync passes that walked every cached key.",
            by_controller,
            registry=registry,
        )


_controller_families = once_per_registry(_ControllerFamilies)

"""The API's Prometheus metrics (prometheus-client): requests and their latency per route
template, the store's calls and their latency per command, whether the store answers, and the
live path's re-scores: their time, and the time from a user's event to the first list with it.

Under gunicorn every worker process writes its values to files in ``PROMETHEUS_MULTIPROC_DIR``
(set by ``api/gunicorn_conf.py`` before the app is loaded) and a scrape of ``/metrics``, whichever
worker answers it, adds up every worker's: prometheus-client's multiprocess mode, made for this.
Elsewhere (``python -m api --server wsgiref``, tests) a process reports its own registry.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from pymongo import monitoring

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Upper bounds (seconds) of the request latency histogram buckets.
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: ... and of the store calls' (a point read takes about half a millisecond on SecantusDB).
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: ... and of the time from an event to the list that includes it (the client asks for the list).
EVENT_TO_LIST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The metrics of one app (its own registry, so that several apps in one process, as in the
    tests, count apart)."""

    def __init__(self, prefix: str = "movietime", buckets: tuple[float, ...] = DEFAULT_BUCKETS):
        if list(buckets) != sorted(set(buckets)) or not buckets:
            raise ValueError("buckets must be increasing and unique")
        disable_created_metrics()  # no *_created series: the 0.0.4 text format has none
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            f"{prefix}_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{prefix}_http_request_duration_seconds",
            "Time to answer a request, by route template.",
            ["route", "method"],
            buckets=buckets,
            registry=self.registry,
        )
        self.store_calls = Histogram(
            f"{prefix}_store_call_duration_seconds",
            "Time of each store command the API sent (pymongo command monitoring), by command "
            "and outcome (ok, failed).",
            ["command", "outcome"],
            buckets=STORE_BUCKETS,
            registry=self.registry,
        )
        self.store_answering = Gauge(
            f"{prefix}_store_answering",
            "1 while the store answers; 0 while a worker finds it not answering (the lowest of "
            "the workers').",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.store_answering.set(1)
        self.live_rescore = Histogram(
            f"{prefix}_live_rescore_duration_seconds",
            "Time to re-score one live user's list at request time (the reads it needs, the live "
            "model's scoring and the reasons), once per user and rev in a worker.",
            buckets=STORE_BUCKETS,
            registry=self.registry,
        )
        self.event_to_list = Histogram(
            f"{prefix}_live_event_to_list_seconds",
            "Time from a user's latest rating or feedback event to the first re-scored list that "
            "includes it (computed when the client next asks for the list; the web page asks at "
            "once).",
            buckets=EVENT_TO_LIST_BUCKETS,
            registry=self.registry,
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(max(0.0, seconds))

    def observe_rescore(self, seconds: float, since_event: float | None) -> None:
        self.live_rescore.observe(max(0.0, seconds))
        if since_event is not None:
            self.event_to_list.observe(max(0.0, since_event))

    def listener(self) -> monitoring.CommandListener:
        """A pymongo command listener that times every store command into ``store_calls``."""
        return _StoreCalls(self.store_calls)

    def render(self) -> bytes:
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)
        return generate_latest(registry)


class _StoreCalls(monitoring.CommandListener):
    def __init__(self, histogram: Histogram):
        self.histogram = histogram

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self.histogram.labels(event.command_name, "ok").observe(event.duration_micros / 1e6)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.histogram.labels(event.command_name, "failed").observe(event.duration_micros / 1e6)

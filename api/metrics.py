"""A tiny Prometheus registry: request counts and latency histograms per route template.

Counters live in the process that served the request: with gunicorn's N workers, each scrape of
``/metrics`` reads the worker that answered it (see API_Documentation.md).
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Upper bounds (seconds) of the latency histogram buckets.
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1


class Metrics:
    """Thread-safe counters and histograms, rendered in the Prometheus text format 0.0.4."""

    def __init__(self, prefix: str = "movietime", buckets: tuple[float, ...] = DEFAULT_BUCKETS):
        if list(buckets) != sorted(set(buckets)) or not buckets:
            raise ValueError("buckets must be increasing and unique")
        self.prefix = prefix
        self.buckets = tuple(float(b) for b in buckets)
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}
        self._latency: dict[tuple[str, str], _Histogram] = {}
        self._started = time.time()

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (route, method, str(status))
            self._requests[key] = self._requests.get(key, 0) + 1
            hist = self._latency.get((route, method))
            if hist is None:
                hist = self._latency[(route, method)] = _Histogram(self.buckets)
            hist.observe(max(0.0, seconds))

    def count(self, route: str, method: str, status: int) -> int:
        with self._lock:
            return self._requests.get((route, method, str(status)), 0)

    def render(self) -> str:
        p = self.prefix
        lines = [
            f"# HELP {p}_http_requests_total HTTP requests by route template, method and status.",
            f"# TYPE {p}_http_requests_total counter",
        ]
        with self._lock:
            requests = sorted(self._requests.items())
            latency = sorted((k, (list(h.counts), h.total, h.n)) for k, h in self._latency.items())
        for (route, method, status), value in requests:
            labels = _labels(route=route, method=method, status=status)
            lines.append(f"{p}_http_requests_total{labels} {value}")
        lines += [
            f"# HELP {p}_http_request_duration_seconds Time to answer a request, by route template.",
            f"# TYPE {p}_http_request_duration_seconds histogram",
        ]
        for (route, method), (counts, total, n) in latency:
            cumulative = 0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                cumulative += count
                labels = _labels(route=route, method=method, le=_float(bound))
                lines.append(f"{p}_http_request_duration_seconds_bucket{labels} {cumulative}")
            labels = _labels(route=route, method=method)
            lines.append(f"{p}_http_request_duration_seconds_sum{labels} {_float(total)}")
            lines.append(f"{p}_http_request_duration_seconds_count{labels} {n}")
        lines += [
            f"# HELP {p}_process_start_time_seconds Start time of this worker process (unix seconds).",
            f"# TYPE {p}_process_start_time_seconds gauge",
            f"{p}_process_start_time_seconds {_float(self._started)}",
        ]
        return "\n".join(lines) + "\n"


def _float(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"

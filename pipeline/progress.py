"""Step timing, and progress of long loops: a tqdm bar on a terminal, a log line otherwise."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator

log = logging.getLogger("pipeline")


class Steps:
    """Times named steps and logs a line when each starts and ends."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.phase = ""
        self._t0 = time.perf_counter()

    @contextlib.contextmanager
    def step(self, name: str):
        name = f"{self.phase}: {name}" if self.phase else name
        log.info("%s ...", name)
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - t, 3)
            log.info(
                "%s done in %.1f s (this process: %.2f GiB resident, %.2f GiB at most)",
                name,
                self.timings[name],
                _rss_gib(),
                _peak_rss_gib(),
            )

    def total(self) -> float:
        return round(time.perf_counter() - self._t0, 3)


def _rss_gib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**30


def _peak_rss_gib() -> float:
    """This process's peak resident set so far (``ru_maxrss``, KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class _LogProgress:
    """``tqdm``'s ``update`` as a log line at most every ``every_s`` seconds (and at the end),
    with the rate and the time left, for output that is not a terminal (CI, log files)."""

    def __init__(self, label: str, total: int, unit: str, every_s: float) -> None:
        self.label, self.total, self.unit, self.every_s = label, total, unit, every_s
        self.done = 0
        self._start = self._last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self.done >= self.total or now - self._last >= self.every_s:
            self._last = now
            rate = self.done / max(now - self._start, 1e-9)
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            log.info(
                "%s: %d/%d %s (%.0f%%), %.3g %s/s, %.0f s left",
                self.label,
                self.done,
                self.total,
                self.unit,
                100.0 * self.done / max(self.total, 1),
                rate,
                self.unit,
                left,
            )


@contextlib.contextmanager
def progress(label: str, total: int, unit: str = "it", every_s: float = 5.0) -> Iterator:
    """A progress counter with ``update(n)``: a tqdm bar (rate, time left) when stderr is a
    terminal, else a log line every ``every_s`` seconds."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(
            total=total, desc=label, unit=f" {unit}", unit_scale=True, dynamic_ncols=True
        ) as bar:
            yield bar
    else:
        yield _LogProgress(label, total, unit, every_s)

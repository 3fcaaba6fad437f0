"""Step timing and progress lines for long runs."""

from __future__ import annotations

import contextlib
import logging
import time

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
            log.info("%s done in %.1f s", name, self.timings[name])

    def total(self) -> float:
        return round(time.perf_counter() - self._t0, 3)


class Counter:
    """Logs ``label: done/total`` at most every ``every_s`` seconds (and at the end)."""

    def __init__(self, label: str, total: int, every_s: float = 5.0) -> None:
        self.label, self.total, self.every_s = label, total, every_s
        self.done = 0
        self._last = time.perf_counter()

    def add(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.done >= self.total or now - self._last >= self.every_s:
            self._last = now
            log.info("%s: %d/%d (%.0f%%)", self.label, self.done, self.total,
                     100.0 * self.done / max(self.total, 1))

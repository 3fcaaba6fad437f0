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


class _LogLines:
    """A file for tqdm that turns each refresh of its bar into one log line."""

    def write(self, text: str) -> None:
        text = text.strip("\r\n ")
        if text:
            log.info("%s", text)

    def flush(self) -> None:
        pass


#: The bar as one log line: no bar characters, the count, the rate and the time left.
_LOG_FORMAT = "{desc}: {n}/{total}{unit} ({percentage:.0f}%), {rate_fmt}, {remaining} left"


@contextlib.contextmanager
def progress(label: str, total: int, unit: str = "it", every_s: float = 5.0) -> Iterator:
    """A tqdm progress counter (``update(n)``): a bar with the rate and the time left when
    stderr is a terminal, else the same figures as a log line at most every ``every_s`` seconds
    and at the end, from ``every_s`` seconds on (a shorter loop logs nothing: the line of its
    step gives its time)."""
    from tqdm import tqdm

    if sys.stderr.isatty():
        options = dict(unit_scale=True, dynamic_ncols=True)
    else:
        options = dict(
            file=_LogLines(),
            mininterval=every_s,
            delay=every_s,
            bar_format=_LOG_FORMAT,
            unit_scale=True,
            position=0,  # a counter within another's: no cursor moves between the lines
        )
    with tqdm(total=total, desc=label, unit=f" {unit}", **options) as bar:
        yield bar

"""Whether the store answers, as one process's threads see it: a circuit breaker.

A store that is down refuses connections and fails fast; one that hangs (a paused process, a
stalled disk, a partition) keeps its sockets open, and every call waits out its deadline. So
the first store call of a request that times out or cannot connect marks the store "not
answering" for the whole process: from then on requests that need the store get their 503 at
once (or are answered from what the process holds in memory, see ``api.app``) instead of each
waiting its own deadline, and one daemon thread pings the store (at once, then every ``probe_s``
seconds) until it answers, which marks it answering again. No request waits for the probe.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from pymongo.errors import PyMongoError

from contract.errors import not_answering

__all__ = ["Availability", "not_answering"]

log = logging.getLogger("api.store")


class Availability:
    """The store's state for this process: answering, or not since ``down_since``.

    ``ping`` raises when the store does not answer within its own deadline. The probe thread is
    started in the process that saw the failure (never before a fork) and ends once a ping answers.
    """

    def __init__(
        self, ping: Callable[[], None], probe_s: float, clock: Callable[[], float] = time.monotonic
    ):
        self._ping = ping
        self._probe_s = probe_s
        self._clock = clock
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._prober: threading.Thread | None = None
        self._prober_pid: int | None = None
        # called with False when the store stops answering and True when it answers again
        self.on_change: Callable[[bool], None] | None = None

    @property
    def down(self) -> bool:
        return self._down_since is not None

    @property
    def down_for(self) -> float:
        """Seconds since the store stopped answering (0 while it answers)."""
        since = self._down_since
        return 0.0 if since is None else max(0.0, self._clock() - since)

    def failed(self, why: BaseException | str) -> None:
        """A store call did not answer: mark the store down (if it is not already) and probe it."""
        with self._lock:
            changed = self._down_since is None
            if changed:
                self._down_since = self._clock()
                log.warning(
                    "the store is not answering (%s): answering from memory or 503 until it does",
                    str(why)[:200],
                )
            pid = os.getpid()
            if self._prober is None or self._prober_pid != pid or not self._prober.is_alive():
                self._prober = threading.Thread(target=self._probe, name="store-probe", daemon=True)
                self._prober_pid = pid
                self._prober.start()
        if changed and self.on_change is not None:
            self.on_change(False)

    def _probe(self) -> None:
        while True:
            try:
                self._ping()  # at once: a store that was only slow for a moment is back within a ping
            except PyMongoError:
                time.sleep(self._probe_s)
                continue
            except Exception:  # a bug in the ping: keep probing, but say so
                log.exception("store probe failed")
                time.sleep(self._probe_s)
                continue
            with self._lock:
                since, self._down_since = self._down_since, None
                self._prober = None
            if since is not None:
                log.warning("the store answers again after %.1f s", self._clock() - since)
                if self.on_change is not None:
                    self.on_change(True)
            return

"""The Dask cluster the pipeline runs on: a local cluster by default, or an existing one."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import distributed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DaskConfig:
    # "tcp://host:8786" of an existing cluster; None starts a LocalCluster
    scheduler: str | None = None
    # LocalCluster only. Each worker process gets its own copy of the fitted models without any
    # user's data for the per-user phase (the two top-N weight matrices: dense below 2M ratings,
    # 2,000 and 500 per movie above); one process with two threads holds one copy but was no faster
    # here (README, "Time and memory by size").
    n_workers: int = 2
    threads_per_worker: int = 1
    # per LocalCluster worker (Dask pauses it at 80%, restarts it at 95%)
    memory_limit: str = "8GiB"
    dashboard: bool = False  # LocalCluster only: serve the diagnostics dashboard on :8787


@contextlib.contextmanager
def dask_client(config: DaskConfig) -> Iterator["distributed.Client"]:
    """Yield a ``distributed.Client`` that is the default scheduler for every Dask call inside.

    With ``config.scheduler`` the client connects to that cluster; the input files must be at
    the same paths on every worker (a shared file system), as for any Dask deployment.
    """
    from distributed import Client, LocalCluster

    if config.scheduler:
        log.info("connecting to Dask scheduler %s", config.scheduler)
        with Client(config.scheduler, timeout="30s") as client:
            yield client
        return
    cluster = LocalCluster(
        n_workers=config.n_workers,
        threads_per_worker=config.threads_per_worker,
        processes=True,
        memory_limit=config.memory_limit,
        dashboard_address=":8787" if config.dashboard else None,
        host="127.0.0.1",
    )
    try:
        with Client(cluster) as client:
            log.info(
                "local Dask cluster: %d workers at %s", config.n_workers, cluster.scheduler_address
            )
            yield client
    finally:
        cluster.close()


def release_memory() -> None:
    """Collect garbage and hand the freed heap back to the system (glibc ``malloc_trim``), so
    that what one step freed does not stay in this process's RSS while the workers hold the
    next step's data (Dask does the same for its workers). A no-op where there is no glibc."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).malloc_trim(0)


def current_client():
    """The active ``distributed`` client (the one ``dask_client`` opened, or any default one),
    or None when there is none: then callers do their work in this process."""
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def to_cluster(client, obj):
    """A future of ``obj`` held by one worker of ``client``'s cluster; the other workers fetch it
    from that one when a task of theirs needs it (Dask moves a task's inputs between workers).
    Sending holds a transient copy of what is sent on both ends, and a broadcast scatter sends to
    every worker at once: that moment was the large runs' peak of memory (README, "Time and memory
    by size")."""
    # without broadcast, the scheduler sends it to one worker (waiting for one if none has joined)
    return client.scatter(obj, hash=False)


def map_blocks(
    client, func, shared, blocks: Iterable[tuple], name: str, per_thread: int = 2
) -> Iterator:
    """Run ``func(shared, *block)`` as a Dask task for each of ``blocks`` and yield the results
    as the tasks finish (in any order).

    ``shared`` is what every task needs (a fitted model): it goes to the cluster once
    (:func:`to_cluster`), or it is a future of what the caller has sent already. At most
    ``per_thread`` blocks per worker thread are in flight, and ``blocks`` is read only as tasks
    are submitted, so a lazy iterable keeps neither the driver nor the scheduler holding every
    block. When a task fails, or the caller stops early, the tasks not yet done are cancelled
    (Dask cannot stop one that is already running).
    """
    from distributed import Future, as_completed

    pending = iter(blocks)
    data = shared if isinstance(shared, Future) else to_cluster(client, shared)
    running, live = as_completed(), set()

    def submit_next() -> None:
        block = next(pending, None)
        if block is not None:
            future = client.submit(
                func,
                data,  # noqa: F821 (deleted once every block is submitted)
                *block,
                pure=False,
                key=f"{name}-{os.getpid()}-{time.monotonic_ns()}",
            )
            live.add(future)
            running.add(future)

    for _ in range(per_thread * max(sum(client.nthreads().values()), 1)):
        submit_next()
    try:
        for future in running:
            result = future.result()
            live.discard(future)
            submit_next()  # keep the window full while the caller handles this result
            yield result
    finally:
        if live:
            client.cancel(list(live))
        del data

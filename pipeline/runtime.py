"""The Dask cluster the pipeline runs on: a local cluster by default, or an existing one."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Iterator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DaskConfig:
    scheduler: str | None = None        # "tcp://host:8786" of an existing cluster; None starts a LocalCluster
    n_workers: int = 2                  # LocalCluster only
    threads_per_worker: int = 1         # LocalCluster only
    memory_limit: str = "4GiB"          # per LocalCluster worker
    dashboard: bool = False             # LocalCluster only: serve the diagnostics dashboard on :8787


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
            log.info("local Dask cluster: %d workers at %s", config.n_workers, cluster.scheduler_address)
            yield client
    finally:
        cluster.close()

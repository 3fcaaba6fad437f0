"""Shared test fixtures: a real MongoDB wire-protocol server, never a fake.

* ``mongo_url`` (session): ``MONGODB_URL`` when set (a real mongod, replica set or Atlas),
  else a throwaway SecantusDB server started on a free loopback port.
* ``mongo_client`` (session): one pymongo client for that server.
* ``sample_run`` (session): the pipeline run once on a sample of the bundled data into a template
  database; modules take a copy with ``tests.support.pipeline_sample.sample_database``.
* ``db`` (function): a fresh, uniquely named database, dropped after the test.
* ``secantus_server`` (function): a factory for extra, dedicated SecantusDB servers (e.g. with
  ``sync_on_commit=True`` for durability tests, or to kill a server); stopped at teardown.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pymongo
import pytest

from tests.support.secantus import SecantusServer, start_secantus


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory):
    url = os.environ.get("MONGODB_URL", "").strip()
    if url:
        yield url
        return
    server = start_secantus(tmp_path_factory.mktemp("mongo") / "data")
    try:
        yield server.url
    finally:
        server.kill()  # SIGKILL: throwaway data, no need for a clean checkpoint


@pytest.fixture(scope="session")
def mongo_client(mongo_url: str):
    client = pymongo.MongoClient(mongo_url, serverSelectionTimeoutMS=10_000)
    yield client
    client.close()


@pytest.fixture(scope="session")
def dask_cluster():
    """A real ``distributed.LocalCluster`` of two single-threaded worker processes (loopback);
    tests reach it by its address, as the pipeline reaches a remote one with --scheduler."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def sample_run(mongo_client: pymongo.MongoClient, tmp_path_factory: pytest.TempPathFactory):
    from tests.support.pipeline_sample import load_sample

    db = mongo_client.get_database(f"template_{uuid.uuid4().hex[:8]}")
    yield load_sample(db, tmp_path_factory.mktemp("sample-run"))
    mongo_client.drop_database(db.name)


@pytest.fixture
def db(mongo_client: pymongo.MongoClient):
    name = f"test_{uuid.uuid4().hex[:12]}"
    database = mongo_client.get_database(name)
    yield database
    mongo_client.drop_database(name)


@pytest.fixture
def secantus_server(tmp_path: Path):
    """Factory: ``secantus_server(sync_on_commit=False, storage_path=None) -> SecantusServer``."""
    started: list[SecantusServer] = []

    def start(*, sync_on_commit: bool = False, storage_path: Path | None = None) -> SecantusServer:
        path = storage_path or tmp_path / f"mongo{len(started)}"
        server = start_secantus(path, sync_on_commit=sync_on_commit)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()

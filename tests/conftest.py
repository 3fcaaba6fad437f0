"""Shared test fixtures: a real MongoDB wire-protocol server, never a fake.

* ``mongo_url`` (session): ``MONGODB_URL`` when set (a real mongod, replica set or Atlas),
  else a throwaway SecantusDB server started on a free loopback port.
* ``mongo_client`` (session): one pymongo client for that server.
* ``db`` (function): a fresh, uniquely named database, dropped after the test.
* ``secantus_server`` (function): a factory for extra, dedicated SecantusDB servers (e.g. with
  ``sync_on_commit=True`` for durability tests, or to kill a server); stopped at teardown.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pymongo
import pytest
from pymongo.errors import PyMongoError

SECANTUS = Path(sys.executable).parent / "secantusd-py"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_ping(url: str, proc: subprocess.Popen | None = None, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        client = pymongo.MongoClient(url, serverSelectionTimeoutMS=300, connectTimeoutMS=300)
        try:
            client.admin.command("ping")
            return
        except PyMongoError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {proc.returncode} before answering ping"
                ) from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"no ping from {url} within {timeout_s} s") from None
            time.sleep(0.1)
        finally:
            client.close()


@dataclass
class SecantusServer:
    """A SecantusDB process started by the fixtures (loopback only)."""

    url: str
    port: int
    storage_path: Path
    process: subprocess.Popen
    log_path: Path

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def start_secantus(storage_path: Path, *, sync_on_commit: bool = False) -> SecantusServer:
    """Start ``secantusd-py`` on a free loopback port with ``storage_path``; wait for ping."""
    storage_path.mkdir(parents=True, exist_ok=True)
    settings = storage_path.parent / f"{storage_path.name}.toml"
    settings.write_text("# test server: settings come from flags\n")  # no config discovery
    log_path = storage_path.parent / f"{storage_path.name}.log"
    last: Exception | None = None
    for _ in range(3):  # the free port can be taken between the probe and the bind
        port = free_port()
        argv = [str(SECANTUS), "--host", "127.0.0.1", "--port", str(port),
                "--storage-path", str(storage_path), "--cache-size", "256M",
                "--config", str(settings)]  # fmt: skip
        if sync_on_commit:
            argv.append("--sync-on-commit")
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        url = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        try:
            wait_for_ping(url, proc)
            return SecantusServer(url, port, storage_path, proc, log_path)
        except (RuntimeError, TimeoutError) as exc:
            last = exc
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    raise RuntimeError(f"could not start SecantusDB (log {log_path}): {last}")


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

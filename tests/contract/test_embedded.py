"""The embedded SecantusDB default: start, reuse, survive stop/start, stop, loopback only."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pymongo
import pytest

from contract.embedded import EmbeddedConfig, ensure_running, resolve_url, stop
from tests.support.paths import REPO


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _state(config: EmbeddedConfig) -> dict:
    return json.loads(config.state_file().read_text())


def _listen_ips(pid: int) -> set[str]:
    conns = psutil.Process(pid).net_connections(kind="inet")
    return {c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN}


@pytest.fixture
def config(tmp_path: Path):
    cfg = EmbeddedConfig(storage_path=str(tmp_path / "var" / "mongo"), port=_free_port())
    yield cfg
    stop(cfg)  # never leave a detached server behind


def test_start_reuse_survive_restart_and_stop(config: EmbeddedConfig):
    # Started by a command that then exits, as `python -m pipeline run` does.
    code = (
        "import sys; from contract.embedded import EmbeddedConfig, ensure_running; "
        f"print(ensure_running(EmbeddedConfig(storage_path={config.storage_path!r}, "
        f"port={config.port})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    url = out.stdout.strip().splitlines()[-1]
    assert url == f"mongodb://127.0.0.1:{config.port}/movietime?directConnection=true"

    state = _state(config)
    pid = state["pid"]
    assert psutil.pid_exists(pid)  # outlived the command that started it
    assert os.getsid(pid) != os.getsid(0)  # detached: its own session
    assert _listen_ips(pid) == {"127.0.0.1"}  # loopback only
    assert "--sync-on-commit" in psutil.Process(pid).cmdline()
    assert config.log_file().exists()

    # Reused, not started twice; also when the state file was lost.
    assert resolve_url({}, config) == (url, True)
    config.state_file().unlink()
    assert ensure_running(config) == url
    assert _state(config)["pid"] == pid

    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=5000)
    client.get_default_database().things.insert_one({"_id": 1, "kept": True})
    client.close()

    assert stop(config) is True
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not config.state_file().exists()
    assert stop(config) is False

    # The preferred port is now held by something else: another port is used, data survives.
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # old conns in TIME_WAIT
        blocker.bind(("127.0.0.1", config.port))
        blocker.listen()
        url2 = ensure_running(config)
    assert url2 != url
    assert _state(config)["pid"] != pid
    client = pymongo.MongoClient(url2, serverSelectionTimeoutMS=5000)
    assert client.get_default_database().things.find_one({"_id": 1}) == {"_id": 1, "kept": True}
    client.close()


def test_resolve_url_prefers_mongodb_url(config: EmbeddedConfig):
    url = "mongodb://db.example:27017/movietime"
    assert resolve_url({"MONGODB_URL": url}, config) == (url, False)
    assert not config.storage().exists()  # nothing was started


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])
def test_refuses_non_loopback_hosts(tmp_path: Path, host: str):
    with pytest.raises(ValueError, match="loopback"):
        ensure_running(EmbeddedConfig(storage_path=str(tmp_path / "m"), host=host))
    assert not (tmp_path / "m").exists()


def test_startup_failure_names_the_log(config: EmbeddedConfig):
    broken = EmbeddedConfig(
        storage_path=config.storage_path, port=config.port, cache_size="not-a-size"
    )
    with pytest.raises((RuntimeError, TimeoutError)) as info:
        ensure_running(broken)
    assert str(broken.log_file()) in str(info.value)
    assert not broken.state_file().exists()

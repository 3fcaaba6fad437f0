"""The embedded default store: a local SecantusDB server, used when MONGODB_URL is not set.

SecantusDB speaks the MongoDB wire protocol and stores data with WiredTiger. It is GPL
software, so it always runs as its own process (``secantusd-py`` from the same environment as
this interpreter) and the pipeline talks to it over the wire like to any mongod.

The server is started detached (its own session, output to ``<storage>.log``) so it outlives
the pipeline command: the API started afterwards reads from it. ``<storage>.json`` records its
pid/port/url, so later commands reuse it instead of starting a second one.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import pymongo
from pymongo.errors import PyMongoError

SERVER_BINARY = "secantusd-py"


@dataclass(frozen=True)
class EmbeddedConfig:
    storage_path: str = "var/mongo"  # durable WiredTiger files, relative to the working directory
    host: str = "127.0.0.1"  # loopback only, always
    port: int = 27018  # preferred; another free port is used if something else holds it
    cache_size: str = "256M"  # WiredTiger cache
    database: str = "movietime"
    start_timeout_s: float = 30.0  # wait this long for the first ping
    stop_timeout_s: float = 30.0  # wait this long after SIGTERM before SIGKILL

    def storage(self) -> Path:
        return Path(self.storage_path).expanduser().resolve()

    def state_file(self) -> Path:
        """``var/mongo.json``: pid, port and URL of the running server."""
        return _sibling(self.storage(), ".json")

    def log_file(self) -> Path:
        """``var/mongo.log``: the server's stdout and stderr."""
        return _sibling(self.storage(), ".log")


def _sibling(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def server_url(host: str, port: int, database: str) -> str:
    return f"mongodb://{host}:{port}/{database}?directConnection=true"


def resolve_url(env: Mapping[str, str], config: EmbeddedConfig) -> tuple[str, bool]:
    """``(url, embedded)``: ``MONGODB_URL`` when set (not embedded), else the embedded server."""
    url = env.get("MONGODB_URL", "").strip()
    if url:
        return url, False
    return ensure_running(config), True


def ensure_running(config: EmbeddedConfig) -> str:
    """Return the URL of a healthy server for ``config.storage_path``, starting one if needed."""
    _check_loopback(config.host)
    storage = config.storage()
    storage.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(_sibling(storage, ".lock")):
        state = _read_state(config)
        if state is not None:
            proc = _server_process(state.get("pid"), storage, state.get("create_time"))
            if proc is not None and _wait_ping(state["url"], proc, config.start_timeout_s):
                return state["url"]
            if proc is not None:  # alive but not answering: do not start a second server on it
                raise RuntimeError(
                    f"SecantusDB pid {proc.pid} for {storage} does not answer ping at "
                    f"{state['url']}; see {config.log_file()} or run stop() first"
                )
            config.state_file().unlink(missing_ok=True)
        adopted = _adopt_running(config)
        if adopted is not None:
            return adopted
        return _start(config)


def stop(config: EmbeddedConfig) -> bool:
    """Stop the server started for ``config.storage_path``; False if none was running."""
    storage = config.storage()
    if not storage.parent.exists():
        return False
    with _file_lock(_sibling(storage, ".lock")):
        state = _read_state(config)
        proc = None
        if state is not None:
            proc = _server_process(state.get("pid"), storage, state.get("create_time"))
        if proc is None:
            proc = _find_server_process(storage)
        config.state_file().unlink(missing_ok=True)
        if proc is None:
            return False
        try:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(config.stop_timeout_s)
            except psutil.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        except psutil.NoSuchProcess:
            pass
        return True


# --- internals -------------------------------------------------------------------------------


def _check_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"the embedded server only listens on loopback, not on {host!r}")


def _binary() -> str:
    beside = Path(sys.executable).parent / SERVER_BINARY
    if beside.exists():
        return str(beside)
    found = shutil.which(SERVER_BINARY)
    if found:
        return found
    raise FileNotFoundError(
        f"{SERVER_BINARY} not found next to {sys.executable} nor on PATH; "
        "install SecantusDB (see requirements.txt) or set MONGODB_URL"
    )


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise start/stop between processes sharing one storage path."""
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_state(config: EmbeddedConfig) -> dict | None:
    try:
        state = json.loads(config.state_file().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return state if isinstance(state, dict) and "pid" in state and "url" in state else None


def _write_state(config: EmbeddedConfig, state: dict) -> None:
    target = config.state_file()
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, target)


def _is_our_server(proc: psutil.Process, storage: Path) -> bool:
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmd = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    if not any(Path(part).name == SERVER_BINARY for part in cmd[:2]):
        return False
    try:
        return cmd[cmd.index("--storage-path") + 1] == str(storage)
    except (ValueError, IndexError):
        return False


def _server_process(pid, storage: Path, create_time=None) -> psutil.Process | None:
    """The process ``pid`` if it is still our server for ``storage`` (not a recycled pid)."""
    if not isinstance(pid, int):
        return None
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - float(create_time)) > 1.0:
            return None
    except psutil.NoSuchProcess:
        return None
    return proc if _is_our_server(proc, storage) else None


def _find_server_process(storage: Path) -> psutil.Process | None:
    """A running server for ``storage`` whose state file was lost."""
    for proc in psutil.process_iter(["pid"]):
        if _is_our_server(proc, storage):
            return proc
    return None


def _listening_port(proc: psutil.Process, host: str) -> int | None:
    try:
        conns = proc.net_connections(kind="inet")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.ip == host:
            return int(conn.laddr.port)
    return None


def _adopt_running(config: EmbeddedConfig) -> str | None:
    proc = _find_server_process(config.storage())
    if proc is None:
        return None
    port = _listening_port(proc, config.host)
    if port is None:
        return None
    url = server_url(config.host, port, config.database)
    if not _wait_ping(url, proc, config.start_timeout_s):
        return None
    _write_state(config, _state(config, proc, port, url))
    return url


def _state(config: EmbeddedConfig, proc: psutil.Process, port: int, url: str) -> dict:
    return {
        "pid": proc.pid,
        "create_time": proc.create_time(),
        "host": config.host,
        "port": port,
        "url": url,
        "storage_path": str(config.storage()),
        "log": str(config.log_file()),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as the server does: a port whose old connections are in TIME_WAIT is free
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _ping(url: str) -> bool:
    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=300, connectTimeoutMS=300)
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def _wait_ping(url: str, proc: psutil.Process | subprocess.Popen, timeout_s: float) -> bool:
    """Ping until it answers (True) or the process exits / the time is up (False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if _ping(url):
            return True
        if isinstance(proc, subprocess.Popen):
            alive = proc.poll() is None
        else:
            try:
                alive = proc.status() != psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                alive = False
        if not alive or time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _start(config: EmbeddedConfig) -> str:
    storage = config.storage()
    storage.mkdir(parents=True, exist_ok=True)
    log_path = config.log_file()
    # An explicit (empty) config file turns off SecantusDB's discovery of ./secantusd.toml,
    # ~/.secantus/ and /etc/secantus/: every setting comes from the flags below.
    settings = _sibling(storage, ".toml")
    settings.write_text("# Movie Time embedded SecantusDB: settings are passed as flags.\n")
    binary = _binary()
    last_error = ""
    for attempt in range(3):
        port = config.port if attempt == 0 and _port_free(config.host, config.port) else 0
        port = port or _free_port(config.host)
        argv = [
            binary,
            "--host", config.host,
            "--port", str(port),
            "--storage-path", str(storage),
            "--cache-size", config.cache_size,
            "--sync-on-commit",
            "--config", str(settings),
        ]  # fmt: skip
        with open(log_path, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {argv}\n".encode())
            log.flush()
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(storage.parent),
                start_new_session=True,  # survives the pipeline command and its Ctrl-C
                close_fds=True,
            )
        url = server_url(config.host, port, config.database)
        if _wait_ping(url, popen, config.start_timeout_s):
            _write_state(config, _state(config, psutil.Process(popen.pid), port, url))
            return url
        if popen.poll() is None:  # running but silent: give up, do not leave it behind
            popen.kill()
            popen.wait()
            raise TimeoutError(
                f"SecantusDB did not answer ping at {url} within {config.start_timeout_s:.0f} s; "
                f"log: {log_path}\n{_log_tail(log_path)}"
            )
        last_error = _log_tail(log_path)
        if "address" not in last_error.lower() or "in use" not in last_error.lower():
            break  # not a port race: retrying will not help
    raise RuntimeError(f"SecantusDB exited during startup; log: {log_path}\n{last_error}")

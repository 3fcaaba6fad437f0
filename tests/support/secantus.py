"""Throwaway SecantusDB servers (the real MongoDB wire protocol) for the tests, and free ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pymongo
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


def restart(server: SecantusServer, timeout_s: float = 30.0) -> subprocess.Popen:
    """Start a killed server again with the same command line: same storage path and port."""
    proc = subprocess.Popen(
        server.process.args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_ping(server.url, proc, timeout_s)
    except (RuntimeError, TimeoutError):
        if proc.poll() is None:
            proc.kill()
        raise RuntimeError("the restarted server did not answer ping") from None
    return proc

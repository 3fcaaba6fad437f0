"""gunicorn serving the real app for HTTP tests: started as its own process group on a free port,
ready once ``/health`` answers 200, stopped with its workers."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.support.paths import REPO
from tests.support.secantus import free_port

GUNICORN_CONF = str(REPO / "api" / "gunicorn_conf.py")


def gunicorn(
    flags: list[str], env: Mapping[str, str], log_path: Path, app: str = "api.wsgi:create()"
):
    """``gunicorn --bind 127.0.0.1:<free port> <flags> <app>`` with ``env`` over the environment;
    a context manager yielding the port."""
    port = free_port()
    argv = [
        str(Path(sys.executable).parent / "gunicorn"),
        "--bind",
        f"127.0.0.1:{port}",
        *flags,
        app,
    ]
    return serve(argv, port, env, log_path)


@contextlib.contextmanager
def serve(
    argv: list[str], port: int, env: Mapping[str, str], log_path: Path, timeout_s: float = 30.0
) -> Iterator[int]:
    """Run ``argv`` (a server that will listen on ``port``) until the block ends; yields the port
    once ``/health`` answers 200."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout_s
        while not _healthy(port):
            assert proc.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, (
                f"the server did not answer /health within {timeout_s:.0f} s"
            )
            time.sleep(0.2)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _healthy(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()

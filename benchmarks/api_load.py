"""Load test of ``GET /user/<id>/recommendation``: the real API (``api.wsgi:create()``) against the
seed project's design (``benchmarks.seed_design``), both served by gunicorn, in one run.

    python -m benchmarks.api_load [--clients 16] [--seconds 20] [--workers 2]
    python -m benchmarks.api_load --mongodb-url "mongodb://127.0.0.1:27018/movietime?directConnection=true"
    python -m benchmarks.api_load --no-seed-design --sweep sync:2,gthread:2x2,gthread:2x4,gthread:2x8

Steps:

1. The store: a fresh SecantusDB server on a free loopback port (durable, as the embedded default),
   loaded by the real pipeline (``python -m pipeline -q run --no-evaluate``) with the bundled
   ml-latest-small; or ``--mongodb-url``, already loaded. The seed design's rating model is fitted
   once (``python -m benchmarks.seed_design fit``).
2. Each design is served by gunicorn on a free loopback port, with the same worker set-up
   (default gthread, 2 workers x 2 threads: the fastest measured here; ``--sweep`` compares others).
3. Load: ``--clients`` keep-alive connections over ``--client-procs`` processes (a small raw-socket
   HTTP/1.1 client, cheaper than ``http.client``), each asking for random users (seeded). Closed loop
   (next request when the answer is in: the most a design serves at that concurrency) for both
   designs; and for the API also open loop at ``--rate`` requests/s (latency measured from when each
   request was due, so queueing counts). Before each run of the API, every served user is asked for
   once on each of 16 connections, unmeasured, so that the workers' caches are warm (a server's
   steady state; the seed design caches nothing per user). The first ``--warmup`` seconds are not
   counted either; a run stops after ``--seconds`` or ``--max-requests`` answers. Every answer is checked (200, JSON, the user
   asked for, 1..n recommendations); anything else is an error.
4. psutil reads the CPU seconds of the load generator, gunicorn (master + workers), the store server
   and everything else on the machine over the measured window: how the cores were shared.
5. ``--profile N``: N requests of each design called in-process, one at a time, timed and profiled
   (cProfile), to show where a request's time goes without HTTP or concurrency.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import queue as queue_mod
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import psutil

from benchmarks._util import (
    REPO,
    bench_env,
    bench_store,
    run_threads,
    timed_step,
)

API_APP = "api.wsgi:create()"
SEED_APP = "benchmarks.seed_design:create()"


# --- configuration -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerConfig:
    """How gunicorn serves one design: ``worker_class`` sync or gthread (``threads`` per worker)."""

    app: str = API_APP
    workers: int = 2
    worker_class: str = "gthread"
    threads: int = 2
    config_file: str | None = None  # gunicorn --config (flags given here override it)
    env: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        if self.worker_class == "gthread":
            return f"gthread {self.workers}x{self.threads}"
        return f"{self.worker_class} {self.workers}"


@dataclass(frozen=True)
class LoadConfig:
    """``clients`` keep-alive connections over ``procs`` processes; closed loop (each sends its
    next request when the previous answer arrived) or, with ``rate`` > 0, open loop. Stops after
    ``warmup_s + seconds``, or once ``max_requests`` answers were counted after the warm-up."""

    clients: int = 16
    procs: int = 4
    seconds: float = 20.0
    warmup_s: float = 2.0
    max_requests: int = 1_000_000
    rate: float = 0.0  # requests/s offered in all (open loop); 0: closed loop, as fast as answered
    n: int = 10
    seed: int = 0
    timeout_s: float = 30.0


@dataclass
class ClientResult:
    latencies_ns: array = field(default_factory=lambda: array("q"))
    errors: int = 0
    error_samples: list = field(default_factory=list)
    connects: int = 0
    sent: int = 0
    last_ns: int = 0  # completion time of the last counted answer
    exhausted: bool = False  # stopped because its request quota ran out, before the window ended


@dataclass
class RunResult:
    design: str
    server: str
    load: str
    seconds: float
    latencies_ms: np.ndarray
    errors: int
    error_samples: list
    connects: int
    cpu_s: dict  # component -> CPU seconds within the measured window

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.requests else float("nan")


# --- the HTTP client -----------------------------------------------------------------------------


class HTTPConnection:
    """A minimal HTTP/1.1 keep-alive client for GET on one socket (reconnects when the server
    closes). Far cheaper per request than ``http.client``, whose header parsing goes through
    ``email.parser``: the load generator shares the 2 cores with the servers it measures."""

    def __init__(self, host: str, port: int, timeout: float):
        self.address, self.timeout = (host, port), timeout
        self.sock: socket.socket | None = None
        self.buf = b""
        self.connects = 0

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buf = None, b""

    def _connect(self) -> None:
        self.sock = socket.create_connection(self.address, timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.connects += 1

    def _fill(self) -> None:
        chunk = self.sock.recv(262144)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def _read_until(self, marker: bytes) -> bytes:
        while (pos := self.buf.find(marker)) < 0:
            self._fill()
        out, self.buf = self.buf[:pos], self.buf[pos + len(marker) :]
        return out

    def _read_exact(self, size: int) -> bytes:
        while len(self.buf) < size:
            self._fill()
        out, self.buf = self.buf[:size], self.buf[size:]
        return out

    def get(self, request: bytes) -> tuple[int, bytes]:
        """Send one request (complete bytes); return (status, body)."""
        if self.sock is None:
            self._connect()
        try:
            self.sock.sendall(request)
            head = self._read_until(b"\r\n\r\n")
        except (ConnectionError, BrokenPipeError):
            # a kept-alive connection the server had already closed: one fresh attempt
            self.close()
            self._connect()
            self.sock.sendall(request)
            head = self._read_until(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"content-length" in headers:
            body = self._read_exact(int(headers[b"content-length"]))
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            parts = []
            while size := int(self._read_until(b"\r\n").split(b";")[0], 16):
                parts.append(self._read_exact(size))
                self._read_exact(2)
            self._read_until(b"\r\n")
            body = b"".join(parts)
        else:  # delimited by close
            with contextlib.suppress(ConnectionError):
                while True:
                    self._fill()
            body, self.buf = self.buf, b""
            self.close()
        if headers.get(b"connection", b"").lower() == b"close" and self.sock is not None:
            self.close()
        return status, body


def check_answer(status: int, body: bytes, user_id: int, n: int) -> str | None:
    """None for a correct answer, else what is wrong with it."""
    if status != 200:
        return f"HTTP {status}: {body[:120]!r}"
    try:
        doc = json.loads(body)
    except ValueError:
        return f"not JSON: {body[:120]!r}"
    recs = doc.get("recommendations") if isinstance(doc, dict) else None
    if doc.get("userId") != user_id or not isinstance(recs, list) or not 1 <= len(recs) <= n:
        return f"bad answer for user {user_id}: {body[:160]!r}"
    return None


@dataclass(frozen=True)
class Window:
    """``time.perf_counter()`` instants (CLOCK_MONOTONIC: the same in every process on Linux):
    clients start sending at ``begin_at``; answers completed in [start_at, stop_at) count."""

    begin_at: float
    start_at: float
    stop_at: float


def _client_thread(
    host, port, user_ids, cfg: LoadConfig, index: int, window: Window, quota: int, out: ClientResult
) -> None:
    """One connection. Closed loop (``cfg.rate`` 0): the next request as soon as the answer is in.
    Open loop: requests are due every ``clients / rate`` seconds (clients staggered); latency runs
    from when a request was due, so a slow answer also counts against the requests queued behind
    it (no coordinated omission)."""
    rnd = random.Random(f"{cfg.seed}/{index}")
    ids = [int(u) for u in user_ids]
    conn = HTTPConnection(host, port, cfg.timeout_s)
    clock = time.perf_counter_ns
    lat = out.latencies_ns
    begin_ns, start_ns, stop_ns = (
        int(t * 1e9) for t in (window.begin_at, window.start_at, window.stop_at)
    )
    interval = int(1e9 * cfg.clients / cfg.rate) if cfg.rate > 0 else 0
    due = begin_ns + (int(index * 1e9 / cfg.rate) if cfg.rate > 0 else 0)
    time.sleep(max(0.0, (due - clock()) / 1e9))
    counted = 0
    try:
        while True:
            if counted >= quota:
                out.exhausted = True
                break
            uid = ids[rnd.randrange(len(ids))]
            request = f"GET /user/{uid}/recommendation?n={cfg.n} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
            if interval:
                now = clock()
                if due > now:
                    time.sleep((due - now) / 1e9)
                t0 = due
                due += interval
            else:
                t0 = clock()
            if t0 >= stop_ns:
                break
            out.sent += 1
            try:
                status, body = conn.get(request)
                problem = check_answer(status, body, uid, cfg.n)
            except (OSError, ValueError, IndexError) as exc:
                conn.close()
                problem = f"{type(exc).__name__}: {exc}"
            t1 = clock()
            if start_ns <= t1 < stop_ns:
                out.last_ns = t1
                counted += 1
                if problem is None:
                    lat.append(t1 - t0)
                else:
                    out.errors += 1
                    if len(out.error_samples) < 3:
                        out.error_samples.append(problem)
    finally:
        out.connects = conn.connects
        conn.close()


def client_process(
    host: str,
    port: int,
    user_ids: np.ndarray,
    cfg: LoadConfig,
    first_client: int,
    n_clients: int,
    window: Window,
    quota: int,
    queue,
) -> None:
    """One load-generator process: ``n_clients`` threads, one keep-alive connection each.
    Puts its merged ClientResult (latencies as bytes) on ``queue``."""
    results = [ClientResult() for _ in range(n_clients)]
    run_client_threads(
        _client_thread,
        [
            (host, port, user_ids, cfg, first_client + i, window, quota, results[i])
            for i in range(n_clients)
        ],
        window,
    )
    merged = ClientResult()
    for r in results:
        merged.latencies_ns.extend(r.latencies_ns)
        merged.errors += r.errors
        merged.error_samples += r.error_samples[: 3 - len(merged.error_samples)]
        merged.connects += r.connects
        merged.sent += r.sent
        merged.last_ns = max(merged.last_ns, r.last_ns)
        merged.exhausted = merged.exhausted or r.exhausted
    queue.put(
        (
            merged.latencies_ns.tobytes(),
            merged.errors,
            merged.error_samples,
            merged.connects,
            merged.sent,
            merged.last_ns,
            merged.exhausted,
        )
    )


def run_client_threads(target: Callable[..., None], args: list[tuple], window: Window) -> None:
    """A load-generator process's clients, a thread each; then stays alive until the window closes,
    so the parent's CPU reading at its end includes this process."""
    run_threads(target, args)
    time.sleep(max(0.0, window.stop_at + 0.2 - time.perf_counter()))


# --- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_cpu(pids) -> float:
    """CPU seconds (user + system) of the processes ``pids`` and all their descendants."""
    total, seen = 0.0, set()
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root] + root.children(recursive=True)
        except psutil.Error:
            continue
        for p in procs:
            if p.pid in seen:
                continue
            seen.add(p.pid)
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
    return total


def _get(host: str, port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = HTTPConnection(host, port, timeout)
    try:
        return conn.get(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        )
    finally:
        conn.close()


@contextlib.contextmanager
def gunicorn(
    server: ServerConfig, mongodb_url: str, probe_path: str, log_path: Path, ready_s: float = 120.0
):
    """Serve ``server.app`` with gunicorn on a free loopback port; yields (port, process) once
    ``probe_path`` answers 200."""
    port = free_port()
    argv = [
        str(Path(sys.executable).parent / "gunicorn"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(server.workers),
        "--worker-class",
        server.worker_class,
        "--log-level",
        "warning",
        "--timeout",
        "120",
        "--graceful-timeout",
        "5",
    ]
    if server.worker_class == "gthread":
        argv += ["--threads", str(server.threads)]
    if server.config_file:
        argv += ["--config", server.config_file]
    argv.append(server.app)
    env = {
        **bench_env(),
        "MONGODB_URL": mongodb_url,
        # one thread per worker for numpy/OpenMP: the workers are the parallelism
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        # this run's own live index (api.store.live_index), not the host's shared one
        "API_LIVE_INDEX_DIR": str(log_path.parent / f"live-index-{port}"),
        **dict(server.env),
    }
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + ready_s
        while True:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
                raise RuntimeError(
                    f"gunicorn ({server.app}) exited with {proc.returncode}:\n" + "\n".join(tail)
                )
            with contextlib.suppress(OSError, ValueError, IndexError):
                if _get("127.0.0.1", port, probe_path)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"gunicorn ({server.app}) did not answer {probe_path}; see {log_path}"
                )
            time.sleep(0.2)
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def spawn_clients(
    ctx, target: Callable, clients: int, procs: int, args: Callable[[int, int], tuple]
) -> list:
    """Start ``target`` in ``procs`` processes (at most one per client) sharing ``clients``
    connections; ``args(first, k)`` gives the arguments of the process with clients first..first+k-1."""
    n = max(1, min(procs, clients))
    started, first = [], 0
    for k in (clients // n + (i < clients % n) for i in range(n)):
        p = ctx.Process(target=target, daemon=True, args=args(first, k))
        p.start()
        started.append(p)
        first += k
    return started


def window_cpu(
    watch: dict[str, list[int]], client_pids: list[int], window: Window
) -> dict[str, float]:
    """Sleeps through the measured ``window``; CPU seconds of each ``watch`` component, of the load
    generator (``client_pids``) and of every other process on the machine over it."""

    def sample() -> dict:
        out = {name: tree_cpu(pids) for name, pids in watch.items()}
        out["load generator"] = tree_cpu(client_pids)
        t = psutil.cpu_times()
        out["machine"] = sum(t) - t.idle - getattr(t, "iowait", 0.0)
        return out

    time.sleep(max(0.0, window.start_at - time.perf_counter()))
    before = sample()
    time.sleep(max(0.0, window.stop_at - time.perf_counter()))
    after = sample()
    cpu = {name: after[name] - before[name] for name in before}
    machine = cpu.pop("machine")
    cpu["other processes"] = max(0.0, machine - sum(cpu.values()))
    return cpu


def run_load(
    port: int, user_ids: np.ndarray, cfg: LoadConfig, watch: dict[str, list[int]]
) -> tuple:
    """Drive the server on ``port``; returns (latencies ms, errors, samples, connects, window s,
    CPU seconds per component of ``watch`` plus "load generator")."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    quota = max(1, -(-cfg.max_requests // cfg.clients))
    spawn_allowance = 3.0  # spawn-started processes import numpy before they can send anything
    begin_at = time.perf_counter() + spawn_allowance
    start_at = begin_at + cfg.warmup_s
    stop_at = start_at + cfg.seconds
    window = Window(begin_at, start_at, stop_at)
    procs = spawn_clients(
        ctx,
        client_process,
        cfg.clients,
        cfg.procs,
        lambda first, k: ("127.0.0.1", port, user_ids, cfg, first, k, window, quota, queue),
    )
    cpu = window_cpu(watch, [p.pid for p in procs], window)
    collected = []
    deadline = stop_at + cfg.timeout_s + 10
    while len(collected) < len(procs) and time.perf_counter() < deadline:
        with contextlib.suppress(queue_mod.Empty):
            collected.append(queue.get(timeout=1.0))
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.kill()
    if not collected:
        raise RuntimeError("no load-generator process reported")
    lat = (
        np.concatenate([np.frombuffer(c[0], np.int64) for c in collected]).astype(np.float64) / 1e6
    )
    errors = sum(c[1] for c in collected)
    samples = [s for c in collected for s in c[2]][:5]
    if len(collected) < len(procs):
        errors += 1
        samples.append(f"{len(procs) - len(collected)} load-generator process(es) did not report")
    connects = sum(c[3] for c in collected)
    seconds = cfg.seconds
    if any(c[6] for c in collected):  # the request cap ended the run early
        seconds = max(1e-3, min(stop_at, max(c[5] for c in collected) / 1e9) - start_at)
        cpu["other processes"] *= seconds / cfg.seconds  # the rest of the window was not ours
    return lat, errors, samples, connects, seconds, cpu


# --- the benchmark -------------------------------------------------------------------------------


def warm(port: int, user_ids: np.ndarray, n: int, clients: int = 16) -> int:
    """Ask for every user once on each of ``clients`` keep-alive connections (threads of this
    process), unmeasured: every gunicorn worker has then very likely cached every user's list
    (a connection stays with the worker that accepted it), as in a server's steady state.
    Returns the number of answers that were not 200."""
    failures = []

    def one(index: int) -> None:
        conn = HTTPConnection("127.0.0.1", port, 30.0)
        order = [int(u) for u in user_ids]
        random.Random(index).shuffle(order)
        try:
            bad = sum(
                conn.get(
                    f"GET /user/{uid}/recommendation?n={n} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                )[0]
                != 200
                for uid in order
            )
        finally:
            conn.close()
        failures.append(bad)

    run_threads(one, [(k,) for k in range(clients)])
    return sum(failures)


def measure(
    design: str,
    server: ServerConfig,
    mongodb_url: str,
    user_ids: np.ndarray,
    cfg: LoadConfig,
    store_pid: int | None,
    log_path: Path,
    warm_caches: bool = False,
) -> RunResult:
    probe = f"/user/{int(user_ids[0])}/recommendation?n={cfg.n}"
    with gunicorn(server, mongodb_url, probe, log_path) as (port, proc):
        if warm_caches and (bad := warm(port, user_ids, cfg.n)):
            raise RuntimeError(f"{bad} warm-up requests failed; see {log_path}")
        watch = {"gunicorn": [proc.pid]}
        if store_pid is not None:
            watch["store server"] = [store_pid]
        lat, errors, samples, connects, seconds, cpu = run_load(port, user_ids, cfg, watch)
    load = f"open, {cfg.rate:,.0f} rps offered" if cfg.rate > 0 else "closed loop"
    return RunResult(design, server.label, load, seconds, lat, errors, samples, connects, cpu)


def _wsgi_get(app, path: str, query: str) -> tuple[str, bytes]:
    import io

    seen: dict = {}
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.input": io.BytesIO(),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    body = b"".join(app(environ, lambda status, headers, exc_info=None: seen.update(status=status)))
    return seen["status"], body


#: (group, test on the profiler's (filename, function name)) in order; the first match wins.
_PROFILE_GROUPS = (
    (
        "waiting for the store (socket send/recv)",
        lambda f, n: f == "~" and ("sendall" in n or "recv" in n),
    ),
    ("BSON decoding", lambda f, n: f == "~" and "bson" in n),
    ("pymongo (driver code)", lambda f, n: "/pymongo/" in f or "/bson/" in f),
    ("JSON encoding", lambda f, n: "/json/" in f or (f == "~" and "json" in n)),
    ("bottle (routing, request/response)", lambda f, n: f.endswith("/bottle.py")),
    ("the API's own code", lambda f, n: "/api/" in f),
    ("pipeline features + rating model", lambda f, n: "/pipeline/" in f),
    (
        "scikit-learn, pandas, numpy, scipy",
        lambda f, n: any(
            f"/{m}/" in f for m in ("sklearn", "pandas", "numpy", "scipy", "threadpoolctl")
        ),
    ),
    ("other (builtins, stdlib)", lambda f, n: True),
)


@dataclass
class Profile:
    factory: str
    requests: int
    wall_ms: float
    cpu_ms: float
    shares: dict[str, float]  # group -> share of the profiled wall time


def profile_app(
    factory: str,
    url: str,
    user_ids: np.ndarray,
    n: int,
    requests: int,
    seed: int,
    env: dict[str, str] | None = None,
    warm_all: bool = False,
) -> Profile:
    """Call ``factory``'s app in this process, one request at a time through WSGI (no HTTP, no
    concurrency): wall and CPU per request, then where a cProfile run of as many requests spends
    its time (cProfile inflates Python-level code: read the shares, not the milliseconds). Before,
    200 random users are asked for, or with ``warm_all`` every user (as ``warm`` does over HTTP)."""
    import cProfile
    import importlib
    import pstats

    module, _, call = factory.partition(":")
    os.environ.update({"MONGODB_URL": url, **(env or {})})
    app = getattr(importlib.import_module(module), call.removesuffix("()"))()
    rng = np.random.default_rng([seed, 99])
    warm = min(200, requests)
    picks = [int(u) for u in user_ids[rng.integers(0, len(user_ids), size=2 * requests + warm)]]

    def call_app(uid: int) -> None:
        status, body = _wsgi_get(app, f"/user/{uid}/recommendation", f"n={n}")
        if not status.startswith("200"):
            raise RuntimeError(f"{factory}: {status} {body[:200]!r}")

    for uid in [int(u) for u in user_ids] if warm_all else picks[:warm]:  # connect, fill the caches
        call_app(uid)
    wall, cpu = time.perf_counter(), time.process_time()
    for uid in picks[warm : warm + requests]:
        call_app(uid)
    wall, cpu = (
        (time.perf_counter() - wall) / requests * 1e3,
        (time.process_time() - cpu) / requests * 1e3,
    )
    prof = cProfile.Profile()
    prof.runcall(lambda: [call_app(u) for u in picks[warm + requests :]])
    groups = dict.fromkeys((g for g, _ in _PROFILE_GROUPS), 0.0)
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in pstats.Stats(
        prof
    ).stats.items():
        groups[next(g for g, test in _PROFILE_GROUPS if test(filename, name))] += tottime
    total = sum(groups.values()) or 1.0
    return Profile(factory, requests, wall, cpu, {g: v / total for g, v in groups.items()})


def print_profiles(profiles: list[tuple[str, Profile]]) -> None:
    print(
        "\n## One request at a time, in-process (WSGI calls on one thread: no HTTP, no concurrency, "
        "caches warm)\n"
    )
    print(
        "| design | requests | wall ms per request | CPU ms per request (this process; the store's is extra) |"
    )
    print("|---|---|---|---|")
    for name, prof in profiles:
        print(f"| {name} | {prof.requests:,} | {prof.wall_ms:.2f} | {prof.cpu_ms:.2f} |")
    print(
        "\nWhere the wall time goes (cProfile of as many more requests; shares of the profiled time):\n"
    )
    print("| part | " + " | ".join(name for name, _ in profiles) + " |")
    print("|---|" + "---|" * len(profiles))
    for group, _ in _PROFILE_GROUPS:
        if any(prof.shares[group] >= 0.005 for _, prof in profiles):
            print(
                f"| {group} | "
                + " | ".join(f"{100 * prof.shares[group]:.0f}%" for _, prof in profiles)
                + " |"
            )


def parse_servers(spec: str, app: str, config_file: str | None = None) -> list[ServerConfig]:
    """``sync:2,gthread:2x4`` -> ServerConfigs (workers, or workers x threads)."""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        kind, _, size = item.partition(":")
        workers, _, threads = size.partition("x")
        out.append(
            ServerConfig(
                app=app,
                worker_class=kind,
                workers=int(workers or 2),
                threads=int(threads or 1),
                config_file=config_file,
            )
        )
    return out


def served_user_ids(url: str) -> tuple[np.ndarray, str]:
    """Every served user id (sorted) and the served version."""
    import pymongo

    from pipeline.publish.store import Store

    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=10_000)
    try:
        store = Store(client.get_default_database(default="movietime"))
        pointer = store.current()
        if pointer is None:
            raise RuntimeError(f"nothing is served at {url}: run the pipeline first")
        ids = [d["_id"] for d in store.collection("users", pointer).find({}, {"_id": 1})]
        return np.array(sorted(ids), np.int64), pointer["version"]
    finally:
        client.close()


def print_results(title: str, results: list[RunResult]) -> None:
    print(f"\n## {title}\n")
    print(
        "| design | gunicorn | load | requests | rps | p50 ms | p90 ms | p99 ms | max ms | errors | connects |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        worst = r.latencies_ms.max() if r.requests else float("nan")
        print(
            f"| {r.design} | {r.server} | {r.load} | {r.requests:,} | {r.rps:,.0f} | {r.pct(50):.2f} | "
            f"{r.pct(90):.2f} | {r.pct(99):.2f} | {worst:.2f} | {r.errors} | {r.connects:,} |"
        )
    print(
        "\nCPU during the measured window, in cores (CPU seconds / window seconds; the machine has "
        f"{psutil.cpu_count()}); 'other' is everything else running on the machine meanwhile:\n"
    )
    names = [
        k
        for k in ("load generator", "gunicorn", "store server")
        if any(k in r.cpu_s for r in results)
    ]
    print(
        "| design | gunicorn | load | "
        + " | ".join(names)
        + " | sum | other | CPU ms per request: "
        + " / ".join(names)
        + " |"
    )
    print("|---|---|---|" + "---|" * len(names) + "---|---|---|")
    for r in results:
        cores = {k: r.cpu_s.get(k, 0.0) / r.seconds for k in names}
        per = " / ".join(f"{1000 * r.cpu_s.get(k, 0.0) / max(r.requests, 1):.2f}" for k in names)
        other = r.cpu_s.get("other processes", 0.0) / r.seconds
        print(
            f"| {r.design} | {r.server} | {r.load} | "
            + " | ".join(f"{cores[k]:.2f}" for k in names)
            + f" | {sum(cores.values()):.2f} | {other:.2f} | {per} |"
        )
    for r in results:
        for s in r.error_samples:
            print(f"  error ({r.design}, {r.server}): {s}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--clients", type=int, default=16, help="concurrent keep-alive connections (default: 16)"
    )
    p.add_argument(
        "--client-procs", type=int, default=4, help="load-generator processes (default: 4)"
    )
    p.add_argument(
        "--seconds", type=float, default=20.0, help="measured seconds per run (default: 20)"
    )
    p.add_argument(
        "--warmup", type=float, default=2.0, help="unmeasured seconds before (default: 2)"
    )
    p.add_argument("--max-requests", type=int, default=1_000_000, help="cap on requests per run")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (default: 2)")
    p.add_argument("--worker-class", default="gthread", choices=["sync", "gthread"])
    p.add_argument("--threads", type=int, default=2, help="threads per gthread worker (default: 2)")
    p.add_argument(
        "--rate",
        default="500,1100,1300",
        help="also measure the API open loop at these offered rates, requests/s, comma-separated "
        "(0: skip; default: 500,1100,1300: the targets ask for >= 1,000 served per second)",
    )
    p.add_argument(
        "--gunicorn-config",
        default=None,
        help="gunicorn --config file for the API, e.g. api/gunicorn_conf.py (flags above override it)",
    )
    p.add_argument("--n", type=int, default=10, help="recommendations per request (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the user choice (default: 0)")
    p.add_argument(
        "--mongodb-url", default=None, help="an already loaded store (default: start and load one)"
    )
    p.add_argument("--app", default=API_APP, help=f"the API's gunicorn app (default: {API_APP})")
    p.add_argument(
        "--seed-seconds", type=float, default=None, help="measured seconds of the seed design"
    )
    p.add_argument("--no-seed-design", action="store_true", help="measure the API only")
    p.add_argument(
        "--profile",
        type=int,
        default=1000,
        metavar="N",
        help="also time and profile N requests of the API in-process (0: skip; default: 1000)",
    )
    p.add_argument(
        "--sweep",
        default=None,
        help="also measure the API under these gunicorn set-ups first, e.g. sync:2,gthread:2x4",
    )
    args = p.parse_args(argv)

    load = LoadConfig(
        clients=args.clients,
        procs=args.client_procs,
        seconds=args.seconds,
        warmup_s=args.warmup,
        max_requests=args.max_requests,
        n=args.n,
        seed=args.seed,
    )
    ours = ServerConfig(
        app=args.app,
        workers=args.workers,
        worker_class=args.worker_class,
        threads=args.threads,
        config_file=args.gunicorn_config,
    )
    env = bench_env()
    with (
        tempfile.TemporaryDirectory(prefix="mt-bench-api-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(tmp)
        log_path = tmp / "gunicorn.log"
        url, store_pid, note = bench_store(stack, tmp, env, args.mongodb_url)
        notes = [note]
        user_ids, version = served_user_ids(url)
        notes.append(
            f"served version {version}, {len(user_ids):,} users; random users, seed {args.seed}; before "
            f"each run of ours, every user was asked for once on each of 16 connections (warm caches)"
        )
        if not args.no_seed_design:
            model_path = tmp / "seed-model.pkl"
            took = timed_step(
                [sys.executable, "-m", "benchmarks.seed_design", "fit", "--out", str(model_path)],
                env,
                REPO,
                "fitting the seed design's model",
                tmp / "setup.log",
            )
            notes.append(
                f"seed design: rating model fitted once in {took:.0f} s, unpickled by each worker"
            )

        if args.sweep:
            sweep = [
                measure("ours", s, url, user_ids, load, store_pid, log_path, warm_caches=True)
                for s in parse_servers(args.sweep, args.app, args.gunicorn_config)
            ]
            print_results(f"API under several gunicorn set-ups ({load.clients} clients)", sweep)

        results = [
            measure("ours", ours, url, user_ids, load, store_pid, log_path, warm_caches=True)
        ]
        for rate in (float(r) for r in args.rate.split(",") if r.strip() and float(r) > 0):
            results.append(
                measure(
                    "ours",
                    ours,
                    url,
                    user_ids,
                    replace(load, rate=rate),
                    store_pid,
                    log_path,
                    warm_caches=True,
                )
            )
        if not args.no_seed_design:
            seed_server = replace(
                ours, app=SEED_APP, config_file=None, env=(("SEED_MODEL_PATH", str(model_path)),)
            )
            seed_load = replace(
                load, seconds=args.seed_seconds or load.seconds, warmup_s=max(load.warmup_s, 3.0)
            )
            results.append(
                measure("seed design", seed_server, url, user_ids, seed_load, store_pid, log_path)
            )

        if args.profile:
            profiles = [
                (
                    "ours",
                    profile_app(
                        args.app,
                        url,
                        user_ids,
                        load.n,
                        args.profile,
                        args.seed,
                        env={"API_LIVE_INDEX_DIR": str(tmp / "live-index-profile")},
                        warm_all=True,
                    ),
                )
            ]
            if not args.no_seed_design:
                profiles.append(
                    (
                        "seed design",
                        profile_app(
                            SEED_APP,
                            url,
                            user_ids,
                            load.n,
                            max(10, args.profile // 50),
                            args.seed,
                            {"SEED_MODEL_PATH": str(model_path)},
                        ),
                    )
                )
            print_profiles(profiles)
            if len(profiles) == 2:
                notes.append(
                    f"one request at a time, in-process: seed design / ours = "
                    f"{profiles[1][1].wall_ms / profiles[0][1].wall_ms:.0f}x wall time per request"
                )
        print_results(
            f"GET /user/<id>/recommendation?n={load.n}: {load.clients} clients in "
            f"{min(load.procs, load.clients)} processes, {load.seconds:g} s measured after "
            f"{load.warmup_s:g} s warm-up",
            results,
        )
        print()
        for note in notes:
            print(f"- {note}")
        seed = [x for x in results if x.design == "seed design"]
        if seed and seed[0].requests and results[0].requests:
            ratio = seed[0].pct(50) / results[0].pct(50)
            print(
                f"- p50 ratio seed design / ours, both closed loop with the same clients: {ratio:.0f}x "
                "(target: >= 20x)"
            )
        for r in (x for x in results if x.design == "ours"):
            checks = [
                ("p50 <= 3 ms", r.pct(50) <= 3),
                ("p99 <= 15 ms", r.pct(99) <= 15),
                (">= 1,000 rps", r.rps >= 1000),
                ("0 errors", r.errors == 0),
            ]
            print(
                f"- targets for ours, {r.load}: "
                + ", ".join(f"{name} {'yes' if ok else 'NO'}" for name, ok in checks)
            )
        closed = results[0]
        if closed.requests:
            print(
                f"- closed loop: {load.clients} clients / {closed.rps:,.0f} rps = "
                f"{1000 * load.clients / closed.rps:.1f} ms mean latency (Little's law): with no think time, "
                f"a 3 ms mean at {load.clients} clients needs {load.clients / 0.003:,.0f} rps"
            )
        if any(x.errors for x in results) and log_path.exists() and log_path.stat().st_size:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            print("- gunicorn log (last lines): " + " | ".join(tail))
        return 0 if all(x.errors == 0 for x in results) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Helpers shared by the benchmarks: a throwaway store server, process-tree RSS sampling and
best-of-n timing."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pymongo

from contract.embedded import EmbeddedConfig
from pipeline.data.tmdb import load_metadata
from pipeline.features.tables import movie_terms, term_matrix

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def split_args(p) -> None:
    """``--split`` (the peer harness's reference user-holdout split) and ``--movies``."""
    p.add_argument(
        "--split", default=str(SHARED / "bench" / "splits" / "ml-latest-small" / "user-holdout")
    )
    p.add_argument("--movies", default=str(SHARED / "data" / "ml-latest-small" / "movies.csv"))


def bundled_content(movie_ids):
    """The top-N model's content terms (``TopNRecommender.fit``) for ``movie_ids``, from the
    bundled ml-latest-small movies and TMDB metadata, as ``pipeline.train.fit_models`` reads them
    for the bundled data. Only for ratings of ml-latest-small (its movie ids)."""
    return term_matrix(movie_ids, _bundled_terms())


def bundled_topn(matrix, config=None, mf=None):
    """The top-N model fitted on ``matrix`` as ``pipeline.train.fit_models`` fits it for the
    bundled data: with the movies' content terms (:func:`bundled_content`) and the rating
    model's factorisation for the users' taste (``mf``, or a ``BiasedMF`` fitted here with
    ``PipelineConfig().rating.mf``). ``config``: a ``TopNConfig``, by default the pipeline's."""
    from pipeline.config import PipelineConfig
    from pipeline.models.mf import BiasedMF
    from pipeline.models.topn import TopNRecommender

    pipeline = PipelineConfig()
    mf = mf if mf is not None else BiasedMF(pipeline.rating.mf).fit(matrix)
    return TopNRecommender(config or pipeline.topn).fit(
        matrix, bundled_content(matrix.item_ids), taste=mf
    )


@functools.cache
def _bundled_terms() -> dict[int, list[str]]:
    """``movie_terms`` of the bundled data, read once per process (the benchmarks fit a model
    per carve and per setting)."""
    folder = REPO / "resources" / "ml-latest-small"
    movies, links = pd.read_csv(folder / "movies.csv"), pd.read_csv(folder / "links.csv")
    return movie_terms(movies, None, links, load_metadata(REPO / "resources" / "tmdb"))


def newest_first(ratings):
    """``ratings`` (a frame with ``timestamp`` and ``movieId``) newest first, ties by movie id: the
    order in which the API reads a served user's packed ratings (``RatingMatrix.newest_first``)."""
    return ratings.sort_values(["timestamp", "movieId"], ascending=[False, True], kind="stable")


def random_carve(train, frac: float = 0.2, seed: int = 43) -> np.ndarray:
    """The harness's per-user hold-out on ``train`` in (userId, movieId) order: a random
    ``max(1, floor(frac * n))`` of each user's ratings (users with at least 5)."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(train), bool)
    for _, rows in sorted(train.groupby("userId").indices.items()):
        if len(rows) >= 5:
            n = max(1, int(np.floor(frac * len(rows) + 1e-9)))
            held[rows[rng.permutation(len(rows))[:n]]] = True
    return held


@contextlib.contextmanager
def secantus(sync_on_commit: bool = True, cache_size: str | None = None):
    """A SecantusDB server on a free loopback port with a temporary storage folder; yields its URL.
    ``cache_size``: its WiredTiger cache, by default the embedded server's (``EmbeddedConfig``), so
    a benchmark's store holds what a user's would."""
    cache_size = cache_size or EmbeddedConfig().cache_size
    with tempfile.TemporaryDirectory(prefix="mt-bench-store-") as tmp:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        argv = [
            str(Path(sys.executable).parent / "secantusd-py"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            f"{tmp}/data",
            "--cache-size",
            cache_size,
        ]
        if sync_on_commit:
            argv.append("--sync-on-commit")
        proc = subprocess.Popen(argv, stdout=open(f"{tmp}/log", "wb"), stderr=subprocess.STDOUT)
        url = f"mongodb://127.0.0.1:{port}/movietime?directConnection=true"
        deadline = time.monotonic() + 30
        while True:
            try:
                pymongo.MongoClient(url, serverSelectionTimeoutMS=300).admin.command("ping")
                break
            except pymongo.errors.PyMongoError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("store server did not start") from None
                time.sleep(0.2)
        try:
            yield url, proc
        finally:
            proc.terminate()
            proc.wait(30)


def best_of(f: Callable[[], object], repeat: int) -> tuple[float, object]:
    """The shortest of ``repeat`` timed calls of ``f`` (seconds) and the last call's result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t)
    return best, out


def run_threads(target: Callable[..., None], args: Iterable[tuple]) -> None:
    """``target(*a)`` for each ``a`` of ``args``, each in a daemon thread of its own, all started
    before any is joined; returns when every one is done."""
    threads = [threading.Thread(target=target, args=a, daemon=True) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


class PeakRSS:
    """Samples the summed RSS of a process and all its descendants (e.g. Dask workers):
    ``peak`` of the sum, ``peak_root`` of the process alone and ``peak_children`` of the sum
    over its descendants; ``peak_at`` is ``(wall clock time, root, children)`` when the sum
    peaked; ``samples`` every such triple."""

    def __init__(self, pid: int, every_s: float = 0.25):
        self.pid, self.every_s, self.peak = pid, every_s, 0
        self.peak_root = self.peak_children = 0
        self.peak_at = (time.time(), 0, 0)
        self.samples: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                own = root.memory_info().rss
                children = 0
                for p in root.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        children += p.memory_info().rss
                self.samples.append((time.time(), own, children))
                if own + children > self.peak:
                    self.peak, self.peak_at = own + children, (time.time(), own, children)
                self.peak_root = max(self.peak_root, own)
                self.peak_children = max(self.peak_children, children)
            except psutil.Error:
                pass
            self._stop.wait(self.every_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_measured(argv: list[str], env: dict, cwd: Path | None = None, stderr=None) -> dict:
    """Run a command; return wall seconds, peak RSS of its process tree (GiB; also of the process
    alone and of its descendants), when the sum peaked (``peak_at``: wall clock time, GiB of the
    process and of its descendants then), every sample (``samples``, the same triples) and the
    exit code."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stderr=stderr)
    with PeakRSS(proc.pid) as rss:
        code = proc.wait()
    return {
        "seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_gib": round(rss.peak / 2**30, 2),
        "peak_rss_root_gib": round(rss.peak_root / 2**30, 2),
        "peak_rss_children_gib": round(rss.peak_children / 2**30, 2),
        "peak_at": (
            rss.peak_at[0],
            round(rss.peak_at[1] / 2**30, 2),
            round(rss.peak_at[2] / 2**30, 2),
        ),
        "samples": rss.samples,
        "exit_code": code,
    }


def store_pid_for(url: str) -> int | None:
    """PID of the process listening on the URL's loopback port (None when not found)."""
    import pymongo.uri_parser

    try:
        host, port = pymongo.uri_parser.parse_uri(url)["nodelist"][0]
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port and c.pid:
                return c.pid
    except (psutil.Error, ValueError, IndexError):
        pass
    return None


def timed_step(argv: list[str], env: dict, cwd: Path, what: str, log_path: Path) -> float:
    """Run a set-up step with its output in ``log_path``; its wall seconds."""
    started = time.perf_counter()
    with open(log_path, "ab") as log:
        done = subprocess.run(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
        raise RuntimeError(f"{what} failed with exit code {done.returncode}:\n" + "\n".join(tail))
    print(f"{what}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return time.perf_counter() - started


def bench_env() -> dict[str, str]:
    """This environment with the repository first on ``PYTHONPATH``: for the servers and the
    pipeline runs a benchmark starts."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def bench_store(
    stack: contextlib.ExitStack, tmp: Path, env: dict, mongodb_url: str | None
) -> tuple[str, int | None, str]:
    """The store a benchmark runs against, as ``(url, the server's pid, a note saying which)``:
    ``mongodb_url`` as given, else a fresh durable SecantusDB (stopped with ``stack``) loaded
    by ``python -m pipeline run --no-evaluate`` on the bundled data."""
    if mongodb_url:
        return mongodb_url, store_pid_for(mongodb_url), f"store: {mongodb_url} (given)"
    url, server = stack.enter_context(secantus())
    argv = [sys.executable, "-m", "pipeline", "-q", "run", "--no-evaluate"]
    took = timed_step(
        [*argv, "--run-dir", str(tmp / "runs")],
        {**env, "MONGODB_URL": url},
        tmp,
        "loading the store with the pipeline",
        tmp / "setup.log",
    )
    note = (
        "store: fresh SecantusDB (durable, --sync-on-commit), loaded by `python -m pipeline run "
        f"--no-evaluate` in {took:.0f} s"
    )
    return url, server.pid, note


def wsgi_call(
    app, method: str, path: str, query: str = "", body: bytes = b"", headers=None, ok=(200,)
):
    """One request through a WSGI callable in this process (no HTTP): ``(status, body)``;
    a status outside ``ok`` raises."""
    status: list[str] = []
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
        **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in (headers or {}).items()},
    }
    out = b"".join(app(environ, lambda s, h, e=None: status.append(s)))
    code = int(status[0].split()[0])
    if code not in ok:
        raise RuntimeError(f"{method} {path}?{query}: {status[0]} {out[:200]!r}")
    return code, out


def wsgi_get(app, path: str, query: str = "", ok=(200,)) -> bytes:
    return wsgi_call(app, "GET", path, query, ok=ok)[1]


def served_users(app) -> list[int]:
    """Every data-set user of the served version, cluster by cluster (through ``app``)."""
    out, cluster = [], 0
    while True:
        first = json.loads(wsgi_get(app, f"/user/list/{cluster}", "per_page=100", ok=(200, 404)))
        if "error" in first:
            return out
        for page in range(1, first["pages"] + 1):
            body = json.loads(wsgi_get(app, f"/user/list/{cluster}", f"per_page=100&page={page}"))
            out += [int(u["userId"]) for u in body["items"]]
        cluster += 1

"""Soak: mixed reads and writes at many clients for a minute, then the stored events counted.

    python -m benchmarks.soak [--seconds 60] [--clients 32] [--write-share 0.2] [--threads 16]
    python -m benchmarks.soak --mongodb-url "mongodb://127.0.0.1:27018/movietime?directConnection=true"

Steps:

1. The store: a fresh SecantusDB server on a free loopback port, durable (``--sync-on-commit``:
   an acknowledged write is on disk), loaded by the real pipeline (``python -m pipeline -q run
   --no-evaluate``, bundled ml-latest-small), as ``benchmarks.api_load``; or ``--mongodb-url``,
   already loaded. That store is written to: the benchmark picks data-set users with no profile
   and no account, and deletes the profiles and accounts it made at the end (a given store only).
2. The API (``api.wsgi:create()``) under gunicorn on loopback (``api_load``'s helper; gthread,
   2 workers x ``--threads``, default 16: one thread per client, so reads never queue behind
   writes waiting for the store's commit; 2x16 answered more and faster reads than 2x8 and 2x4
   here).
3. Writers: ``--writers`` data-set users given tokens with ``contract.accounts.issue_token``, plus
   ``--onboard`` users created with ``POST /users`` (genres only, so every stored event of theirs
   comes from the load). ``--hot`` (user, movie) pairs of writers are the concurrency targets.
4. Load: ``--clients`` keep-alive connections over ``--client-procs`` processes (spawned; a
   raw-socket HTTP/1.1 client, ``api_load.HTTPConnection``), closed loop. Each client keeps its
   writes at ``--write-share`` of its requests, burst writes included (half ``POST
   /user/<id>/ratings``, half ``POST /user/<id>/feedback``: a random writer, one of the 300 most
   rated movies, a random rating or action); the rest are reads: ``GET /user/<id>/recommendation`` (60%; a random data-set user, or 1 in
   5 a writer, whose list is re-scored live after each change), ``GET /movies/search`` (20%; a
   word or a prefix of a popular title) or ``GET /movie/<id>/similar`` (20%). Every
   ``--burst-every`` seconds, every client rates the same hot (user, movie) at once with its own
   random rating (the pairs in turn). Every answer is checked (status, JSON, the id asked for;
   a write's answer must carry ``event.id`` and ``rev``); anything else, or a connection error or
   time-out, is an error, counted by kind. Latencies are of the requests sent in the measured
   window (after ``--warmup``); errors and writes count over the whole run.
5. Data safety, from the ``profiles`` collection after the load: every acknowledged event id is
   stored exactly once (duplicates and missing counted); a stored event that was not acknowledged
   must match (user, movie, type, rating) a write whose request errored (else unexplained);
   ``rev`` equals the number of events and each acknowledgement's ``rev`` is its event's
   position; replaying each profile's events in order gives its stored ``ratings`` and
   ``feedback``; for each hot pair, the stored rating is the rating of the last event of that
   movie. How many burst writes were in flight at once on one pair is measured from the clients'
   send and answer times.
6. psutil reads the CPU seconds of the load generator, gunicorn, the store server and every other
   process over the measured window ("other" above ~0.2 of a core: the machine was busy).

Exit status 1 when there was any error or any data-safety check failed.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import multiprocessing as mp
import queue as queue_mod
import random
import sys
import tempfile
import time
import urllib.parse
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

from benchmarks._util import bench_env, bench_store
from benchmarks.api_load import (
    HTTPConnection,
    ServerConfig,
    Window,
    check_answer,
    gunicorn,
    run_client_threads,
    served_user_ids,
    spawn_clients,
    window_cpu,
)

ACTIONS = ("like", "dislike", "not_interested")
READS = ("GET recommendation", "GET search", "GET similar")
WRITES = ("POST ratings", "POST feedback", "POST ratings, burst")
RATINGS = tuple(k / 2 for k in range(1, 11))  # 0.5 .. 5.0


# --- configuration -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoakConfig:
    clients: int = 32
    procs: int = 4
    seconds: float = 60.0
    warmup_s: float = 3.0
    write_share: float = 0.2  # of all requests, burst writes included
    # every client rates one hot (user, movie) at once this often; 0: never
    burst_every_s: float = 1.0
    n: int = 10
    seed: int = 0
    timeout_s: float = 30.0
    spawn_allowance_s: float = 3.0  # spawned processes import numpy before they can send


@dataclass(frozen=True)
class Targets:
    """What the clients ask for (sent to the spawned processes)."""

    read_users: tuple[int, ...]
    writers: tuple[tuple[int, str], ...]  # (userId, token)
    movies: tuple[int, ...]  # written to and asked for similar movies
    queries: tuple[str, ...]
    hot: tuple[tuple[int, int], ...]  # (userId, movieId) rated by every client at once


@dataclass
class Outcome:
    """What clients saw; merged over clients and processes."""

    latencies_ns: dict = field(default_factory=lambda: {k: array("q") for k in READS + WRITES})
    sent: collections.Counter = field(default_factory=collections.Counter)  # by kind, whole run
    errors: collections.Counter = field(default_factory=collections.Counter)  # by "kind: problem"
    samples: list = field(default_factory=list)
    acks: list = field(
        default_factory=list
    )  # (user, movie, type, rating, event id, rev, answered ns)
    errored_writes: list = field(default_factory=list)  # (user, movie, type, rating): may be stored
    errored_sent_ns: list = field(default_factory=list)  # when each errored write was sent
    retried_writes: list = field(
        default_factory=list
    )  # sent again on a fresh connection: may be stored twice
    bursts: list = field(default_factory=list)  # (burst number, sent ns, answered ns)
    connects: int = 0

    def merge(self, other: Outcome) -> None:
        for k, v in other.latencies_ns.items():
            self.latencies_ns[k].extend(v)
        self.sent.update(other.sent)
        self.errors.update(other.errors)
        self.samples += other.samples[: max(0, 10 - len(self.samples))]
        self.acks += other.acks
        self.errored_writes += other.errored_writes
        self.errored_sent_ns += other.errored_sent_ns
        self.retried_writes += other.retried_writes
        self.bursts += other.bursts
        self.connects += other.connects


# --- the clients ---------------------------------------------------------------------------------


def post_request(host: str, path: str, payload: dict, token: str | None = None) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode()
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def get_request(host: str, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def check_write(status: int, body: bytes, uid: int, mid: int) -> tuple[str | None, tuple | None]:
    """(problem, (event id, rev)) of a write's answer."""
    if status != 200:
        return f"HTTP {status}", None
    try:
        doc = json.loads(body)
        event_id, rev = doc["event"]["id"], doc["rev"]
        ok = (
            doc["userId"] == uid
            and doc["movieId"] == mid
            and isinstance(event_id, str)
            and isinstance(rev, int)
        )
    except (ValueError, KeyError, TypeError):
        ok = False
    return (None, (event_id, rev)) if ok else ("bad answer", None)


def check_read(kind: str, status: int, body: bytes, key: int, n: int) -> str | None:
    if kind == "GET recommendation":
        problem = check_answer(status, body, key, n)
        return None if problem is None else (f"HTTP {status}" if status != 200 else "bad answer")
    if status != 200:
        return f"HTTP {status}"
    try:
        doc = json.loads(body)
        ok = (
            isinstance(doc.get("results"), list)
            if kind == "GET search"
            else (doc.get("movieId") == key and isinstance(doc.get("similar"), list))
        )
    except (ValueError, AttributeError):
        ok = False
    return None if ok else "bad answer"


def _client_thread(
    host: str, port: int, t: Targets, cfg: SoakConfig, index: int, window: Window, out: Outcome
) -> None:
    rnd = random.Random(f"{cfg.seed}/soak/{index}")
    tokens = dict(t.writers)
    writer_ids = [u for u, _ in t.writers]
    conn = HTTPConnection(host, port, cfg.timeout_s)
    clock = time.perf_counter_ns
    begin_ns, start_ns, stop_ns = (
        int(x * 1e9) for x in (window.begin_at, window.start_at, window.stop_at)
    )
    burst_ns = int(cfg.burst_every_s * 1e9) if t.hot else 0
    next_burst = done = writes = 0
    time.sleep(max(0.0, (begin_ns - clock()) / 1e9))
    try:
        while True:
            now = clock()
            if now >= stop_ns:
                break
            burst = -1
            if burst_ns and now >= start_ns + next_burst * burst_ns:
                burst, next_burst = next_burst, (now - start_ns) // burst_ns + 1
                kind = "POST ratings, burst"
                uid, mid = t.hot[burst % len(t.hot)]
            elif (
                rnd.random() < cfg.write_share * (done + 1) - writes
            ):  # bursts included: writes stay at the share
                kind = "POST ratings" if rnd.random() < 0.5 else "POST feedback"
                uid, mid = (
                    writer_ids[rnd.randrange(len(writer_ids))],
                    t.movies[rnd.randrange(len(t.movies))],
                )
            else:
                r = rnd.random()
                kind = READS[0] if r < 0.6 else READS[1] if r < 0.8 else READS[2]
            if kind.startswith("POST"):
                if kind == "POST feedback":
                    etype, rating = rnd.choice(ACTIONS), None
                    payload = {"movieId": mid, "action": etype}
                else:
                    etype, rating = "rating", rnd.choice(RATINGS)
                    payload = {"movieId": mid, "rating": rating}
                path = f"/user/{uid}/{'feedback' if etype != 'rating' else 'ratings'}"
                request = post_request(host, path, payload, tokens[uid])
            elif kind == "GET recommendation":
                pool = writer_ids if rnd.random() < 0.2 else t.read_users
                key = pool[rnd.randrange(len(pool))]
                request = get_request(host, f"/user/{key}/recommendation?n={cfg.n}")
            elif kind == "GET search":
                key = 0
                q = urllib.parse.quote(t.queries[rnd.randrange(len(t.queries))])
                request = get_request(host, f"/movies/search?q={q}&limit=10")
            else:
                key = t.movies[rnd.randrange(len(t.movies))]
                request = get_request(host, f"/movie/{key}/similar?n=10")

            had_socket, connects = conn.sock is not None, conn.connects
            t0 = clock()
            ack = None
            try:
                status, body = conn.get(request)
                if kind.startswith("POST"):
                    problem, ack = check_write(status, body, uid, mid)
                else:
                    problem = check_read(kind, status, body, key, cfg.n)
            except (OSError, ValueError, IndexError) as exc:
                conn.close()
                problem, body = type(exc).__name__, str(exc).encode()
            t1 = clock()
            out.sent[kind] += 1
            done += 1
            writes += kind.startswith("POST")
            if start_ns <= t0 < stop_ns and problem is None:
                out.latencies_ns[kind].append(t1 - t0)
            if problem is not None:
                out.errors[f"{kind}: {problem}"] += 1
                if len(out.samples) < 3:
                    what = f"{kind} (user {uid}, movie {mid})" if kind.startswith("POST") else kind
                    out.samples.append(
                        f"{what} at +{(t0 - begin_ns) / 1e9:.2f} s -> {problem}: {body[:120]!r}"
                    )
            if kind.startswith("POST"):
                key4 = (uid, mid, etype, rating)
                if ack is not None:
                    out.acks.append((*key4, ack[0], ack[1], t1))
                else:
                    out.errored_writes.append(key4)
                    out.errored_sent_ns.append(t0)
                if conn.connects - connects > (
                    0 if had_socket else 1
                ):  # api_load's client sent it twice
                    out.retried_writes.append(key4)
                if burst >= 0:
                    out.bursts.append((burst, t0, t1))
    finally:
        out.connects = conn.connects
        conn.close()


def client_process(
    host: str,
    port: int,
    targets: Targets,
    cfg: SoakConfig,
    first: int,
    n_clients: int,
    window: Window,
    queue,
) -> None:
    """``n_clients`` threads, one keep-alive connection each; puts the merged Outcome on ``queue``."""
    outs = [Outcome() for _ in range(n_clients)]
    run_client_threads(
        _client_thread,
        [(host, port, targets, cfg, first + i, window, outs[i]) for i in range(n_clients)],
        window,
    )
    merged = Outcome()
    for o in outs:
        merged.merge(o)
    merged.latencies_ns = {k: v.tobytes() for k, v in merged.latencies_ns.items()}
    queue.put(merged)


def run_clients(
    port: int, targets: Targets, cfg: SoakConfig, watch: dict[str, list[int]]
) -> tuple[Outcome, dict]:
    """Drive the server; returns the merged Outcome and CPU seconds per component over the window."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    begin_at = time.perf_counter() + cfg.spawn_allowance_s
    window = Window(begin_at, begin_at + cfg.warmup_s, begin_at + cfg.warmup_s + cfg.seconds)
    procs = spawn_clients(
        ctx,
        client_process,
        cfg.clients,
        cfg.procs,
        lambda first, k: ("127.0.0.1", port, targets, cfg, first, k, window, queue),
    )
    cpu = window_cpu(watch, [p.pid for p in procs], window)
    merged, reported = Outcome(), 0
    deadline = window.stop_at + cfg.timeout_s + 15
    while reported < len(procs) and time.perf_counter() < deadline:
        with contextlib.suppress(queue_mod.Empty):
            part = queue.get(timeout=1.0)
            part.latencies_ns = {k: array("q", v) for k, v in part.latencies_ns.items()}
            merged.merge(part)
            reported += 1
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.kill()
    if reported < len(procs):
        merged.errors["load generator: process did not report"] += len(procs) - reported
    return merged, cpu


# --- set-up --------------------------------------------------------------------------------------


def _database(client, url: str):
    return client.get_default_database(default="movietime")


def catalogue(url: str, top: int = 300) -> tuple[list[int], list[str], list[str]]:
    """The ``top`` most rated served movies, search queries made from their titles (a first word
    and a prefix of each), and the 3 commonest genres among them."""
    import pymongo

    from pipeline.publish.store import Store

    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=10_000)
    try:
        store = Store(_database(client, url))
        docs = list(
            store.collection("movies", store.current())
            .find({}, {"_id": 1, "name": 1, "title": 1, "genres": 1, "stats.n_ratings": 1})
            .sort("stats.n_ratings", -1)
            .limit(top)
        )
    finally:
        client.close()
    movies = [int(d["_id"]) for d in docs]
    queries = []
    for d in docs:
        words = [
            w
            for w in str(d.get("name") or d.get("title") or "").lower().split()
            if any(c.isalnum() for c in w)
        ]
        if words:
            queries.append(" ".join(words[:2])[:100])
            queries.append(words[0][:4] if len(words[0]) > 4 else words[0])
    genres = collections.Counter(g for d in docs for g in d.get("genres") or ())
    return movies, queries, [g for g, _ in genres.most_common(3)]


def _call(port: int, request: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    conn = HTTPConnection("127.0.0.1", port, timeout)
    try:
        return conn.get(request)
    finally:
        conn.close()


@dataclass
class Writers:
    users: list[tuple[int, str]]  # (userId, token)
    onboarded: list[int]
    baseline: dict[int, set]  # userId -> event ids stored before the load


def make_writers(
    url: str,
    port: int,
    read_users: list[int],
    n_dataset: int,
    n_onboard: int,
    genres: list[str],
    seed: int,
) -> Writers:
    """Data-set users with no profile and no account get tokens; ``n_onboard`` users onboard."""
    import pymongo

    from contract import schema
    from contract.accounts import issue_token

    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=10_000)
    try:
        db = _database(client, url)
        taken = {d["_id"] for d in db[schema.PROFILES].find({}, {"_id": 1})}
        taken |= {d["_id"] for d in db[schema.ACCOUNTS].find({}, {"_id": 1})}
        free = [u for u in read_users if u not in taken]
        chosen = random.Random(f"{seed}/writers").sample(free, min(n_dataset, len(free)))
        users = [(u, issue_token(db, u, origin="benchmark")) for u in chosen]
        onboarded = []
        for _ in range(n_onboard):
            status, body = _call(port, post_request("127.0.0.1", "/users?n=1", {"genres": genres}))
            if status != 201:
                raise RuntimeError(f"POST /users answered {status}: {body[:300]!r}")
            doc = json.loads(body)
            users.append((int(doc["userId"]), doc["token"]))
            onboarded.append(int(doc["userId"]))
        ids = [u for u, _ in users]
        baseline = {u: set() for u in ids}
        for d in db[schema.PROFILES].find({"_id": {"$in": ids}}, {"events.id": 1}):
            baseline[d["_id"]] = {e["id"] for e in d.get("events") or ()}
        return Writers(users, onboarded, baseline)
    finally:
        client.close()


def remove_writers(url: str, writers: Writers) -> None:
    import pymongo

    from contract import schema

    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=10_000)
    try:
        db = _database(client, url)
        ids = [u for u, _ in writers.users]
        db[schema.PROFILES].delete_many({"_id": {"$in": ids}})
        db[schema.ACCOUNTS].delete_many({"_id": {"$in": ids}})
    finally:
        client.close()


def hot_pairs(writers: Writers, movies: list[int], count: int, seed: int) -> list[tuple[int, int]]:
    rnd = random.Random(f"{seed}/hot")
    users = rnd.sample([u for u, _ in writers.users], min(count, len(writers.users)))
    return [(u, movies[rnd.randrange(min(50, len(movies)))]) for u in users]


# --- data safety ---------------------------------------------------------------------------------


@dataclass
class Safety:
    acknowledged: int = 0
    stored: int = 0  # events stored by the load (not in the baseline)
    duplicates: int = 0  # extra copies of acknowledged event ids
    missing: int = 0  # acknowledged event ids not stored
    unacked_errored: int = 0  # stored, not acknowledged, matching a write whose request errored
    unacked_unexplained: int = 0  # stored, not acknowledged, matching no errored write
    errored_first: int = 0  # errored writes sent before any write of their user was acknowledged
    rev_mismatch: int = 0  # profiles whose rev is not their number of events
    # profiles whose ratings/feedback are not their events replayed in order
    replay_mismatch: int = 0
    ack_position_mismatch: int = 0  # acknowledgements whose rev is not their event's position
    hot_pairs: int = 0
    hot_writes: int = 0  # acknowledged burst ratings
    hot_violations: int = 0  # hot pairs whose stored rating is not the last event's
    max_in_flight: int = 0  # most burst writes on one pair in flight at once
    mean_in_flight: float = 0.0  # mean over bursts of the most in flight at once

    @property
    def failures(self) -> int:
        return (
            self.duplicates
            + self.missing
            + self.unacked_unexplained
            + self.rev_mismatch
            + self.replay_mismatch
            + self.ack_position_mismatch
            + self.hot_violations
        )


def _replay(events: list[dict]) -> tuple[dict, dict]:
    ratings, feedback = {}, {}
    for e in events:
        if e.get("type") == "rating":
            ratings[str(e["movieId"])] = float(e["rating"])
        elif e.get("type") in ACTIONS:
            feedback[str(e["movieId"])] = e["type"]
    return ratings, feedback


def _in_flight(bursts: list[tuple[int, int, int]]) -> tuple[int, float]:
    """(max, mean over bursts) of the most burst writes in flight at once."""
    by_burst = collections.defaultdict(list)
    for k, t0, t1 in bursts:
        by_burst[k] += [(t0, 1), (t1, -1)]
    peaks = []
    for marks in by_burst.values():
        level = peak = 0
        for _, step in sorted(marks, key=lambda m: (m[0], m[1])):  # an end before a start at a tie
            level += step
            peak = max(peak, level)
        peaks.append(peak)
    return (max(peaks), float(np.mean(peaks))) if peaks else (0, 0.0)


def check_store(url: str, writers: Writers, hot: list[tuple[int, int]], outcome: Outcome) -> Safety:
    import pymongo

    from contract import schema

    s = Safety(acknowledged=len(outcome.acks), hot_pairs=len(hot))
    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=10_000)
    try:
        ids = [u for u, _ in writers.users]
        profiles = {
            d["_id"]: d for d in _database(client, url)[schema.PROFILES].find({"_id": {"$in": ids}})
        }
    finally:
        client.close()
    stored = collections.Counter()
    stored_key = {}
    for uid, p in profiles.items():
        events = p.get("events") or []
        if int(p.get("rev") or 0) != len(events):
            s.rev_mismatch += 1
        if _replay(events) != (
            {k: float(v) for k, v in (p.get("ratings") or {}).items()},
            p.get("feedback") or {},
        ):
            s.replay_mismatch += 1
        for e in events:
            if e["id"] in writers.baseline.get(uid, ()):
                continue
            stored[e["id"]] += 1
            stored_key[e["id"]] = (
                uid,
                int(e["movieId"]),
                e["type"],
                float(e["rating"]) if e["type"] == "rating" else None,
            )
    s.stored = sum(stored.values())
    acked = set()
    first_ack = {}
    for a in outcome.acks:
        first_ack[a[0]] = min(first_ack.get(a[0], a[6]), a[6])
    s.errored_first = sum(
        1
        for w, t0 in zip(outcome.errored_writes, outcome.errored_sent_ns)
        if t0 < first_ack.get(w[0], float("inf"))
    )
    for uid, _mid, _etype, _rating, event_id, rev, _t1 in outcome.acks:
        acked.add(event_id)
        copies = stored.get(event_id, 0)
        s.missing += copies == 0
        s.duplicates += max(0, copies - 1)
        events = (profiles.get(uid) or {}).get("events") or []
        if not (1 <= rev <= len(events) and events[rev - 1]["id"] == event_id):
            s.ack_position_mismatch += 1
    s.duplicates += sum(c - 1 for i, c in stored.items() if c > 1 and i not in acked)
    allowance = collections.Counter(outcome.errored_writes) + collections.Counter(
        outcome.retried_writes
    )
    for event_id, copies in stored.items():
        if event_id in acked:
            continue
        for _ in range(copies):
            key = stored_key[event_id]
            if allowance[key] > 0:
                allowance[key] -= 1
                s.unacked_errored += 1
            else:
                s.unacked_unexplained += 1
    hot_set = set(hot)
    s.hot_writes = sum(1 for a in outcome.acks if (a[0], a[1]) in hot_set and a[2] == "rating")
    for uid, mid in hot:
        events = (profiles.get(uid) or {}).get("events") or []
        last = [e for e in events if e["type"] == "rating" and int(e["movieId"]) == mid]
        value = ((profiles.get(uid) or {}).get("ratings") or {}).get(str(mid))
        if last and (value is None or float(value) != float(last[-1]["rating"])):
            s.hot_violations += 1
    s.max_in_flight, s.mean_in_flight = _in_flight(outcome.bursts)
    return s


# --- the soak ------------------------------------------------------------------------------------


@dataclass
class SoakResult:
    cfg: SoakConfig
    server: str
    outcome: Outcome
    safety: Safety
    cpu_s: dict
    writers: Writers
    hot: list  # (userId, movieId) pairs of the bursts
    log_tail: list

    @property
    def errors(self) -> int:
        return sum(self.outcome.errors.values())

    @property
    def ok(self) -> bool:
        return self.errors == 0 and self.safety.failures == 0


def soak(
    url: str,
    cfg: SoakConfig,
    server: ServerConfig,
    log_path: Path,
    *,
    store_pid: int | None = None,
    n_writers: int = 40,
    n_onboard: int = 4,
    n_hot: int = 8,
    cleanup: bool = False,
) -> SoakResult:
    """Serve the loaded store at ``url`` with gunicorn, run the load, check the stored events."""
    user_ids, _version = served_user_ids(url)
    read_users = [int(u) for u in user_ids]
    movies, queries, genres = catalogue(url)
    with gunicorn(server, url, f"/user/{read_users[0]}/recommendation?n={cfg.n}", log_path) as (
        port,
        proc,
    ):
        writers = make_writers(url, port, read_users, n_writers, n_onboard, genres, cfg.seed)
        try:
            hot = hot_pairs(writers, movies, n_hot, cfg.seed)
            targets = Targets(
                tuple(read_users), tuple(writers.users), tuple(movies), tuple(queries), tuple(hot)
            )
            watch = {"gunicorn": [proc.pid]}
            if store_pid is not None:
                watch["store server"] = [store_pid]
            outcome, cpu = run_clients(port, targets, cfg, watch)
            safety = check_store(url, writers, hot, outcome)
        finally:
            if cleanup:
                remove_writers(url, writers)
    tail = []
    if outcome.errors and log_path.exists():
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
    return SoakResult(cfg, server.label, outcome, safety, cpu, writers, hot, tail)


# --- report --------------------------------------------------------------------------------------


def _pct(lat_ms: np.ndarray, q: float) -> str:
    return f"{np.percentile(lat_ms, q):.1f}" if len(lat_ms) else "-"


def print_report(r: SoakResult) -> None:
    cfg, o, s = r.cfg, r.outcome, r.safety
    lat = {
        k: np.frombuffer(v, np.int64).astype(np.float64) / 1e6 for k, v in o.latencies_ns.items()
    }
    measured = sum(len(v) for v in lat.values())
    writes_sent = sum(o.sent[k] for k in WRITES)
    total_sent = sum(o.sent.values())
    print(
        f"\n## Soak: {cfg.clients} keep-alive clients in {min(cfg.procs, cfg.clients)} processes, closed loop, "
        f"{cfg.seconds:g} s measured after {cfg.warmup_s:g} s warm-up; gunicorn {r.server}\n"
    )
    print(
        f"requests (whole run) {total_sent:,}, of which writes {writes_sent:,} "
        f"({100 * writes_sent / max(total_sent, 1):.1f}%; {o.sent[WRITES[2]]:,} of them in bursts); "
        f"answered OK in the measured window {measured:,} = {measured / cfg.seconds:,.0f} rps; "
        f"errors {r.errors}; connections opened {o.connects}\n"
    )
    print("| requests | sent | OK in window | rps | p50 ms | p90 ms | p99 ms | max ms | errors |")
    print("|---|---|---|---|---|---|---|---|---|")

    def row(name: str, kinds: tuple[str, ...]) -> None:
        v = np.concatenate([lat[k] for k in kinds])
        errs = sum(n for e, n in o.errors.items() if e.split(":")[0] in kinds)
        print(
            f"| {name} | {sum(o.sent[k] for k in kinds):,} | {len(v):,} | {len(v) / cfg.seconds:,.1f} | "
            f"{_pct(v, 50)} | {_pct(v, 90)} | {_pct(v, 99)} | "
            f"{f'{v.max():.1f}' if len(v) else '-'} | {errs} |"
        )

    for k in READS:
        row(k, (k,))
    row("**all reads**", READS)
    for k in WRITES:
        row(k, (k,))
    row("**all writes**", WRITES)
    row("**everything**", READS + WRITES)
    if o.errors:
        print("\nErrors by kind: " + ", ".join(f"{k} x{n}" for k, n in o.errors.most_common()))
        for sample in o.samples:
            print(f"  e.g. {sample}")
        for line in r.log_tail:
            print(f"  gunicorn log: {line}")

    onboarded = len(r.writers.onboarded)
    print(
        f"\n## Data safety ({len(r.writers.users) - onboarded} data-set users with tokens + {onboarded} onboarded "
        f"with POST /users; "
        f"{s.hot_pairs} hot (user, movie) pairs, every client rating one of them every {cfg.burst_every_s:g} s)\n"
    )
    print("| check | count | expected |")
    print("|---|---|---|")
    checks = [
        ("acknowledged writes (200 with event.id)", f"{s.acknowledged:,}", ""),
        ("events stored by the run", f"{s.stored:,}", "acknowledged + errored-but-stored"),
        ("writes that errored (no acknowledgement)", f"{len(o.errored_writes):,}", "0"),
        (
            "... of them sent before any write of their user was acknowledged (profile not created yet)",
            f"{s.errored_first:,}",
            "",
        ),
        (
            "writes sent twice by the client (keep-alive connection dropped)",
            f"{len(o.retried_writes):,}",
            "0",
        ),
        ("acknowledged events stored more than once (duplicates)", f"{s.duplicates}", "0"),
        ("acknowledged events not stored (missing)", f"{s.missing}", "0"),
        (
            "stored, not acknowledged, its request errored",
            f"{s.unacked_errored}",
            "<= errored writes",
        ),
        ("stored, not acknowledged, unexplained", f"{s.unacked_unexplained}", "0"),
        ("profiles with rev != number of events", f"{s.rev_mismatch}", "0"),
        ("acknowledged rev != the event's position in `events`", f"{s.ack_position_mismatch}", "0"),
        (
            "profiles whose ratings/feedback != their events replayed in order",
            f"{s.replay_mismatch}",
            "0",
        ),
        ("acknowledged concurrent ratings of the hot pairs", f"{s.hot_writes:,}", ""),
        (
            "most of them in flight at once on one pair (max / mean per burst)",
            f"{s.max_in_flight} / {s.mean_in_flight:.1f}",
            f"up to {cfg.clients}",
        ),
        ("hot pairs whose stored rating != the last event's rating", f"{s.hot_violations}", "0"),
    ]
    for name, value, expected in checks:
        print(f"| {name} | {value} | {expected} |")

    print(
        f"\nCPU during the measured window, in cores (CPU seconds / {cfg.seconds:g} s; the machine has "
        f"{psutil.cpu_count()}); 'other' is everything else running on the machine meanwhile:\n"
    )
    names = [
        k for k in ("load generator", "gunicorn", "store server", "other processes") if k in r.cpu_s
    ]
    print("| " + " | ".join(names) + " | CPU ms per answered request: gunicorn / store server |")
    print("|" + "---|" * (len(names) + 1))
    per = " / ".join(
        f"{1000 * r.cpu_s.get(k, 0.0) / max(measured, 1):.2f}" for k in ("gunicorn", "store server")
    )
    print("| " + " | ".join(f"{r.cpu_s[k] / cfg.seconds:.2f}" for k in names) + f" | {per} |")
    print(
        f"\nresult: {'PASS' if r.ok else 'FAIL'} ({r.errors} errors, {s.failures} data-safety failures)"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, default=60.0, help="measured seconds (default: 60)")
    p.add_argument(
        "--warmup", type=float, default=3.0, help="seconds of load before measuring (default: 3)"
    )
    p.add_argument(
        "--clients", type=int, default=32, help="concurrent keep-alive connections (default: 32)"
    )
    p.add_argument(
        "--client-procs", type=int, default=4, help="load-generator processes (default: 4)"
    )
    p.add_argument(
        "--write-share",
        type=float,
        default=0.2,
        help="share of writes among all requests, bursts included (default: 0.2)",
    )
    p.add_argument(
        "--burst-every",
        type=float,
        default=1.0,
        help="seconds between bursts of every client rating one hot pair (0: none; default: 1)",
    )
    p.add_argument(
        "--writers", type=int, default=40, help="data-set users given tokens (default: 40)"
    )
    p.add_argument(
        "--onboard", type=int, default=4, help="users onboarded with POST /users (default: 4)"
    )
    p.add_argument("--hot", type=int, default=8, help="hot (user, movie) pairs (default: 8)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (default: 2)")
    p.add_argument(
        "--threads", type=int, default=16, help="threads per gthread worker (default: 16)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--mongodb-url", default=None, help="an already loaded store (default: start and load one)"
    )
    args = p.parse_args(argv)

    cfg = SoakConfig(
        clients=args.clients,
        procs=args.client_procs,
        seconds=args.seconds,
        warmup_s=args.warmup,
        write_share=args.write_share,
        burst_every_s=args.burst_every,
        seed=args.seed,
    )
    server = ServerConfig(
        workers=args.workers,
        threads=args.threads,
        env=(("GUNICORN_CMD_ARGS", "--no-control-socket"),),
    )
    env = bench_env()
    with (
        tempfile.TemporaryDirectory(prefix="mt-bench-soak-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(tmp)
        url, store_pid, note = bench_store(stack, tmp, env, args.mongodb_url)
        result = soak(
            url,
            cfg,
            server,
            tmp / "gunicorn.log",
            store_pid=store_pid,
            n_writers=args.writers,
            n_onboard=args.onboard,
            n_hot=args.hot,
            cleanup=bool(args.mongodb_url),
        )
        print_report(result)
        print(f"- {note}")
        return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

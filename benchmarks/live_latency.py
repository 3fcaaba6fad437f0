"""Latency of the live paths of issue 4: onboarding to first recommendations, feedback to
updated recommendations, and the server-side re-score time (target: 20 ms).

    python -m benchmarks.live_latency [--users 100] [--events 3] [--concurrent 8]
    python -m benchmarks.live_latency --mongodb-url "mongodb://127.0.0.1:27018/movietime?directConnection=true"

Steps:

1. The store: a fresh SecantusDB server (durable) loaded by ``python -m pipeline -q run
   --no-evaluate`` with the bundled ml-latest-small (``benchmarks.api_load``'s helpers), or
   ``--mongodb-url``, already loaded. That store is written to (new users, tokens, events): the
   benchmark deletes the profiles and accounts it made at the end, and never picks a data-set
   user that already has a profile or an account. ``--profiles N`` first adds N small profiles of
   other users, as a deployment with many live users has (deleted at the end too): on SecantusDB
   the write of an event (``find_one_and_update`` by ``_id``) costs more as ``profiles`` grows.
2. The API under gunicorn with ``api/gunicorn_conf.py`` (default gthread, 2 workers x 2
   threads, as ``api_load``), on loopback. Its access log records each request's server-side
   time (gunicorn's ``%(D)s``, from the parsed request to the written response) under the
   ``X-Bench-Id`` header the client sends, so every HTTP figure has a client (wall) and a server
   side. Before measuring, users are onboarded on new connections until every worker has served
   one: each worker's first live request (it loads the ``LiveModel`` from the store) is reported
   on its own.
3. Sessions over HTTP, one client at a time. A session is one keep-alive connection, as a
   browser's: all of a user's requests reach one worker, whose cache makes the repeat GET a hit
   (another worker would re-score once more for itself).

   * new user: ``POST /users`` with a random questionnaire (3 random genres, 0 to 10 ratings of
     popular movies drawn from ml-latest-small's rating distribution): its answer holds the first
     list; then the first ``GET /user/<id>/recommendation``;
   * data-set user (token from ``contract.accounts.issue_token``; random users, grouped by
     history size): the GET of the precomputed list;
   * then ``--events`` times: a rating (half of the events) or a like / dislike / not_interested
     of a movie of the current list, the next GET (re-scored: a cache miss by construction, the
     write raised the profile's rev) and a repeat GET (cache hit).

   Checks, counted (expected: 0 violations): every movie the user rated or reacted to is absent
   from the next list, the repeat GET gives the re-scored list again, the first GET after
   onboarding gives the onboarding answer's list, onboarding lists exclude the questionnaire's
   rated movies, lists of users with a profile are labelled ``live``.
4. ``--concurrent`` clients (threads over ``--client-procs`` processes) run the same sessions
   on other users at once: latency under contention, labelled as such.
5. In-process (no HTTP): for data-set users with about 20, 200 and 2,000 ratings (``--sizes``)
   and new users, ``contract.live_model.recommend_live`` alone (the scoring), the API's whole
   re-score path ``api.services.recommendations.live_items`` (training ratings read from the store,
   signals, similar lists, scoring, reasons, movie details) with a fresh rev each time, and the
   app's WSGI callable on the sessions of step 3 (write, then the re-scoring GET). And the
   first live request of a fresh process: the ``LiveModel`` load from the store alone, then a
   whole first ``live_items``.

CPU seconds of the benchmark's client, gunicorn, the store server and every other process on
the machine are read (psutil) over each phase and printed as cores: "other" above about 0.2 of
a core means the machine was busy and the figures are slower than on an idle one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import multiprocessing as mp
import queue as queue_mod
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

from benchmarks._util import (
    REPO,
    bench_env,
    bench_store,
    run_threads,
)
from benchmarks.api_load import (
    HTTPConnection,
    ServerConfig,
    gunicorn,
    tree_cpu,
)

TARGET_MS = 20.0
ACTIONS = ("like", "dislike", "not_interested")
HALF_STARS = np.arange(1, 11) / 2.0
#: ml-latest-small's share of each rating 0.5 .. 5 (rounded): questionnaire ratings follow it.
RATING_SHARES = np.array([1.4, 2.8, 1.8, 7.5, 5.5, 19.9, 13.0, 26.6, 8.5, 13.1])
RATING_SHARES = RATING_SHARES / RATING_SHARES.sum()
#: Access log line: "<bench id> <pid> <status> <microseconds>" (see ``server_config``).
ACCESS_FORMAT = "%({x-bench-id}i)s %(p)s %(s)s %(D)s"
_ACCESS_RE = re.compile(r"^(\S+) <(\d+)> (\d+) (\d+)$")

# step names (rows of the tables)
ONBOARD = "POST /users (its answer holds the first list)"
FIRST_GET = "first GET /user/<id>/recommendation"
PRECOMPUTED_GET = "GET before feedback (precomputed list)"
WRITE_RATING = "POST /user/<id>/ratings"
WRITE_FEEDBACK = "POST /user/<id>/feedback"
RESCORE_GET = "next GET (re-scored: cache miss)"
REPEAT_GET = "repeat GET (cache hit)"
FEEDBACK_TO_LIST = "feedback to updated list (write + next GET)"
READ_USER = "read the training ratings (store.user, part of live_items)"
COMPUTE = "recommend_live (scoring only, part of live_items)"
LIVE_ITEMS = "live_items (the API's whole re-score path, fresh rev)"
STEP_ORDER = (
    ONBOARD,
    FIRST_GET,
    PRECOMPUTED_GET,
    WRITE_RATING,
    WRITE_FEEDBACK,
    RESCORE_GET,
    REPEAT_GET,
    FEEDBACK_TO_LIST,
    READ_USER,
    COMPUTE,
    LIVE_ITEMS,
)
NEW_USERS = "new users (3 genres, 0-10 ratings)"


# --- recording -----------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: bytes
    wall_ms: float
    rid: str | None = None  # X-Bench-Id (HTTP), to find the server-side time in the access log
    server_ms: float | None = None  # known at once in-process; from the access log over HTTP

    def json(self):
        return json.loads(self.body)


@dataclass
class Sample:
    group: str
    step: str
    wall_ms: float
    rids: tuple[str, ...] = ()  # the requests it is made of (a derived step sums two)
    server_ms: float | None = None


@dataclass
class Recorder:
    """Samples, checks (name -> [checked, violated]), violation and error examples, and the ids of
    the users whose profile or account the run created (to delete them from a given store)."""

    samples: list[Sample] = field(default_factory=list)
    checks: dict[str, list[int]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    touched: set[int] = field(default_factory=set)
    requests: int = 0

    def add(self, group: str, step: str, *answers: Answer) -> None:
        server = [a.server_ms for a in answers]
        self.samples.append(
            Sample(
                group,
                step,
                sum(a.wall_ms for a in answers),
                tuple(a.rid for a in answers if a.rid),
                sum(server) if all(s is not None for s in server) else None,
            )
        )

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        counts = self.checks.setdefault(name, [0, 0])
        counts[0] += 1
        if not ok:
            counts[1] += 1
            if len(self.violations) < 10:
                self.violations.append(f"{name}: {detail}")

    def expect(self, answer: Answer, status: int, what: str) -> dict | None:
        """The answer's JSON when it has ``status``, else None and an error."""
        self.requests += 1
        if answer.status == status:
            with contextlib.suppress(ValueError):
                return answer.json()
        self.errors.append(f"{what}: HTTP {answer.status} {answer.body[:160]!r}")
        return None

    def merge(self, other: "Recorder") -> None:
        self.samples += other.samples
        for name, (n, bad) in other.checks.items():
            counts = self.checks.setdefault(name, [0, 0])
            counts[0] += n
            counts[1] += bad
        self.violations += other.violations[: max(0, 10 - len(self.violations))]
        self.errors += other.errors
        self.touched |= other.touched
        self.requests += other.requests

    def to_plain(self) -> tuple:
        """Builtins only, for a multiprocessing queue (the classes of a ``-m`` main module do not
        unpickle in the parent)."""
        return (
            [(s.group, s.step, s.wall_ms, s.rids, s.server_ms) for s in self.samples],
            self.checks,
            self.violations,
            self.errors,
            self.touched,
            self.requests,
        )

    @classmethod
    def from_plain(cls, plain: tuple) -> "Recorder":
        samples, checks, violations, errors, touched, requests = plain
        return cls([Sample(*s) for s in samples], checks, violations, errors, touched, requests)

    def fill_server_times(self, times: Mapping[str, tuple[int, int, float]]) -> None:
        """Server-side ms of HTTP samples from the access log (rid -> (pid, status, ms))."""
        for s in self.samples:
            if s.server_ms is None and s.rids and all(r in times for r in s.rids):
                s.server_ms = sum(times[r][2] for r in s.rids)


# --- callers: the same sessions over HTTP or in-process ------------------------------------------

Caller = Callable[..., Answer]  # (method, path, body=None, token=None) -> Answer


class HTTPCaller:
    """One keep-alive connection (``api_load.HTTPConnection``); every request carries an
    ``X-Bench-Id`` so its server-side time can be read from the access log."""

    def __init__(self, port: int, prefix: str, host: str = "127.0.0.1", timeout_s: float = 30.0):
        self.conn = HTTPConnection(host, port, timeout_s)
        self.host, self.prefix = host, prefix
        self.seq = 0

    def __call__(self, method: str, path: str, body=None, token: str | None = None) -> Answer:
        self.seq += 1
        rid = f"{self.prefix}.{self.seq}"
        payload = json.dumps(body).encode() if body is not None else b""
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nX-Bench-Id: {rid}\r\n"
        if token:
            head += f"Authorization: Bearer {token}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        request = head.encode() + b"\r\n" + payload
        t0 = time.perf_counter_ns()
        try:
            status, data = self.conn.get(request)
        except (OSError, ValueError, IndexError) as exc:
            self.conn.close()
            status, data = 0, f"{type(exc).__name__}: {exc}".encode()
        return Answer(status, data, (time.perf_counter_ns() - t0) / 1e6, rid)

    def close(self) -> None:
        self.conn.close()


class WSGICaller:
    """The app's WSGI callable in this process: no HTTP, no gunicorn (server ms = wall ms)."""

    def __init__(self, app):
        self.app = app

    def __call__(self, method: str, path: str, body=None, token: str | None = None) -> Answer:
        path, _, query = path.partition("?")
        payload = json.dumps(body).encode() if body is not None else b""
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.input": io.BytesIO(payload),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        if body is not None:
            environ.update(CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(payload)))
        if token:
            environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        seen: dict = {}
        t0 = time.perf_counter_ns()
        out = self.app(environ, lambda status, headers, exc_info=None: seen.update(status=status))
        try:
            data = b"".join(out)
        finally:
            if hasattr(out, "close"):
                out.close()
        ms = (time.perf_counter_ns() - t0) / 1e6
        return Answer(int(seen["status"].split()[0]), data, ms, None, ms)

    def close(self) -> None:
        pass


# --- what the sessions need from the store -------------------------------------------------------


@dataclass
class Facts:
    """The served version's genres, popular movies and data-set users (id -> number of ratings)
    that have neither a profile nor an account (so the benchmark can write as them)."""

    version: str
    genres: list[str]
    popular: list[int]
    users: dict[int, int]


def read_facts(settings) -> Facts:
    from api.store.serving import ServingStore
    from contract import schema

    store = ServingStore(settings)
    try:
        pointer = store.pointer()
        info = store.model(pointer)
        busy = {
            d["_id"]
            for name in (schema.PROFILES, schema.ACCOUNTS)
            for d in store.online(name).find({}, {"_id": 1})
        }
        users = {
            int(d["_id"]): int((d.get("stats") or {}).get("n_ratings") or 0)
            for d in store.collection(pointer, schema.USERS).find(
                {}, {"_id": 1, "stats.n_ratings": 1}
            )
            if d["_id"] not in busy
        }
        genres = [g for g in info.genres if not g.startswith("(")]  # not "(no genres listed)"
        return Facts(pointer["version"], genres, list(info.popular), users)
    finally:
        store.close()


def issue_tokens(settings, user_ids: Iterable[int]) -> dict[int, str]:
    """A token for each data-set user (``contract.accounts.issue_token``, as an operator would)."""
    import pymongo

    from contract.accounts import issue_token

    client = pymongo.MongoClient(settings.mongodb_url, serverSelectionTimeoutMS=10_000)
    try:
        db = _database(client, settings)
        return {int(u): issue_token(db, int(u), origin="benchmark") for u in user_ids}
    finally:
        client.close()


SIZE_GROUPS = (
    "data-set users, < 50 ratings",
    "data-set users, 50-499 ratings",
    "data-set users, 500+ ratings",
)


def size_group(n_ratings: int) -> str:
    return SIZE_GROUPS[(n_ratings >= 50) + (n_ratings >= 500)]


def group_order(groups: Iterable[str]) -> list[str]:
    """New users first, then data-set users by history size."""

    def key(g: str):
        if g == NEW_USERS:
            return (0, 0)
        if g in SIZE_GROUPS:
            return (1, SIZE_GROUPS.index(g))
        m = re.search(r"~([\d,]+)", g)
        return (2, int(m[1].replace(",", "")) if m else 0)

    return sorted(dict.fromkeys(groups), key=key)


def pick_sized(
    users: Mapping[int, int], targets: Iterable[int], per_size: int, exclude: Iterable[int] = ()
) -> dict[str, list[int]]:
    """For each target history size, the ``per_size`` users whose number of ratings is closest
    (no user twice); labelled with the actual range."""
    taken = set(exclude)
    out = {}
    for target in targets:
        pool = sorted((abs(n - target), u) for u, n in users.items() if u not in taken)[:per_size]
        picked = [u for _, u in pool]
        if not picked:
            continue
        taken.update(picked)
        sizes = [users[u] for u in picked]
        out[f"data-set users, ~{target:,} ratings ({min(sizes):,}-{max(sizes):,})"] = picked
    return out


# --- sessions ------------------------------------------------------------------------------------


@dataclass
class Plan:
    genres: list[str]
    popular: list[int]
    n: int = 10  # list length asked for
    events: int = 3  # writes per user


def questionnaire(rng: random.Random, plan: Plan) -> dict:
    k = rng.randint(0, 10)
    movies = rng.sample(plan.popular, min(k, len(plan.popular)))
    ratings = [
        float(r)
        for r in np.random.default_rng(rng.getrandbits(32)).choice(
            HALF_STARS, len(movies), p=RATING_SHARES
        )
    ]
    return {
        "genres": rng.sample(plan.genres, 3),
        "ratings": [{"movieId": int(m), "rating": r} for m, r in zip(movies, ratings)],
    }


def _ids(doc: Mapping) -> list[int]:
    return [int(item["movieId"]) for item in doc.get("recommendations") or ()]


def feedback_cycles(
    call: Caller,
    rec: Recorder,
    rng: random.Random,
    plan: Plan,
    group: str,
    user_id: int,
    token: str,
    current: list[int],
    acted: set[int],
) -> None:
    """``plan.events`` times: a write about a movie of the current list, the next GET (re-scored)
    and a repeat GET; checks that every movie acted on is gone and the repeat gives the same list."""
    get = f"/user/{user_id}/recommendation?n={plan.n}"
    for _ in range(plan.events):
        if not current:
            rec.errors.append(f"user {user_id}: empty list, nothing to react to")
            return
        movie = rng.choice(current)
        if rng.random() < 0.5:
            step, path = WRITE_RATING, f"/user/{user_id}/ratings"
            body = {"movieId": movie, "rating": float(rng.choice(HALF_STARS))}
        else:
            step, path = WRITE_FEEDBACK, f"/user/{user_id}/feedback"
            body = {"movieId": movie, "action": rng.choice(ACTIONS)}
        write = call("POST", path, body, token)
        if rec.expect(write, 200, step) is None:
            return
        acted.add(movie)
        rec.add(group, step, write)
        nxt = call("GET", get)
        doc = rec.expect(nxt, 200, RESCORE_GET)
        if doc is None:
            return
        rec.add(group, RESCORE_GET, nxt)
        rec.add(group, FEEDBACK_TO_LIST, write, nxt)
        current = _ids(doc)
        back = acted & set(current)
        rec.check(
            "every movie rated or reacted to is gone from the next list",
            not back,
            f"user {user_id}: {sorted(back)} after {body}",
        )
        rec.check(
            "lists of users with a profile are labelled live",
            doc.get("source") == "live",
            f"user {user_id}: source {doc.get('source')!r}",
        )
        again = call("GET", get)
        doc2 = rec.expect(again, 200, REPEAT_GET)
        if doc2 is None:
            return
        rec.add(group, REPEAT_GET, again)
        rec.check(
            "the repeat GET gives the re-scored list again",
            _ids(doc2) == current,
            f"user {user_id}: {_ids(doc2)} != {current}",
        )


def new_user_session(
    call: Caller, rec: Recorder, rng: random.Random, plan: Plan, group: str = NEW_USERS
) -> None:
    body = questionnaire(rng, plan)
    answer = call("POST", f"/users?n={plan.n}", body)
    doc = rec.expect(answer, 201, "POST /users")
    if doc is None:
        return
    user_id, token, first = int(doc["userId"]), doc["token"], _ids(doc)
    rec.touched.add(user_id)
    rec.add(group, ONBOARD, answer)
    rated = {r["movieId"] for r in body["ratings"]}
    rec.check(
        "onboarding lists exclude the questionnaire's rated movies",
        not rated & set(first),
        f"user {user_id}: {sorted(rated & set(first))}",
    )
    rec.check(
        "onboarding answers a full list",
        len(first) == plan.n,
        f"user {user_id}: {len(first)} items",
    )
    get = call("GET", f"/user/{user_id}/recommendation?n={plan.n}")
    doc = rec.expect(get, 200, FIRST_GET)
    if doc is None:
        return
    rec.add(group, FIRST_GET, get)
    rec.check(
        "the first GET gives the onboarding answer's list",
        _ids(doc) == first,
        f"user {user_id}: {_ids(doc)} != {first}",
    )
    feedback_cycles(call, rec, rng, plan, group, user_id, token, first, set(rated))


def dataset_user_session(
    call: Caller,
    rec: Recorder,
    rng: random.Random,
    plan: Plan,
    group: str,
    user_id: int,
    token: str,
) -> None:
    get = call("GET", f"/user/{user_id}/recommendation?n={plan.n}")
    doc = rec.expect(get, 200, PRECOMPUTED_GET)
    if doc is None:
        return
    rec.touched.add(user_id)
    rec.add(group, PRECOMPUTED_GET, get)
    feedback_cycles(call, rec, rng, plan, group, user_id, token, _ids(doc), set())


def run_sessions(
    new_caller: Callable[[], Caller],
    plan: Plan,
    new_users: int,
    dataset_users: list[tuple[str, int, str]],
    seed,
) -> Recorder:
    """New-user and data-set-user sessions, interleaved, one at a time; each on a caller of its
    own from ``new_caller()`` (over HTTP: a connection per session). ``dataset_users`` holds
    (group, userId, token)."""
    rec = Recorder()
    rng = random.Random(f"live-latency/{seed}")
    todo = [("new", None)] * new_users
    todo = [
        x
        for pair in itertools.zip_longest(todo, [("data", u) for u in dataset_users])
        for x in pair
        if x
    ]
    for kind, user in todo:
        call = new_caller()
        try:
            if kind == "new":
                new_user_session(call, rec, rng, plan)
            else:
                group, user_id, token = user
                dataset_user_session(call, rec, rng, plan, group, user_id, token)
        finally:
            call.close()
    return rec


# --- server-side re-score time, in-process -------------------------------------------------------


def rescore_in_process(
    settings, plan: Plan, sized: Mapping[str, list[int]], new_users: int, repeats: int, seed
) -> Recorder:
    """``recommend_live`` alone and the API's whole re-score path ``live_items`` (a fresh rev
    each time: always a cache miss), ``repeats`` times per group, in this process. A data-set
    user's profile likes one movie of their precomputed list; a new user's is a questionnaire."""
    from api.services.live import NEW_USER_BASE, read_training_ratings, signals
    from api.services.recommendations import ListRequest, live_items
    from api.store.serving import ServingStore
    from contract.live_model import recommend_live

    rng = random.Random(f"rescore/{seed}")
    store = ServingStore(settings)
    rec = Recorder()
    revs = itertools.count(1_000_000)
    try:
        pointer = store.pointer()
        model = store.live_model(pointer)
        cases: dict[str, list[tuple[int, Callable[[], dict]]]] = {}
        for group, users in sized.items():
            for uid in users:
                top = [
                    int(e["movieId"])
                    for e in (store.user(pointer, uid, ("top",)) or {}).get("top") or ()
                ][:10]

                def like_one(top=top) -> dict:
                    return {
                        "rev": next(revs),
                        "ratings": {},
                        "feedback": {str(rng.choice(top)): "like"},
                    }

                cases.setdefault(group, []).append((uid, like_one))
        for k in range(new_users):
            answers = questionnaire(rng, plan)

            def onboarded(answers=answers) -> dict:
                return {
                    "rev": next(revs),
                    "ratings": {str(r["movieId"]): r["rating"] for r in answers["ratings"]},
                    "feedback": {},
                    "genres": answers["genres"],
                }

            # ids far above the ones POST /users gives: no users document, no stored profile
            cases.setdefault(NEW_USERS, []).append((NEW_USER_BASE + 900_000_000 + k, onboarded))
        for (
            users
        ) in cases.values():  # as in a warm worker: the live model loaded, movie details cached
            for uid, make_profile in users:
                live_items(store, pointer, uid, make_profile(), ListRequest(plan.n))
        for group, users in cases.items():
            for i in range(repeats):
                uid, make_profile = users[i % len(users)]
                profile = make_profile()
                t0 = time.perf_counter_ns()
                base = read_training_ratings(store, pointer, uid)
                ms = (time.perf_counter_ns() - t0) / 1e6
                rec.add(group, READ_USER, Answer(200, b"", ms, None, ms))
                sig = signals(base, profile)
                neighbors = model.similar_lists(list(sig.boost_sources or {}))
                t0 = time.perf_counter_ns()
                recommend_live(model, sig, 50, neighbors)
                ms = (time.perf_counter_ns() - t0) / 1e6
                rec.add(group, COMPUTE, Answer(200, b"", ms, None, ms))
                profile = make_profile()
                t0 = time.perf_counter_ns()
                items = live_items(store, pointer, uid, profile, ListRequest(plan.n))
                ms = (time.perf_counter_ns() - t0) / 1e6
                rec.add(group, LIVE_ITEMS, Answer(200, b"", ms, None, ms))
                liked = {int(m) for m in profile["feedback"]} | {int(m) for m in profile["ratings"]}
                rec.check(
                    "every movie rated or reacted to is gone from the next list",
                    not liked & {it["movieId"] for it in items},
                    f"user {uid} (in-process)",
                )
    finally:
        store.close()
    return rec


def cold_start(settings, user_id: int, repeats: int = 3) -> dict[str, list[float]]:
    """The first live request of a fresh process, in ms: the ``LiveModel`` load from the store
    alone (``ServingStore.live_model``), and a whole first ``live_items`` on a fresh store (the
    load, the user's and the similar movies' reads, cold caches)."""
    from api.services.recommendations import ListRequest, live_items
    from api.store.serving import ServingStore

    out: dict[str, list[float]] = {
        "LiveModel load from the store": [],
        "first live_items of a fresh process (load included)": [],
    }
    for k in range(repeats):
        for what in out:
            store = ServingStore(settings)
            try:
                pointer = store.pointer()
                top = (store.user(pointer, user_id, ("top",)) or {}).get("top") or [{"movieId": 1}]
                profile = {
                    "rev": 1,
                    "ratings": {},
                    "feedback": {str(top[k % len(top)]["movieId"]): "like"},
                }
                t0 = time.perf_counter_ns()
                if what.startswith("LiveModel"):
                    store.live_model(pointer)
                else:
                    live_items(store, pointer, user_id, profile, ListRequest(10))
                out[what].append((time.perf_counter_ns() - t0) / 1e6)
            finally:
                store.close()
    return out


def wsgi_app(settings):
    from api.app import create_app

    return create_app(settings)


# --- CPU accounting ------------------------------------------------------------------------------


class CpuMeter:
    """CPU seconds of named parts (callables returning CPU seconds so far) and of the whole
    machine over a window; ``cores()`` gives each as cores, with "other processes" the rest."""

    def __init__(self, parts: Mapping[str, Callable[[], float]]):
        self.parts = dict(parts)

    @staticmethod
    def machine() -> float:
        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    def _sample(self) -> dict[str, float]:
        out = {}
        for name, read in self.parts.items():
            with contextlib.suppress(psutil.Error):
                out[name] = read()
        out["machine"] = self.machine()
        return out

    def __enter__(self):
        self.t0, self.before = time.perf_counter(), self._sample()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self.after = self._sample()

    def cores(self) -> dict[str, float]:
        used = {k: self.after[k] - self.before[k] for k in self.after if k in self.before}
        machine = used.pop("machine")
        used["other processes"] = max(0.0, machine - sum(used.values()))
        return {k: v / max(self.seconds, 1e-9) for k, v in used.items()}


def own_cpu() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


# --- concurrent clients --------------------------------------------------------------------------


def _client_process(
    port: int, plan: Plan, jobs: list[tuple[int, list]], begin_at: float, queue
) -> None:
    """One load-generator process: a thread per client, each running its sessions."""
    out: list[Recorder] = [Recorder() for _ in jobs]

    def client(k: int, index: int, new_users: int, dataset_users: list) -> None:
        counter = itertools.count()
        out[k] = run_sessions(
            lambda: HTTPCaller(port, f"c{index}.{next(counter)}"),
            plan,
            new_users,
            dataset_users,
            f"concurrent/{index}",
        )

    time.sleep(max(0.0, begin_at - time.perf_counter()))
    run_threads(client, [(k, index, new, data) for k, (index, (new, data)) in enumerate(jobs)])
    merged = Recorder()
    for r in out:
        merged.merge(r)
    queue.put(merged.to_plain())


def run_concurrent(
    port: int,
    plan: Plan,
    clients: int,
    procs: int,
    new_users: int,
    dataset_users: list[tuple[str, int, str]],
    watch: Mapping[str, Callable[[], float]],
    timeout_s: float = 900.0,
) -> tuple[Recorder, CpuMeter]:
    """``clients`` clients at once (threads over ``procs`` spawned processes), the users split
    between them; CPU measured from the common start to the last client's end."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    jobs = [
        (i, (new_users // clients + (i < new_users % clients), dataset_users[i::clients]))
        for i in range(clients)
    ]
    procs = max(1, min(procs, clients))
    begin_at = time.perf_counter() + 4.0  # spawned processes import numpy before they can start
    children = [
        ctx.Process(
            target=_client_process, args=(port, plan, jobs[p::procs], begin_at, queue), daemon=True
        )
        for p in range(procs)
    ]
    for c in children:
        c.start()
    pids = [c.pid for c in children]
    meter = CpuMeter({**watch, "benchmark client": lambda: tree_cpu(pids)})
    time.sleep(max(0.0, begin_at - time.perf_counter()))
    rec = Recorder()
    with meter:
        deadline = time.monotonic() + timeout_s
        got = 0
        while got < procs and time.monotonic() < deadline:
            with contextlib.suppress(queue_mod.Empty):
                rec.merge(Recorder.from_plain(queue.get(timeout=1.0)))
                got += 1
    for c in children:
        c.join(5)
        if c.is_alive():
            c.kill()
    if got < procs:
        rec.errors.append(f"{procs - got} client process(es) did not report")
    return rec, meter


# --- the access log ------------------------------------------------------------------------------


def server_config(
    workers: int,
    worker_class: str,
    threads: int,
    access_log: Path,
    env: Mapping[str, str] | None = None,
) -> ServerConfig:
    """The API under gunicorn with ``api/gunicorn_conf.py``; the access log (in a file, one line
    per request: bench id, worker pid, status, microseconds) set through ``GUNICORN_CMD_ARGS``,
    which overrides the config file. ``env``: more variables for the server (e.g.
    ``MOVIETIME_DATABASE``)."""
    args = f"--access-logfile {access_log} --access-logformat '{ACCESS_FORMAT}'"
    return ServerConfig(
        workers=workers,
        worker_class=worker_class,
        threads=threads,
        config_file=str(REPO / "api" / "gunicorn_conf.py"),
        env=(("GUNICORN_CMD_ARGS", args), *(env or {}).items()),
    )


def read_access_log(
    path: Path,
) -> tuple[dict[str, tuple[int, int, float]], list[tuple[str, int, int, float]]]:
    """rid -> (pid, status, server ms), and every line in order."""
    times, lines = {}, []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            m = _ACCESS_RE.match(line.strip())
            if m:
                row = (m[1], int(m[2]), int(m[3]), int(m[4]) / 1000.0)
                lines.append(row)
                if row[0] != "-":
                    times[row[0]] = row[1:]
    return times, lines


def warm_workers(
    port: int, plan: Plan, workers: int, access_log: Path, seed, tries: int = 30
) -> tuple[Recorder, list]:
    """Onboard users, each on a new connection, until every worker served one (each worker's
    first live request loads the LiveModel). Returns the recorder and, per worker, the
    server-side ms of its first live request."""
    rec = Recorder()
    rng = random.Random(f"warm/{seed}")
    firsts: dict[int, float] = {}
    for k in range(tries):
        call = HTTPCaller(port, f"w.{k}")
        try:
            answer = call("POST", f"/users?n={plan.n}", questionnaire(rng, plan))
            doc = rec.expect(answer, 201, "warm-up POST /users")
            if doc is not None:
                rec.touched.add(int(doc["userId"]))
        finally:
            call.close()
        time.sleep(0.05)  # the access log line is written after the response
        times, _ = read_access_log(access_log)
        if answer.rid in times:
            pid, _, ms = times[answer.rid]
            firsts.setdefault(pid, ms)
        if len(firsts) >= workers:
            break
    return rec, sorted(firsts.values(), reverse=True)


# --- printing ------------------------------------------------------------------------------------


def _pct(values: list[float]) -> str:
    if not values:
        return "| - | - | - | - "
    a = np.asarray(values)
    return (
        "| "
        + " | ".join(
            f"{v:.1f}" if v >= 10 else f"{v:.2f}"
            for v in (*np.percentile(a, [50, 90, 99]), a.max())
        )
        + " "
    )


def print_table(
    title: str, rec: Recorder, server: bool = True, steps: Iterable[str] = STEP_ORDER
) -> None:
    """p50/p90/p99/max in ms per (group, step): client wall time, and server side when known."""
    print(f"\n## {title}\n")
    head = "| user group | step | count | p50 ms | p90 ms | p99 ms | max ms |"
    rule = "|---|---|---|---|---|---|---|"
    if server:
        head += " server p50 | server p90 | server p99 | server max |"
        rule += "---|---|---|---|"
    print(head)
    print(rule)
    for group in group_order(s.group for s in rec.samples):
        for step in steps:
            rows = [s for s in rec.samples if s.group == group and s.step == step]
            if not rows:
                continue
            line = f"| {group} | {step} | {len(rows):,} " + _pct([s.wall_ms for s in rows])
            if server:
                line += _pct([s.server_ms for s in rows if s.server_ms is not None])
            print(line + "|")


def print_checks(rec: Recorder) -> None:
    print("\n| check | checked | violations |\n|---|---|---|")
    for name, (n, bad) in rec.checks.items():
        print(f"| {name} | {n:,} | {bad} |")
    print(f"| requests answered with an unexpected status | {rec.requests:,} | {len(rec.errors)} |")
    for v in rec.violations:
        print(f"  violation: {v}")
    for e in rec.errors[:5]:
        print(f"  error: {e}")


def target_lines(label: str, rec: Recorder, step: str = RESCORE_GET) -> list[str]:
    """Per group: is the server-side p99 of ``step`` within the issue's 20 ms?"""
    out = []
    for group in group_order(s.group for s in rec.samples):
        ms = [
            s.server_ms
            for s in rec.samples
            if s.group == group and s.step == step and s.server_ms is not None
        ]
        if ms:
            p99 = float(np.percentile(ms, 99))
            out.append(
                f'- {label}, {group}: server-side p99 of "{step}" {p99:.1f} ms: within {TARGET_MS:g} ms '
                f"{'yes' if p99 <= TARGET_MS else 'NO'}"
            )
    return out


def print_cpu(phases: list[tuple[str, CpuMeter]]) -> None:
    names = list(dict.fromkeys(k for _, m in phases for k in m.cores() if k != "other processes"))
    print(
        f"\n## CPU per phase, in cores (CPU seconds / phase seconds; the machine has {psutil.cpu_count()}); "
        "'other processes' is everything else running on the machine meanwhile\n"
    )
    print("| phase | seconds | " + " | ".join(names) + " | other processes |")
    print("|---|---|" + "---|" * len(names) + "---|")
    for label, m in phases:
        c = m.cores()
        print(
            f"| {label} | {m.seconds:.0f} | "
            + " | ".join(f"{c[k]:.2f}" if k in c else "-" for k in names)
            + f" | {c.get('other processes', 0.0):.2f} |"
        )


def busy_note(phases: list[tuple[str, CpuMeter]]) -> str:
    other = max((m.cores().get("other processes", 0.0) for _, m in phases), default=0.0)
    if other > 0.2:
        return (
            f"the machine was BUSY: other processes used up to {other:.2f} of its {psutil.cpu_count()} cores "
            "during a phase; latencies are higher than on an idle machine"
        )
    return f"the machine was quiet: other processes used at most {other:.2f} of a core"


# --- main ----------------------------------------------------------------------------------------


#: Filler profiles (``--profiles``) get ids from here: far above those ``POST /users`` gives.
FILLER_BASE = 1_500_000_000


def _database(client, settings):
    from api.settings import DEFAULT_DATABASE

    return (
        client.get_database(settings.database)
        if settings.database
        else client.get_default_database(DEFAULT_DATABASE)
    )


def add_filler_profiles(settings, n: int, chunk: int = 1000) -> None:
    """``n`` small profile documents of users that never come back, as a deployment with many
    live users has: the store's cost of a write can depend on the collection's size."""
    import pymongo

    from contract import schema

    client = pymongo.MongoClient(settings.mongodb_url, serverSelectionTimeoutMS=10_000)
    try:
        col = _database(client, settings)[schema.PROFILES]
        for lo in range(0, n, chunk):
            col.insert_many(
                [
                    {
                        "_id": FILLER_BASE + i,
                        "rev": 1,
                        "ratings": {},
                        "feedback": {"1": "like"},
                        "events": [{"id": f"filler-{i}", "type": "like", "movieId": 1}],
                        "origin": "benchmark",
                    }
                    for i in range(lo, min(n, lo + chunk))
                ]
            )
    finally:
        client.close()


def delete_touched(settings, ids: set[int], fillers: int = 0) -> None:
    """Remove the profiles and accounts the benchmark created from a store it was given."""
    import pymongo

    from contract import schema

    client = pymongo.MongoClient(settings.mongodb_url, serverSelectionTimeoutMS=10_000)
    try:
        db = _database(client, settings)
        for name in (schema.PROFILES, schema.ACCOUNTS):
            db[name].delete_many({"_id": {"$in": sorted(ids)}})
        if fillers:
            db[schema.PROFILES].delete_many(
                {"_id": {"$gte": FILLER_BASE, "$lt": FILLER_BASE + fillers}}
            )
    finally:
        client.close()


def main(argv=None) -> int:
    from api.settings import Settings

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--users",
        type=int,
        default=100,
        help="sequential HTTP run: new users, and as many data-set users (default: 100)",
    )
    p.add_argument(
        "--events", type=int, default=3, help="writes (each then two GETs) per user (default: 3)"
    )
    p.add_argument("--n", type=int, default=10, help="recommendations per list (default: 10)")
    p.add_argument(
        "--concurrent",
        type=int,
        default=8,
        help="clients of the concurrent run (0: skip; default: 8)",
    )
    p.add_argument(
        "--concurrent-users",
        type=int,
        default=None,
        help="concurrent run: new users, and as many data-set users (default: --users)",
    )
    p.add_argument(
        "--client-procs",
        type=int,
        default=2,
        help="processes of the concurrent clients (default: 2)",
    )
    p.add_argument(
        "--sizes",
        default="20,200,2000",
        help="in-process: history sizes of the data-set users (default: 20,200,2000)",
    )
    p.add_argument(
        "--per-size", type=int, default=3, help="in-process: users per size (default: 3)"
    )
    p.add_argument(
        "--repeats", type=int, default=60, help="in-process: timings per user group (default: 60)"
    )
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (default: 2)")
    p.add_argument("--worker-class", default="gthread", choices=["sync", "gthread"])
    p.add_argument("--threads", type=int, default=2, help="threads per gthread worker (default: 2)")
    p.add_argument(
        "--profiles",
        type=int,
        default=0,
        help="first add this many small profiles of other users (a deployment with many live users; "
        "deleted at the end; default: 0)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--mongodb-url",
        default=None,
        help="an already loaded store (written to; what the benchmark made is deleted at the end)",
    )
    args = p.parse_args(argv)
    from threadpoolctl import threadpool_limits

    threadpool_limits(
        1
    )  # in-process timings with one BLAS/OpenMP thread, as the gunicorn workers have
    env = bench_env()
    rng = random.Random(f"users/{args.seed}")
    notes, phases = [], []
    total = Recorder()
    with (
        tempfile.TemporaryDirectory(prefix="mt-bench-live-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(tmp)
        url, store_pid, note = bench_store(stack, tmp, env, args.mongodb_url)
        notes.append(note)
        settings = Settings(mongodb_url=url)
        if args.mongodb_url:  # on the way out, also after an error: what the benchmark made
            stack.callback(lambda: delete_touched(settings, total.touched, args.profiles))
        facts = read_facts(settings)
        plan = Plan(facts.genres, facts.popular, n=args.n, events=args.events)
        notes.append(
            f"served version {facts.version}; {len(facts.users):,} data-set users free to write as; "
            f"lists of n={args.n}; {args.events} writes per user; seed {args.seed}"
        )

        # users: the in-process sizes first (closest to each target), then random ones for HTTP
        sized = pick_sized(
            facts.users, [int(s) for s in args.sizes.split(",") if s.strip()], args.per_size
        )
        rest = [u for u in facts.users if all(u not in us for us in sized.values())]
        rng.shuffle(rest)
        conc_users = args.concurrent_users if args.concurrent_users is not None else args.users
        http_seq = rest[: args.users]
        http_conc = rest[args.users : args.users + conc_users] if args.concurrent else []
        if len(http_seq) < args.users or len(http_conc) < (conc_users if args.concurrent else 0):
            notes.append("fewer data-set users than asked for: the runs use what there is")
        if args.profiles:
            add_filler_profiles(settings, args.profiles)
            notes.append(f"{args.profiles:,} profiles of other users added first (--profiles)")
        tokens = issue_tokens(
            settings, [*http_seq, *http_conc, *(u for us in sized.values() for u in us)]
        )
        total.touched.update(tokens)

        def triples(ids):
            return [(size_group(facts.users[u]), u, tokens[u]) for u in ids]

        access_log = tmp / "access.log"
        srv = server_config(args.workers, args.worker_class, args.threads, access_log)
        probe = f"/user/{next(iter(facts.users))}/recommendation?n={args.n}"
        with gunicorn(srv, url, probe, tmp / "gunicorn.log") as (port, proc):
            watch = {"gunicorn": lambda: tree_cpu([proc.pid])}
            if store_pid is not None:
                watch["store server"] = lambda: tree_cpu([store_pid])
            warm, firsts = warm_workers(port, plan, args.workers, access_log, args.seed)
            total.merge(warm)
            print(
                f"warm-up: {len(firsts)} of {args.workers} workers served a first live request",
                file=sys.stderr,
            )

            counter = itertools.count()
            with CpuMeter({**watch, "benchmark client": own_cpu}) as m_seq:
                seq = run_sessions(
                    lambda: HTTPCaller(port, f"s.{next(counter)}"),
                    plan,
                    args.users,
                    triples(http_seq),
                    args.seed,
                )
            phases.append((f"HTTP, 1 client: {seq.requests:,} requests", m_seq))
            print(f"sequential run: {m_seq.seconds:.0f} s", file=sys.stderr)
            conc = None
            if args.concurrent:
                conc, m_conc = run_concurrent(
                    port,
                    plan,
                    args.concurrent,
                    args.client_procs,
                    conc_users,
                    triples(http_conc),
                    watch,
                )
                phases.append(
                    (
                        f"HTTP, {args.concurrent} concurrent clients: {conc.requests:,} requests "
                        f"({conc.requests / max(m_conc.seconds, 1e-9):.0f}/s)",
                        m_conc,
                    )
                )
                print(f"concurrent run: {m_conc.seconds:.0f} s", file=sys.stderr)
            time.sleep(0.3)
            times, _ = read_access_log(access_log)
        for r in (seq, conc):
            if r is not None:
                r.fill_server_times(times)
                total.merge(r)

        # in-process: scoring, the API's re-score path, the app's WSGI callable, cold start
        with CpuMeter(
            {
                "benchmark (in-process)": own_cpu,
                **({"store server": lambda: tree_cpu([store_pid])} if store_pid else {}),
            }
        ) as m_in:
            inproc = rescore_in_process(
                settings, plan, sized, args.per_size, args.repeats, args.seed
            )
            app = wsgi_app(settings)
            try:
                # warm-up, not counted: the app's first live request loads the LiveModel
                total.touched |= run_sessions(
                    lambda: WSGICaller(app),
                    Plan(plan.genres, plan.popular, plan.n, 1),
                    1,
                    [],
                    f"warm/{args.seed}",
                ).touched
                wplan = Plan(
                    plan.genres, plan.popular, plan.n, max(1, args.repeats // max(args.per_size, 1))
                )
                wsgi_rec = run_sessions(
                    lambda: WSGICaller(app),
                    wplan,
                    args.per_size,
                    [(g, u, tokens[u]) for g, us in sized.items() for u in us],
                    args.seed,
                )
            finally:
                app.config["movietime.store"].close()
            biggest = max(
                (u for us in sized.values() for u in us), key=lambda u: facts.users[u], default=None
            )
            cold = cold_start(settings, biggest if biggest is not None else next(iter(facts.users)))
        phases.append(("in-process (recommend_live, live_items, WSGI app, cold starts)", m_in))
        total.merge(inproc)
        total.merge(wsgi_rec)
        if args.mongodb_url:
            notes.append(
                f"deleted the profiles and accounts of the {len(total.touched):,} users the benchmark "
                "wrote as"
                + (f", and the {args.profiles:,} added profiles" if args.profiles else "")
            )

    print("\n# Live paths (issue 4): onboarding and feedback to recommendations\n")
    for note in notes:
        print(f"- {note}")
    print(f"- {busy_note(phases)}")
    print_table(
        "Over HTTP, one client at a time (gunicorn "
        f"{srv.label}, api/gunicorn_conf.py; wall = client, server = gunicorn access log)",
        seq,
    )
    if conc is not None:
        print_table(
            f"Over HTTP, {args.concurrent} concurrent clients (under contention; same sessions, other users)",
            conc,
        )
    print_table(
        "Server side in-process: the API's re-score path and two of its parts (a fresh rev each "
        "time: always a cache miss)",
        inproc,
        server=False,
        steps=(READ_USER, COMPUTE, LIVE_ITEMS),
    )
    print_table(
        "Server side in-process: the app's WSGI callable on the same sessions (no HTTP, no gunicorn)",
        wsgi_rec,
        server=False,
    )
    print("\n## The first live request of a worker\n")
    print("| what | count | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|")
    for what, ms in cold.items():
        print(f"| {what} | {len(ms)} " + _pct(ms) + "|")
    if firsts:
        print(
            f"| first live request (POST /users) of each gunicorn worker, server side | {len(firsts)} "
            + _pct(firsts)
            + "|"
        )
    print("\n## Checks (every run together)")
    print_checks(total)
    print_cpu(phases)
    print("\n## Targets\n")
    lines = target_lines("HTTP 1 client", seq) + target_lines("in-process WSGI", wsgi_rec)
    if conc is not None:
        lines += target_lines(f"HTTP {args.concurrent} clients (contention)", conc)
    for line in lines:
        print(line)
    bad = sum(v for _, v in total.checks.values())
    print(
        f"- feedback reflected in the next list: {bad} violations of "
        f"{sum(n for n, _ in total.checks.values()):,} checks; {len(total.errors)} unexpected answers"
    )
    return 0 if bad == 0 and not total.errors else 1


if __name__ == "__main__":
    sys.exit(main())

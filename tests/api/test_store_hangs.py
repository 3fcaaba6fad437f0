"""A store that hangs instead of dying (paused with SIGSTOP, or slow behind a proxy): the API
answers every request within a second, serves what its workers hold, marks it, gives 503 with
Retry-After for the rest, loses and doubles no write, and recovers by itself."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time

import pymongo
import webtest

from api.app import create_app
from api.http.auth import issue_token
from api.settings import Settings
from contract import schema
from pipeline.publish.store import Store
from tests.support import servers
from tests.support.paths import REPO
from tests.support.pipeline_sample import run_argv, wait_for_load, write_sample
from tests.support.slow_proxy import SlowProxy
from tests.support.tiny_version import publish
from tests.support.traffic import Traffic, errors_in_log, p99

JSON = "application/json; charset=utf-8"
WARM = [
    "/user/1/recommendation",
    "/user/6/recommendation",
    "/movie/1/similar",
    "/movie/2/metadata",
    "/clusters",
    "/user/list/0",
]
COLD = ["/user/7/rated"]  # read from the store on every request
WRITERS = (2, 3, 4, 5)


def warm(port: int, paths: list[str], rounds: int = 12) -> None:
    """Each path over fresh connections, so that both workers are likely to hold it."""
    for _ in range(rounds):
        for path in paths:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path, headers={"Connection": "close"})
            assert conn.getresponse().status == 200, path
            conn.close()


def test_store_paused_under_traffic_answers_within_a_second_and_loses_nothing(
    secantus_server, tmp_path
):
    server = secantus_server(sync_on_commit=True)
    client = pymongo.MongoClient(server.url)
    db = client["movietime"]
    publish(db, "v1", user_ids=(1, 2, 3, 4, 5, 6, 7, 8))
    tokens = {uid: issue_token(db, uid) for uid in WRITERS}
    log_path = tmp_path / "gunicorn.log"
    env = {
        "MONGODB_URL": server.url,
        "MOVIETIME_DATABASE": "movietime",
        "API_POINTER_CACHE_S": "0.5",
        "API_LIVE_INDEX_DIR": str(tmp_path / "live-index"),
    }
    flags = ["--workers", "2", "--config", servers.GUNICORN_CONF]  # as the Procfile runs it
    with servers.gunicorn(flags, env, log_path) as port:
        warm(port, WARM)
        traffic = Traffic(port, tokens)
        # 16 clients: 11 readers, a health check, 4 writers
        traffic.start(
            [WARM[k:] + WARM[:k] + COLD for k in range(11)] + [["/health"]], list(WRITERS)
        )
        try:
            time.sleep(2.0)
            paused = time.monotonic()
            os.kill(server.process.pid, signal.SIGSTOP)
            time.sleep(10.0)
            os.kill(server.process.pid, signal.SIGCONT)
            resumed = time.monotonic()
            time.sleep(4.0)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
            answers = traffic.finish()

    assert {a.status for a in answers} <= {200, 503}, (
        [a for a in answers if a.status not in (200, 503)][:3],
        errors_in_log(log_path),
    )  # never a 500 or a reset
    assert all(a.content_type == JSON for a in answers)
    during = [a for a in answers if a.start >= paused and a.end <= resumed]
    settled = [
        a for a in during if a.start >= paused + 1.0
    ]  # the pointer's cache (0.5 s) and a deadline later
    slowest = p99([a.elapsed for a in during])
    assert slowest <= 1.0, f"p99 {slowest:.3f} s while the store was paused"
    for a in during:
        if a.status == 503:
            assert a.retry_after and json.loads(a.body)["error"]["code"] == "store_unavailable", a
    health = [a for a in settled if a.path == "/health"]
    assert health and all(
        a.status == 200 and json.loads(a.body)["status"] == "degraded" for a in health
    )
    health_p99 = p99([a.elapsed for a in health])
    assert health_p99 <= 0.2, f"/health p99 {health_p99:.3f} s"
    from_memory = [a for a in settled if a.path in WARM and a.status == 200]
    assert from_memory and all(a.served_from == "memory" for a in from_memory)
    assert {a.path for a in from_memory} >= {
        "/user/1/recommendation",
        "/movie/1/similar",
        "/clusters",
    }
    assert all(a.status == 503 for a in settled if a.path in COLD or a.path.endswith("/feedback"))
    after = [a for a in answers if a.start >= resumed + 2.0]
    assert after and all(a.status == 200 and a.served_from is None for a in after), [
        a for a in after if a.status != 200
    ][:3]
    back = min(
        a.start - resumed
        for a in answers
        if a.start >= resumed and a.path in COLD and a.status == 200
    )
    writes = [a for a in during if a.path.endswith("/feedback")]
    print(
        f"\nstore paused 10 s: {len(during)} answers, p99 {slowest * 1000:.0f} ms, slowest "
        f"{max(a.elapsed for a in during) * 1000:.0f} ms; {len(from_memory)} served from memory, "
        f"{sum(a.status == 503 for a in during)} 503; /health p99 {health_p99 * 1000:.0f} ms (degraded); "
        f"{len(writes)} write attempts refused; first store read {back:.2f} s after the store resumed"
    )

    # every acknowledged write is stored once; the only other one is a write still being retried
    for uid in WRITERS:
        profile = db[schema.PROFILES].find_one({"_id": uid})
        stored = [e["id"] for e in profile["events"]]
        acked = traffic.acked[uid]
        assert len(stored) == len(set(stored)) and profile["rev"] == len(stored)
        assert stored[: len(acked)] == acked, uid
        assert len(stored) - len(acked) <= (1 if uid in traffic.pending else 0), uid
        assert len(acked) >= 20
    print(f"writes acknowledged: {sum(len(v) for v in traffic.acked.values())}, each stored once")
    client.close()


def test_slow_store_answers_within_a_second_and_recovers(secantus_server):
    server = secantus_server()
    client = pymongo.MongoClient(server.url)
    publish(client["movietime"], "v1", user_ids=(1, 2, 3))
    token = issue_token(client["movietime"], 2)
    proxy = SlowProxy(server.port)
    app = webtest.TestApp(
        create_app(Settings(mongodb_url=proxy.url(), database="movietime", pointer_cache_s=0.5))
    )
    try:
        warm_paths = ["/user/1/recommendation", "/movie/1/similar", "/clusters"]
        for path in warm_paths:
            assert app.get(path).status_int == 200
        proxy.delay_s = 2.0  # every reply of the store now comes 2 s late
        time.sleep(0.6)  # the pointer is due for its re-read

        def timed(method, path, **kw):
            start = time.monotonic()
            res = getattr(app, method)(path, expect_errors=True, **kw)
            return res, time.monotonic() - start

        res, first = timed(
            "get", "/user/1/recommendation"
        )  # finds the store slow, then answers from memory
        assert res.status_int == 200 and res.headers["Served-From"] == "memory" and first < 1.0, (
            first
        )
        for path in warm_paths:
            res, took = timed("get", path)
            assert (
                res.status_int == 200 and res.headers["Served-From"] == "memory" and took < 0.1
            ), (path, took)
        for path in ("/user/3/recommendation", "/user/2/rated"):
            res, took = timed("get", path)
            assert res.status_int == 503 and res.headers["Retry-After"] and took < 0.1, (path, took)
        res, took = timed(
            "post_json",
            "/user/2/feedback",
            params={"movieId": 1, "action": "like"},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "slow-1"},
        )
        assert res.status_int == 503 and took < 0.1
        res, took = timed("get", "/health")
        assert res.json["status"] == "degraded" and took < 0.2

        proxy.delay_s = 0.0
        back = time.monotonic()
        while (res := app.get("/user/3/recommendation", expect_errors=True)).status_int != 200:
            assert time.monotonic() - back < 2.0, "not answering 2 s after the store is fast again"
            time.sleep(0.02)
        recovered = time.monotonic() - back
        res = app.post_json(
            "/user/2/feedback",
            {"movieId": 1, "action": "like"},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "slow-1"},
        )
        assert res.status_int == 200 and "Served-From" not in res.headers
        assert app.get("/health").json["status"] == "ok"
        print(
            f"\nstore slow (2 s per reply): the first read {first * 1000:.0f} ms (then from memory), the "
            f"rest at once; store reads again {recovered:.2f} s after it was fast again"
        )
        profile = client["movietime"][schema.PROFILES].find_one({"_id": 2})
        assert len(profile["events"]) == 1  # the refused write was never applied; the retry once
    finally:
        proxy.close()
        client.close()


def test_a_run_whose_store_hangs_mid_load_fails_clearly_and_the_old_version_serves(
    secantus_server, tmp_path
):
    server = secantus_server()
    sample = write_sample(tmp_path / "ml-sample", max_user=50)
    env = {**os.environ, "MONGODB_URL": server.url, "PYTHONPATH": str(REPO)}
    argv = run_argv(sample, "movietime", tmp_path, "--store-timeout", "5")
    client = pymongo.MongoClient(server.url)
    db = client["movietime"]
    publish(db, "v1")  # the version being served
    old = "v1"
    proc = subprocess.Popen(
        argv, env=env, cwd=tmp_path, start_new_session=True, stderr=subprocess.PIPE, text=True
    )
    paused = None
    try:
        if wait_for_load(db, proc, old) is not None:  # the load has begun: pause the store
            os.kill(server.process.pid, signal.SIGSTOP)
            paused = time.monotonic()
        assert paused, "the second run never started loading"
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError("the run did not fail within 60 s of the store's pause") from None
        failed_after = time.monotonic() - paused
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    assert proc.returncode == 3, err[-2000:]
    assert "the store stopped answering" in err, err[-2000:]
    assert "keeps serving its current version" in err, err[-2000:]
    assert "Traceback" not in err
    print(
        f"\nstore paused mid-load: the run failed {failed_after:.1f} s later (--store-timeout 5): "
        f"{err.strip().splitlines()[-1]}"
    )
    # the previous version serves, and the API reads it
    assert Store(db).current()["version"] == old
    app = webtest.TestApp(create_app(Settings(mongodb_url=server.url, database="movietime")))
    res = app.get("/user/1/recommendation")
    assert res.json["model_version"] == old and "Served-From" not in res.headers
    app.app.config["movietime.store"].close()
    client.close()

"""The live index (``api.store.live_index``): the shared table on its own, across processes, and the API
processes that use it (two apps on one database, and gunicorn's forked workers) showing every
acknowledged write at once without a per-request store read."""

from __future__ import annotations

import http.client
import json
import multiprocessing as mp
import threading

import pytest
import webtest

from api.app import create_app
from api.http.auth import issue_token
from api.settings import Settings
from api.store.live_index import UNKNOWN, LiveIndex
from contract import schema
from tests.support import servers
from tests.support.pipeline_sample import sample_database

# --- the table ---------------------------------------------------------------------------------


def open_index(directory, scan=(), capacity=64, key="store/db") -> LiveIndex:
    return LiveIndex.open(directory, key, capacity, lambda: iter(scan))


def test_built_from_the_store_then_shared_by_every_mapping(tmp_path):
    a = open_index(tmp_path, [(5, 3), (7, 0)])
    b = open_index(tmp_path, scan=None)  # already built: the scan is not called (None would fail)
    assert (a.rev(5), a.rev(7), a.rev(9)) == (3, 0, None)
    assert (b.rev(5), b.rev(7), b.rev(9)) == (3, 0, None)
    a.begin_write(9)
    assert b.rev(9) == UNKNOWN  # in flight: read the store
    a.end_write(9, 1)
    assert b.rev(9) == 1
    a.begin_write(5)
    assert b.rev(5) == UNKNOWN
    b.end_write(5, 4)
    assert a.rev(5) == 4


def test_the_recorded_rev_never_goes_back(tmp_path):
    index = open_index(tmp_path, [(5, 3)])
    index.end_write(5, 7)
    index.begin_write(5)
    index.end_write(5, 6)  # an earlier write's record, arriving late
    assert index.rev(5) == 7


def test_each_database_has_its_own_table_and_one_per_host(tmp_path, caplog):
    a = open_index(tmp_path, [(5, 3)], key="store/one")
    b = open_index(tmp_path, [(6, 2)], key="store/two")
    assert (a.rev(5), a.rev(6), b.rev(5), b.rev(6)) == (3, None, None, 2)
    other = open_index(tmp_path, scan=None, capacity=128, key="store/one")  # asks for another size
    assert other.capacity == 64 and other.rev(5) == 3 and "using it as it is" in caplog.text
    other.end_write(8, 1)
    assert a.rev(8) == 1  # still one table: no process writes where the others do not read


def test_a_table_of_another_store_epoch_is_built_again(tmp_path):
    old = LiveIndex.open(tmp_path, "k", 64, lambda: iter([(5, 3)]), epoch="a" * 32)
    assert LiveIndex.open(tmp_path, "k", 64, None, epoch="a" * 32).rev(5) == 3  # same epoch: reused
    new = LiveIndex.open(tmp_path, "k", 64, lambda: iter([(6, 1)]), epoch="b")
    assert (new.rev(5), new.rev(6)) == (None, 1)
    assert old.rev(5) == 3  # a process that mapped the old table keeps it until it restarts


def test_a_failed_build_leaves_nothing_half_built(tmp_path):
    def scan():
        yield 5, 3
        raise ConnectionError("store gone")

    with pytest.raises(ConnectionError):
        LiveIndex.open(tmp_path, "k", 64, scan)
    assert [p.suffix for p in tmp_path.iterdir()] == [".lock"]
    assert LiveIndex.open(tmp_path, "k", 64, lambda: iter([(6, 1)])).rev(5) is None


def test_a_full_table_sends_every_reader_to_the_store(tmp_path, caplog):
    index = open_index(tmp_path, [(1, 0), (2, 0), (3, 0)], capacity=8)
    assert not index.full and index.rev(9) is None
    index.end_write(4, 1)  # the 4th of 8 slots: still at most half full
    index.end_write(5, 1)
    assert index.full and "is full" in caplog.text
    assert index.rev(1) == index.rev(5) == index.rev(9) == UNKNOWN


@pytest.mark.parametrize("capacity", [0, 1, 100])
def test_capacity_must_be_a_power_of_two(tmp_path, capacity):
    with pytest.raises(ValueError):
        open_index(tmp_path, capacity=capacity)


def _write_users(directory, first: int, count: int, threads: int) -> None:
    index = open_index(directory, scan=None, capacity=4096)

    def work(offset):
        for uid in range(first + offset, first + count, threads):
            index.begin_write(uid)
            index.end_write(uid, uid % 7)

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def test_processes_and_threads_writing_at_once_lose_no_user(tmp_path):
    index = open_index(tmp_path, capacity=4096)
    ctx = mp.get_context("spawn")  # as separate as two gunicorn workers
    procs = [
        ctx.Process(target=_write_users, args=(tmp_path, 1 + 500 * k, 500, 4)) for k in range(3)
    ]
    for p in procs:
        p.start()
    _write_users(tmp_path, 1501, 500, 4)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert [index.rev(uid) for uid in range(1, 2001)] == [uid % 7 for uid in range(1, 2001)]
    assert index.rev(2001) is None and not index.full


# --- API processes sharing it --------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(sample_run, mongo_url):
    with sample_database(sample_run, "test_live_index") as (db, _, _):
        yield {"db": db, "url": mongo_url}


def settings(served, directory, **kw) -> Settings:
    return Settings(
        mongodb_url=served["url"], database=served["db"].name, live_index_dir=str(directory), **kw
    )


def movie_ids(body) -> list[int]:
    return [r["movieId"] for r in body["recommendations"]]


def test_a_write_through_one_process_shows_at_once_in_another(served, tmp_path):
    """Two apps, each with its own store connection and mapping of the table: what one worker
    acknowledges, the other's very next answer reflects, though it had cached the user's list."""
    one, two = (webtest.TestApp(create_app(settings(served, tmp_path))) for _ in range(2))
    uid = 3
    token = issue_token(served["db"], uid)
    before = two.get(f"/user/{uid}/recommendation", {"n": 50}).json
    assert before["source"] == "precomputed"
    hidden = movie_ids(before)[:3]
    for k, movie in enumerate(hidden):
        res = one.post_json(
            f"/user/{uid}/feedback",
            {"movieId": movie, "action": "not_interested"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert res.json["rev"] == k + 1
        after = two.get(f"/user/{uid}/recommendation", {"n": 50}).json
        assert after["source"] == "live"
        assert not set(hidden[: k + 1]) & set(movie_ids(after))
    created = one.post_json("/users", {"genres": ["Comedy", "Drama", "Romance"]}).json
    assert two.get(f"/user/{created['userId']}/recommendation").json["source"] == "live"


def test_a_database_from_elsewhere_at_the_same_address_gets_a_new_table(served, tmp_path):
    """The table records the store's epoch (counters/live_index): when the database the address
    serves is not the one the table was built from, the next process builds it again."""
    db = served["db"]
    first = webtest.TestApp(create_app(settings(served, tmp_path)))
    assert first.get("/user/6/recommendation").json["source"] == "precomputed"  # builds the table
    assert db[schema.COUNTERS].find_one({"_id": "live_index"})["epoch"]
    # "restore" a database made elsewhere: its own epoch, and a profile this host never saw written
    db[schema.COUNTERS].replace_one(
        {"_id": "live_index"}, {"_id": "live_index", "epoch": "elsewhere"}
    )
    db[schema.PROFILES].insert_one(
        {
            "_id": 6,
            "rev": 1,
            "ratings": {},
            "feedback": {"1": "not_interested"},
            "events": [],
            "genres": [],
        }
    )
    try:
        later = webtest.TestApp(create_app(settings(served, tmp_path)))
        assert later.get("/user/6/recommendation").json["source"] == "live"
    finally:
        db[schema.PROFILES].delete_one({"_id": 6})


def test_no_table_possible_falls_back_to_reading_the_store(served, tmp_path, caplog):
    (tmp_path / "a-file").write_text("")
    app = webtest.TestApp(create_app(settings(served, tmp_path / "a-file" / "index")))
    uid = 8
    token = issue_token(served["db"], uid)
    top = movie_ids(app.get(f"/user/{uid}/recommendation").json)
    assert "no live index" in caplog.text
    app.post_json(
        f"/user/{uid}/feedback",
        {"movieId": top[0], "action": "not_interested"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert top[0] not in movie_ids(app.get(f"/user/{uid}/recommendation").json)


def test_without_the_index_writes_still_show_at_once(served, tmp_path):
    one, two = (
        webtest.TestApp(create_app(settings(served, tmp_path, live_index=False))) for _ in range(2)
    )
    uid = 4
    token = issue_token(served["db"], uid)
    top = movie_ids(two.get(f"/user/{uid}/recommendation").json)
    one.post_json(
        f"/user/{uid}/feedback",
        {"movieId": top[0], "action": "not_interested"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert top[0] not in movie_ids(two.get(f"/user/{uid}/recommendation").json)
    assert not any(tmp_path.iterdir())  # no table was made


def test_gunicorn_workers_show_each_others_writes_at_once(served, tmp_path):
    """Two forked sync workers (a new connection per request, so either may answer): after each
    acknowledged 'not interested', the next answer, from whichever worker, no longer has it."""
    env = {
        "MONGODB_URL": served["url"],
        "MOVIETIME_DATABASE": served["db"].name,
        "API_LIVE_INDEX_DIR": str(tmp_path / "index"),
    }
    flags = ["--config", servers.GUNICORN_CONF, "--workers", "2", "--worker-class", "sync"]
    uid = 5
    token = issue_token(served["db"], uid)
    with servers.gunicorn(flags, env, tmp_path / "gunicorn.log") as port:

        def call(method, path, body=None):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            headers = (
                {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
                if body
                else {}
            )
            conn.request(method, path, json.dumps(body) if body else None, headers)
            res = conn.getresponse()
            status, data = res.status, json.loads(res.read())
            conn.close()
            assert status in (200, 201), data
            return data

        for _ in range(8):  # every worker caches the user's list before the first write
            assert call("GET", f"/user/{uid}/recommendation")["source"] == "precomputed"
        hidden: list[int] = []
        for k in range(12):
            top = movie_ids(call("GET", f"/user/{uid}/recommendation?n=50"))
            hidden.append(top[0])
            ack = call(
                "POST", f"/user/{uid}/feedback", {"movieId": top[0], "action": "not_interested"}
            )
            assert ack["rev"] == k + 1
            for _ in range(3):
                answer = call("GET", f"/user/{uid}/recommendation?n=50")
                assert answer["source"] == "live" and not set(hidden) & set(movie_ids(answer))
    assert (tmp_path / "index").is_dir() and any((tmp_path / "index").glob("*.live"))

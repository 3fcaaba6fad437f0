"""Staging, atomic publish, cleanup and reading, against a real wire-protocol server."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pymongo
import pytest

from contract import schema
from contract.titles import search_key
from pipeline.publish.store import (
    LockTimeout,
    NotPublishedError,
    PublishError,
    Store,
    StoreConfig,
    _host_id,
    new_version,
)
from tests.support.paths import REPO

TITLES = ["Amélie (2001)", "Matrix, The (1999)", "Heat (1995)", "Alien (1979)", "Aliens (1986)"]


def user_docs(version: str, n: int = 30) -> list[dict]:
    return [
        {
            "_id": uid,
            "cluster": uid % 3,
            "stats": {"n_ratings": 2, "mean": 3.75},
            "ratings": [
                {"movieId": 1, "rating": 4.0, "timestamp": 964982703},
                {"movieId": 2, "rating": 3.5, "timestamp": 964982931},
            ],
            "top": [
                {
                    "movieId": 3,
                    "score": 0.9,
                    "predicted_rating": 4.2,
                    "reason": {"kind": "because_you_liked", "movieId": 1, "text": "Because…"},
                }
            ],
            "model_version": version,
        }
        for uid in range(1, n + 1)
    ]


def movie_docs(version: str, n: int = 30) -> list[dict]:
    docs = []
    for mid in range(1, n + 1):
        title = TITLES[mid % len(TITLES)] if mid <= len(TITLES) else f"Movie {mid} (2000)"
        docs.append(
            {
                "_id": mid,
                "title": title,
                "name": title[:-7],
                "year": int(title[-5:-1]),
                "genres": ["Drama"] if mid % 2 else ["Comedy", "Romance"],
                "imdbId": 100 + mid,
                "tmdbId": 200 + mid,
                "poster_url": None,
                "stats": {"n_ratings": mid, "mean": 3.5, "shrunk_mean": 3.4, "popularity": mid},
                "similar": [{"movieId": (mid % n) + 1, "score": 0.5}],
                "search": {"key": search_key(title[:-7])},  # of the name, as the pipeline does
                "loaded_by": version,  # test marker: which run wrote this document
            }
        )
    return docs


def load(store: Store, version: str, n: int = 30, metrics: dict | None = None) -> dict:
    """One pipeline run's store step: stage everything, publish."""
    with store.stage(version) as staging:
        staging.insert("users", user_docs(version, n), batch_size=7)
        staging.insert("movies", movie_docs(version, n))
        staging.insert("metadata", [{"_id": m, "tmdbId": 200 + m, "imdbId": 100 + m}
                                    for m in range(1, n + 1)])  # fmt: skip
        staging.insert("clusters", [{"_id": c, "size": 10, "persona": ["Drama"]} for c in range(3)])
        return staging.publish({"dataset": {"name": "tiny"}, "metrics": metrics or {}})


def versions_present(store: Store) -> set[str]:
    found = set()
    for name in store.db.list_collection_names():
        parsed = schema.parse_versioned(name)
        if parsed:
            found.add(parsed[1])
    return found


def test_publish_then_read(db):
    store = Store(db)
    assert store.current() is None
    with pytest.raises(NotPublishedError):
        store.collection("users")

    pointer = load(store, "v1", metrics={"rmse": np.float64(0.87), "n": np.int64(5)})

    assert store.current() == pointer
    assert pointer["version"] == "v1" and pointer["previous"] is None
    assert pointer["collections"] == {n: f"{n}__v1" for n in schema.VERSIONED}
    users = store.collection("users", pointer)
    assert users.count_documents({}) == 30
    assert users.find_one({"_id": 7})["model_version"] == "v1"
    assert store.collection("movies").count_documents({"genres": "Drama"}) == 15
    assert store.collection("clusters").count_documents({}) == 3
    model = store.model()
    assert model["status"] == "serving"
    assert model["counts"] == {
        "users": 30,
        "movies": 30,
        "metadata": 30,
        "clusters": 3,
        "livemodel": 0,
    }
    assert model["metrics"] == {"rmse": 0.87, "n": 5}  # numpy values stored as numbers
    assert "owner" not in model and "lease_until" not in model
    assert store.collection("models").count_documents({}) == 1


def test_served_collections_have_the_schema_indexes(db):
    store = Store(db)
    pointer = load(store, "v1")
    for name in schema.VERSIONED:
        have = set(store.collection(name, pointer).index_information())
        assert {spec.name for spec in schema.INDEXES[name]} <= have, name
    movies = store.collection("movies", pointer)
    found = {d["title"] for d in movies.find(schema.search_prefix_query("AME"), {"title": 1})}
    assert found == {"Amélie (2001)"}
    found = {d["title"] for d in movies.find(schema.search_prefix_query(" alien"), {"title": 1})}
    assert found == {"Alien (1979)", "Aliens (1986)"}
    found = {d["title"] for d in movies.find(schema.search_prefix_query("the mat"), {"title": 1})}
    assert found == {"Matrix, The (1999)"}
    assert schema.search_prefix_query(" ?! ") == {}


def test_numpy_values_from_frames_are_stored(db):
    store = Store(db)
    with store.stage("v1") as staging:
        ids = np.arange(1, 4, dtype=np.int64)
        staging.insert("users", [{"_id": u, "cluster": np.int32(0), "top": np.array([1, 2]),
                                  "stats": {"mean": np.float32(3.5)}} for u in ids])  # fmt: skip
        staging.insert("movies", [{"_id": np.int64(1), "genres": np.array(["Drama"])}])
        staging.publish({})
    user = store.collection("users").find_one({"_id": 2})
    assert user == {"_id": 2, "cluster": 0, "top": [1, 2], "stats": {"mean": 3.5}}
    assert store.collection("movies").find_one({"genres": "Drama"})["_id"] == 1


def test_works_with_a_timezone_aware_client(db, mongo_url):
    client = pymongo.MongoClient(mongo_url, tz_aware=True)
    try:
        store = Store(client[db.name], config=StoreConfig(retire_grace_s=0))
        staging = store.stage("v1")
        staging.insert("users", user_docs("v1"))
        staging.insert("movies", movie_docs("v1"))
        assert staging.publish({})["published_at"].tzinfo is not None
        staging.abort()  # after publishing: a no-op, safe in an except block
        load(store, "v2")
        load(store, "v3")
        assert versions_present(store) == {"v2", "v3"}
        assert store.current()["version"] == "v3"
    finally:
        client.close()


def test_publish_refuses_an_empty_users_collection(db):
    store = Store(db)
    load(store, "v1")
    staging = store.stage("v2")
    staging.insert("movies", movie_docs("v2"))
    with pytest.raises(PublishError, match="users"):
        staging.publish({})
    assert store.current()["version"] == "v1"
    staging.abort("empty users")
    assert versions_present(store) == {"v1"}


def test_abort_drops_staging_and_marks_the_model_failed(db):
    store = Store(db)
    load(store, "v1")
    staging = store.stage("v2")
    staging.insert("users", user_docs("v2"))
    assert "users__v2" in db.list_collection_names()
    staging.abort("bad data")
    assert versions_present(store) == {"v1"}
    assert store.model("v2")["status"] == "failed"
    assert store.model("v2")["error"] == "bad data"
    assert store.current()["version"] == "v1"
    with pytest.raises(RuntimeError):
        staging.insert("users", user_docs("v2"))

    with pytest.raises(ZeroDivisionError):  # an error inside the block aborts
        with store.stage("v3") as staging:
            staging.insert("users", user_docs("v3"))
            raise ZeroDivisionError("division by zero")
    assert store.model("v3")["status"] == "failed"
    assert "ZeroDivisionError" in store.model("v3")["error"]
    assert versions_present(store) == {"v1"}


@pytest.mark.parametrize("keep", [2, 3])
def test_cleanup_keeps_n_versions(db, keep):
    store = Store(db, config=StoreConfig(keep_versions=keep, retire_grace_s=0))
    for i in range(1, 6):
        load(store, f"v{i}", n=5)
    kept = {f"v{i}" for i in range(6 - keep, 6)}
    assert versions_present(store) == kept
    pointer = store.current()
    assert (pointer["version"], pointer["previous"]["version"]) == ("v5", "v4")
    statuses = {d["_id"]: d["status"] for d in db.models.find()}
    assert statuses == {"v1": "superseded", "v2": "superseded", "v3": "superseded",
                        "v4": "superseded", "v5": "serving"}  # fmt: skip
    dropped = {d["_id"] for d in db.models.find({"dropped_at": {"$exists": True}})}
    assert dropped == {f"v{i}" for i in range(1, 6)} - kept


def test_recently_superseded_versions_wait_for_the_grace_period(db):
    store = Store(db, config=StoreConfig(retire_grace_s=600))
    for i in range(1, 4):
        load(store, f"v{i}", n=5)
    assert versions_present(store) == {"v1", "v2", "v3"}  # v1 may still be read by a request
    assert Store(db, config=StoreConfig(retire_grace_s=0)).cleanup() == [
        f"{n}__v1" for n in sorted(schema.VERSIONED)
    ]
    assert versions_present(store) == {"v2", "v3"}


def test_rerun_is_idempotent(db):
    store = Store(db, config=StoreConfig(retire_grace_s=0))

    def served() -> dict:
        pointer = store.current()
        out = {}
        for name in schema.VERSIONED:
            docs = list(store.collection(name, pointer).find({}, sort=[("_id", 1)]))
            for doc in docs:
                doc.pop("model_version", None)
                doc.pop("loaded_by", None)
            out[name] = docs
        return out

    load(store, new_version())
    first = served()
    for _ in range(2):
        load(store, new_version())
        assert served() == first  # same content, no duplicates
    assert len(versions_present(store)) == 2
    assert db.models.count_documents({"status": "serving"}) == 1


def test_a_published_version_cannot_be_staged_again(db):
    store = Store(db)
    load(store, "v1")
    with pytest.raises(ValueError, match="published"):
        store.stage("v1")
    with pytest.raises(ValueError):
        store.stage("users/../x")


def test_concurrent_live_staging_survives_another_runs_publish(db):
    store = Store(db, config=StoreConfig(retire_grace_s=0))
    load(store, "v1")
    slow = store.stage("v2")  # a run still loading
    slow.insert("users", user_docs("v2"))
    with pytest.raises(ValueError, match="being staged"):
        store.stage("v2")
    load(store, "v3")  # a faster run publishes and cleans up meanwhile
    assert "users__v2" in db.list_collection_names()
    slow.insert("movies", movie_docs("v2"))
    pointer = slow.publish({})
    assert (pointer["version"], pointer["previous"]["version"]) == ("v2", "v3")
    assert versions_present(store) == {"v2", "v3"}


def test_readers_never_see_a_partial_or_mixed_version(db):
    store = Store(db)  # production settings: keep 2, 10 s retire grace
    n = 20
    load(store, "r0", n=n)
    stop = threading.Event()
    tally = {"reads": 0, "empty": 0, "missing": 0, "mixed": 0, "partial": 0}
    seen: set[str] = set()
    lock = threading.Lock()

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        local = dict.fromkeys(tally, 0)
        while not stop.is_set():
            pointer = store.current()  # once per "request"
            version = pointer["version"]
            users = store.collection("users", pointer)
            movies = store.collection("movies", pointer)
            uid = rng.randint(1, n)
            user = users.find_one({"_id": uid})
            movie = movies.find_one({"_id": uid})
            count = movies.count_documents({})
            local["reads"] += 1
            if count == 0:
                local["empty"] += 1
            elif count != n:
                local["partial"] += 1
            if user is None or movie is None:
                local["missing"] += 1
            elif user["model_version"] != version or movie["loaded_by"] != version:
                local["mixed"] += 1
            with lock:
                seen.add(version)
        with lock:
            for key, value in local.items():
                tally[key] += value

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    try:
        for i in range(1, 6):
            load(store, f"r{i}", n=n)
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert tally["reads"] > 50
    assert len(seen) >= 4  # the readers did run across the swaps
    assert {k: v for k, v in tally.items() if k != "reads"} == {
        "empty": 0, "missing": 0, "mixed": 0, "partial": 0
    }  # fmt: skip


LOADER = """
import sys, pymongo
sys.path.insert(0, {repo!r})
from pipeline.publish.store import Store
db = pymongo.MongoClient({url!r})[{db!r}]
staging = Store(db).stage("v2")

def users():
    uid = 0
    while True:
        uid += 1
        yield {{"_id": uid, "cluster": 0, "model_version": "v2"}}
        if uid == 20:
            print("loading", flush=True)

staging.insert("users", users(), batch_size=10)
"""


def test_a_loader_killed_mid_load_leaves_the_previous_version_serving(db, mongo_url):
    store = Store(db)
    load(store, "v1")
    code = LOADER.format(repo=str(REPO), url=mongo_url, db=db.name)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "loading"
        assert store.cleanup() == []  # a live run's staging is never dropped
        assert "users__v2" in db.list_collection_names()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL

    assert store.current()["version"] == "v1"
    assert store.collection("users").count_documents({}) == 30
    assert db["users__v2"].count_documents({}) >= 20  # the orphan is there
    assert store.model("v2")["status"] == "staging"

    pointer = load(store, "v3")  # the next run publishes and removes the orphan
    assert (pointer["version"], pointer["previous"]["version"]) == ("v3", "v1")
    assert versions_present(store) == {"v1", "v3"}
    assert store.model("v2")["status"] == "failed"
    assert "orphaned" in store.model("v2")["error"]


def test_the_lock_of_a_dead_process_is_taken_over_and_a_live_one_waited_for(db):
    store = Store(db, config=StoreConfig(lock_wait_s=0.3))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    far = datetime.now(UTC) + timedelta(hours=1)
    owner = {"host": _host_id(), "pid": int(dead.stdout), "started": 0.0, "token": "dead"}
    db.serving.insert_one({"_id": schema.LOCK_ID, "owner": owner, "expires_at": far})
    load(store, "v1")  # takes over the dead holder's lock
    assert db.serving.find_one({"_id": schema.LOCK_ID}) is None  # released after publishing

    other_host = dict(owner, host="elsewhere/boot", token="live")
    db.serving.insert_one({"_id": schema.LOCK_ID, "owner": other_host, "expires_at": far})
    with pytest.raises(LockTimeout):
        store.stage("v2")
    db.serving.update_one({"_id": schema.LOCK_ID}, {"$set": {"expires_at": datetime.now(UTC)}})
    load(store, "v2")  # an expired lock is free


def test_rollback_serves_the_previous_version(db):
    store = Store(db, config=StoreConfig(retire_grace_s=0))
    with pytest.raises(NotPublishedError):
        store.rollback()
    load(store, "v1")
    load(store, "v2")
    pointer = store.rollback()
    assert (pointer["version"], pointer["previous"]["version"]) == ("v1", "v2")
    assert store.collection("users").find_one({"_id": 1})["model_version"] == "v1"
    assert store.model("v1")["status"] == "serving"
    assert store.model("v2")["status"] == "superseded"
    load(store, "v3")
    assert versions_present(store) == {"v1", "v3"}

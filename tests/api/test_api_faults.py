"""The API when the store fails or changes under it: store down (503 fast, recovery without a
restart), nothing published yet, and a new version published while the app runs."""

from __future__ import annotations

import json
import time

import pymongo
import pytest
import webtest

from api.app import create_app
from api.settings import Settings
from api.wsgi import resolve_settings
from contract.embedded import EmbeddedConfig, stop
from tests.support.secantus import restart
from tests.support.tiny_version import publish


def timed_get(app, path: str):
    start = time.monotonic()
    res = app.get(path, expect_errors=True)
    return res, time.monotonic() - start


def test_store_down_serves_memory_else_a_fast_503_and_the_app_recovers_by_itself(secantus_server):
    server = secantus_server(sync_on_commit=True)  # acknowledged writes survive SIGKILL
    client = pymongo.MongoClient(server.url)
    publish(client["movietime"], "v1")
    client.close()
    app = webtest.TestApp(
        create_app(Settings(mongodb_url=server.url, database="movietime", pointer_cache_s=0.5))
    )
    healthy = app.get("/user/1/recommendation").json
    assert [r["movieId"] for r in healthy["recommendations"]] == [1, 2]
    assert "Served-From" not in app.get("/user/1/recommendation").headers

    server.kill()  # SIGKILL
    time.sleep(0.6)  # the pointer is due for its re-read (pointer_cache_s)
    restarted = None
    try:
        # the warm user's list is in memory: served from it, and marked so
        res, elapsed = timed_get(app, "/user/1/recommendation")
        assert res.status_int == 200 and res.json == healthy
        assert res.headers["Served-From"] == "memory"
        assert elapsed < 1.0, f"the warm list took {elapsed:.2f} s"
        # what is not in memory fails at once now that the store is known not to answer
        for path in (
            "/user/2/recommendation",
            "/movies/search?q=alpha",
            "/user/list/0",
            "/movie/1/metadata",
        ):
            res, elapsed = timed_get(app, path)
            assert res.status_int == 503, res.text
            assert res.headers["Content-Type"] == "application/json; charset=utf-8"
            assert res.json["error"]["code"] == "store_unavailable"
            assert res.headers["Retry-After"]
            assert elapsed < 0.1, f"{path} took {elapsed:.2f} s to fail"
        health, elapsed = timed_get(app, "/health")
        assert health.status_int == 200 and elapsed < 0.2
        assert health.json["status"] == "degraded" and health.json["store"] == "not_answering"
        assert health.json["model_version"] == "v1" and health.headers["Served-From"] == "memory"
        assert app.get("/user/abc/rated", expect_errors=True).status_int == 400  # no store needed
        assert "movietime_store_answering 0.0" in app.get("/metrics").text

        restarted = restart(server)
        back = time.monotonic()
        while (res := app.get("/user/2/recommendation", expect_errors=True)).status_int != 200:
            assert res.status_int == 503
            assert time.monotonic() < back + 10, "the app did not recover within 10 s"
            time.sleep(0.05)
        assert "Served-From" not in res.headers
        assert app.get("/user/1/recommendation").json == healthy
        assert app.get("/health").json["status"] == "ok"
        assert "movietime_store_answering 1.0" in app.get("/metrics").text
    finally:
        if restarted is not None:
            restarted.kill()
            restarted.wait(10)


def test_nothing_published_is_503_not_ready(db):
    app = webtest.TestApp(create_app(Settings(), db_factory=lambda: db))
    health = app.get("/health", expect_errors=True)
    assert health.status_int == 503
    assert health.json["store"] == "empty" and health.json["error"]["code"] == "not_ready"
    res = app.get("/user/1/recommendation", expect_errors=True)
    assert res.status_int == 503 and res.json["error"]["code"] == "not_ready"
    publish(db, "v1")
    assert app.get("/health").json["model_version"] == "v1"  # health re-reads the pointer


def test_a_new_version_shows_after_the_pointer_cache_and_never_mixes(db):
    publish(db, "v1", user_ids=(1, 2))
    app = webtest.TestApp(create_app(Settings(pointer_cache_s=5), db_factory=lambda: db))
    assert app.get("/user/1/recommendation").json["model_version"] == "v1"
    publish(db, "v2", user_ids=(1, 2, 3))
    # the pointer is cached (5 s), but a user that only the new version has is not a 404:
    # a miss through a cached pointer re-reads the pointer once
    res = app.get("/user/3/recommendation")
    assert res.json["model_version"] == "v2"
    assert app.get("/user/1/recommendation").json["model_version"] == "v2"
    assert app.get("/health").json["model_version"] == "v2"
    assert app.get("/user/9/recommendation", expect_errors=True).status_int == 404


def test_entry_point_settings_from_the_environment():
    settings = resolve_settings(
        {
            "MONGODB_URL": "mongodb://db.example:27017/mt",
            "API_POINTER_CACHE_S": "1.5",
            "API_CORS_ORIGINS": "https://a.example, https://b.example",
        }
    )
    assert (
        settings.mongodb_url == "mongodb://db.example:27017/mt" and settings.pointer_cache_s == 1.5
    )
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    with pytest.raises(ValueError, match="API_POINTER_CACHE_S"):
        Settings.from_env({"API_POINTER_CACHE_S": "soon"})
    with pytest.raises(ValueError, match="between 0 and 5"):
        Settings.from_env({"API_POINTER_CACHE_S": "60"})
    with pytest.raises(ValueError, match="mongodb_url"):
        create_app(Settings())  # neither a URL nor a db_factory


def test_without_mongodb_url_the_embedded_store_is_started_and_used(tmp_path):
    config = EmbeddedConfig(storage_path=str(tmp_path / "mongo"), port=0)
    try:
        settings = resolve_settings({}, config)
        assert settings.mongodb_url == json.loads(config.state_file().read_text())["url"]
        app = webtest.TestApp(create_app(settings))
        health = app.get("/health", expect_errors=True)  # a fresh store: up, but nothing published
        assert health.status_int == 503 and health.json["store"] == "empty"
    finally:
        stop(config)

"""Shareable lists (``api.routes.lists``) over HTTP with WebTest (WSGI lint on), against the pipeline's
real output on a sample of the bundled data in a real SecantusDB, with real tokens."""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import pymongo
import pytest
import webtest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from api.app import create_app
from api.http.auth import issue_token, token_hash
from api.settings import Settings
from contract import schema
from pipeline.publish.store import Store, new_version
from pipeline.run import run
from pipeline.runtime import dask_client
from tests.support.pipeline_sample import (
    pipeline_store,
    sample_config,
    sample_database,
    write_sample,
)

JSON = "application/json; charset=utf-8"
SLUG = re.compile(r"[A-Za-z0-9_-]{22}")
OWNER, OTHER = 1, 2  # MovieLens users of the sample


@dataclass
class Served:
    db: pymongo.database.Database
    url: str
    version: str
    sample: Path  # the first run's data set
    tmp: object

    def coll(self, name: str):
        return self.db[schema.versioned_name(name, self.version)]


def run_pipeline(db, sample, run_dir) -> str:
    config = sample_config(sample, run_dir, evaluate=False)
    with dask_client(config.dask):
        return run(config, pipeline_store(db), new_version()).version


@pytest.fixture(scope="module")
def served(sample_run, mongo_url, tmp_path_factory) -> Served:
    with sample_database(sample_run, "test_lists") as (db, config, version):
        yield Served(db, mongo_url, version, Path(config.dataset), tmp_path_factory.mktemp("lists"))


def settings_for(served: Served, **kw) -> Settings:
    kw.setdefault("auth_max_failures", 1000)  # the tests send many bad tokens on purpose
    return Settings(mongodb_url=served.url, database=served.db.name, **kw)


@pytest.fixture(scope="module")
def app(served) -> webtest.TestApp:
    wsgi = create_app(settings_for(served))
    yield webtest.TestApp(wsgi)
    wsgi.config["movietime.store"].close()


@pytest.fixture(scope="module")
def tokens(served) -> dict[int, str]:
    return {OWNER: issue_token(served.db, OWNER), OTHER: issue_token(served.db, OTHER)}


@pytest.fixture(scope="module")
def spec(app) -> dict:
    return app.get("/openapi.json").json


@pytest.fixture(scope="module")
def movies(served) -> list[int]:
    """Movie ids of the served catalogue (a few, by popularity)."""
    popular = served.db[schema.MODELS].find_one({"_id": served.version})["artifacts"]["popular"]
    return [int(m) for m in popular[:10]]


def validate(spec: dict, name: str, body) -> None:
    registry = Registry().with_resource(
        "urn:spec", Resource.from_contents(spec, default_specification=DRAFT202012)
    )
    Draft202012Validator(
        {"$ref": f"urn:spec#/components/schemas/{name}"}, registry=registry
    ).validate(body)


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def send(
    app,
    method: str,
    url: str,
    body=None,
    token: str | None = None,
    raw: bytes | None = None,
    content_type: str = "application/json",
):
    """A request with a JSON (or raw) body; never raises on an error status."""
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    return app.request(
        url,
        method=method,
        body=data,
        headers={"Content-Type": content_type, **bearer(token)},
        expect_errors=True,
    )


def create(app, token: str, body: dict) -> str:
    res = send(app, "POST", "/lists", body, token)
    assert res.status_int == 201, res.text
    return res.json["slug"]


def assert_error(res, status: int, code: str, *words: str) -> dict:
    assert res.status_int == status, res.text
    assert res.headers["Content-Type"] == JSON
    body = res.json
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    for word in words:
        assert word in body["error"]["message"], body["error"]["message"]
    assert "Traceback" not in res.text
    return body


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def n_lists(served) -> int:
    return served.db[schema.LISTS].count_documents({})


# --- the life of a list ----------------------------------------------------------------------


def test_create_read_replace_delete(app, served, tokens, movies, spec):
    chosen = [movies[3], movies[0], movies[7]]
    res = send(
        app,
        "POST",
        "/lists",
        {
            "title": "  Rainy Sunday ",
            "movieIds": chosen,
            "description": "For a grey day.\nWith tea.",
        },
        tokens[OWNER],
    )
    assert res.status_int == 201 and res.headers["Content-Type"] == JSON
    validate(spec, "ListCreated", res.json)
    slug = res.json["slug"]
    assert SLUG.fullmatch(slug) and res.json["url"] == f"/lists/{slug}"
    assert res.headers["Location"].endswith(f"/lists/{slug}")

    stored = served.db[schema.LISTS].find_one({"_id": slug})
    assert (
        stored["userId"] == OWNER
        and stored["movieIds"] == chosen
        and stored["title"] == "Rainy Sunday"
    )
    assert tokens[OWNER] not in json.dumps(stored, default=str)  # the token is not stored with it

    got = app.get(f"/lists/{slug}")  # no token needed
    validate(spec, "MovieList", got.json)
    body = got.json
    assert body["slug"] == slug and body["url"] == f"/lists/{slug}" and body["userId"] == OWNER
    assert body["title"] == "Rainy Sunday" and body["description"] == "For a grey day.\nWith tea."
    assert body["model_version"] == served.version
    assert [m["movieId"] for m in body["movies"]] == chosen  # the list's order, not the catalogue's
    doc = served.coll(schema.MOVIES).find_one({"_id": chosen[0]})
    first = body["movies"][0]
    assert (first["title"], first["name"], first["year"], first["genres"]) == (
        doc["title"],
        doc["name"],
        doc["year"],
        doc["genres"],
    )
    assert body["created_at"] == body["updated_at"] and body["created_at"].endswith("Z")

    res = send(
        app,
        "PUT",
        f"/lists/{slug}",
        {"title": "Sunny Sunday", "movieIds": [movies[5]]},
        tokens[OWNER],
    )
    assert res.status_int == 200, res.text
    validate(spec, "MovieList", res.json)
    assert res.json["title"] == "Sunny Sunday" and res.json["description"] is None
    assert [m["movieId"] for m in res.json["movies"]] == [movies[5]]
    again = app.get(f"/lists/{slug}").json
    assert again == res.json  # the PUT answer is what GET shows afterwards
    assert again["created_at"] == body["created_at"] and when(again["updated_at"]) > when(
        body["updated_at"]
    )
    assert "description" not in served.db[schema.LISTS].find_one({"_id": slug})

    res = send(app, "DELETE", f"/lists/{slug}", token=tokens[OWNER])
    assert res.status_int == 200 and res.json == {"deleted": slug}
    validate(spec, "ListDeleted", res.json)
    assert served.db[schema.LISTS].find_one({"_id": slug}) is None
    assert_error(app.get(f"/lists/{slug}", expect_errors=True), 404, "not_found", slug)
    assert_error(send(app, "DELETE", f"/lists/{slug}", token=tokens[OWNER]), 404, "not_found")
    assert_error(
        send(app, "PUT", f"/lists/{slug}", {"title": "x", "movieIds": [movies[0]]}, tokens[OWNER]),
        404,
        "not_found",
    )


def test_slugs_are_random_url_safe_and_distinct(app, tokens, movies):
    slugs = {
        create(app, tokens[OWNER], {"title": "Same", "movieIds": [movies[0]]}) for _ in range(5)
    }
    assert len(slugs) == 5 and all(SLUG.fullmatch(s) for s in slugs)
    # 22 base64url characters = 132 bits, of which secrets.token_urlsafe(16) fills 128


def test_head_of_a_list(app, tokens, movies):
    slug = create(app, tokens[OWNER], {"title": "Head", "movieIds": [movies[0]]})
    res = app.head(f"/lists/{slug}")
    assert res.status_int == 200 and res.body == b""


# --- who may write ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer mt_1_" + "A" * 43,  # well-formed, wrong secret
        "Bearer mt_1_short",  # malformed
        "Basic dXNlcjpwYXNz",
        "Bearer mt_999999_" + "B" * 43,  # no such account
    ],
)
def test_writes_without_a_valid_token_are_401(app, served, tokens, movies, header):
    slug = create(app, tokens[OWNER], {"title": "Mine", "movieIds": [movies[0]]})
    before = n_lists(served)
    headers = {"Content-Type": "application/json", **({"Authorization": header} if header else {})}
    body = json.dumps({"title": "Theirs", "movieIds": [movies[1]]}).encode()
    for method, url in (
        ("POST", "/lists"),
        ("PUT", f"/lists/{slug}"),
        ("DELETE", f"/lists/{slug}"),
    ):
        res = app.request(
            url,
            method=method,
            body=body if method != "DELETE" else b"",
            headers=headers,
            expect_errors=True,
        )
        assert_error(res, 401, "unauthorized")
        assert res.headers["WWW-Authenticate"].startswith("Bearer")
        assert "A" * 43 not in res.text and "B" * 43 not in res.text  # tokens are never echoed
    assert n_lists(served) == before
    assert app.get(f"/lists/{slug}").json["title"] == "Mine"


def test_a_revoked_token_stops_working(app, served, movies):
    old = issue_token(served.db, 3)
    create(app, old, {"title": "Before", "movieIds": [movies[0]]})
    new = issue_token(served.db, 3)
    assert_error(
        send(app, "POST", "/lists", {"title": "After", "movieIds": [movies[0]]}, old),
        401,
        "unauthorized",
    )
    assert (
        send(app, "POST", "/lists", {"title": "After", "movieIds": [movies[0]]}, new).status_int
        == 201
    )
    account = served.db[schema.ACCOUNTS].find_one({"_id": 3})
    assert account["token_sha256"] == token_hash(new) and new not in json.dumps(
        account, default=str
    )


def test_only_the_owner_may_replace_or_delete(app, served, tokens, movies):
    slug = create(app, tokens[OWNER], {"title": "Mine", "movieIds": [movies[0], movies[1]]})
    stored = served.db[schema.LISTS].find_one({"_id": slug})
    res = send(
        app, "PUT", f"/lists/{slug}", {"title": "Hijacked", "movieIds": [movies[2]]}, tokens[OTHER]
    )
    assert_error(res, 403, "forbidden", "another user")
    assert_error(send(app, "DELETE", f"/lists/{slug}", token=tokens[OTHER]), 403, "forbidden")
    assert served.db[schema.LISTS].find_one({"_id": slug}) == stored
    # the other user can still read it and make their own
    assert app.get(f"/lists/{slug}").json["title"] == "Mine"
    theirs = create(app, tokens[OTHER], {"title": "Theirs", "movieIds": [movies[2]]})
    assert app.get(f"/lists/{theirs}").json["userId"] == OTHER
    assert_error(send(app, "DELETE", f"/lists/{theirs}", token=tokens[OWNER]), 403, "forbidden")


def test_repeated_auth_failures_are_429(served, tokens, movies):
    wsgi = create_app(settings_for(served, auth_max_failures=2))
    try:
        app = webtest.TestApp(wsgi)
        wrong = "mt_1_" + "C" * 43
        for _ in range(2):
            assert_error(
                send(app, "POST", "/lists", {"title": "x", "movieIds": [movies[0]]}, wrong),
                401,
                "unauthorized",
            )
        res = send(app, "POST", "/lists", {"title": "x", "movieIds": [movies[0]]}, tokens[OWNER])
        assert_error(res, 429, "too_many_requests")
        assert int(res.headers["Retry-After"]) >= 1
    finally:
        wsgi.config["movietime.store"].close()


# --- what is not found -----------------------------------------------------------------------


def test_unknown_slug_is_404_for_every_method(app, tokens, movies):
    slug = "A" * 22
    assert_error(app.get(f"/lists/{slug}", expect_errors=True), 404, "not_found", f"list {slug}")
    assert_error(
        send(app, "PUT", f"/lists/{slug}", {"title": "x", "movieIds": [movies[0]]}, tokens[OWNER]),
        404,
        "not_found",
    )
    assert_error(send(app, "DELETE", f"/lists/{slug}", token=tokens[OWNER]), 404, "not_found")


@pytest.mark.parametrize(
    "slug",
    [
        "abc",
        "A" * 21,
        "A" * 23,
        "A" * 21 + "%24",
        "%24gt" + "A" * 17,
        "A" * 21 + ".",
        "%C3%A9" + "A" * 21,
    ],
)
def test_malformed_slug_is_400_before_any_read(app, tokens, movies, slug):
    assert_error(app.get(f"/lists/{slug}", expect_errors=True), 400, "bad_request", "slug")
    assert_error(
        send(app, "PUT", f"/lists/{slug}", {"title": "x", "movieIds": [movies[0]]}, tokens[OWNER]),
        400,
        "bad_request",
        "slug",
    )
    assert_error(
        send(app, "DELETE", f"/lists/{slug}", token=tokens[OWNER]), 400, "bad_request", "slug"
    )


def test_unknown_movie_is_404_and_nothing_changes(app, served, tokens, movies):
    before = n_lists(served)
    res = send(
        app, "POST", "/lists", {"title": "x", "movieIds": [movies[0], 987654321]}, tokens[OWNER]
    )
    assert_error(res, 404, "not_found", "movie 987654321")
    assert n_lists(served) == before
    slug = create(app, tokens[OWNER], {"title": "Kept", "movieIds": [movies[0]]})
    res = send(
        app, "PUT", f"/lists/{slug}", {"title": "Changed", "movieIds": [987654321]}, tokens[OWNER]
    )
    assert_error(res, 404, "not_found", "movie 987654321")
    assert app.get(f"/lists/{slug}").json["title"] == "Kept"


def test_other_methods_are_405(app, tokens):
    assert_error(
        send(app, "PATCH", "/lists/" + "A" * 22, {"title": "x"}, tokens[OWNER]),
        405,
        "method_not_allowed",
    )
    assert_error(send(app, "GET", "/lists"), 405, "method_not_allowed")


# --- bodies ----------------------------------------------------------------------------------


def _bad_bodies():
    ok = [1, 2]
    return {
        "no title": ({"movieIds": ok}, "title"),
        "empty title": ({"title": "   ", "movieIds": ok}, "title"),
        "long title": ({"title": "x" * 101, "movieIds": ok}, "title"),
        "title object": ({"title": {"a": 1}, "movieIds": ok}, "title"),
        "title control char": ({"title": "a\x07b", "movieIds": ok}, "title"),
        "title newline": ({"title": "a\nb", "movieIds": ok}, "title"),
        "no movieIds": ({"title": "x"}, "movieIds"),
        "empty movieIds": ({"title": "x", "movieIds": []}, "movieIds"),
        "too many movieIds": ({"title": "x", "movieIds": list(range(1, 102))}, "movieIds"),
        "operator as id": ({"title": "x", "movieIds": [{"$gt": 1}]}, "$gt"),
        "object as id": ({"title": "x", "movieIds": [{"id": 1}]}, "movieIds'[0]"),
        "duplicate ids": ({"title": "x", "movieIds": [1, 2, 1]}, "repeat"),
        "string id": ({"title": "x", "movieIds": ["1"]}, "integer"),
        "float id": ({"title": "x", "movieIds": [1.5]}, "integer"),
        "bool id": ({"title": "x", "movieIds": [True]}, "integer"),
        "zero id": ({"title": "x", "movieIds": [0]}, "movieIds'[0]"),
        "negative id": ({"title": "x", "movieIds": [-3]}, "movieIds'[0]"),
        "huge id": ({"title": "x", "movieIds": [2**64]}, "movieIds'[0]"),
        "movieIds not a list": ({"title": "x", "movieIds": 5}, "array"),
        "unknown field": ({"title": "x", "movieIds": ok, "owner": 2}, "unknown field"),
        "operator field": ({"title": "x", "movieIds": ok, "$set": {"userId": 2}}, "$"),
        "long description": (
            {"title": "x", "movieIds": ok, "description": "d" * 1001},
            "description",
        ),
        "description control char": (
            {"title": "x", "movieIds": ok, "description": "a\x00b"},
            "description",
        ),
        "not an object": ([{"title": "x", "movieIds": ok}], "object"),
    }


@pytest.mark.parametrize("name", list(_bad_bodies()))
def test_bad_bodies_are_400_and_store_nothing(app, served, tokens, name):
    body, word = _bad_bodies()[name]
    before = n_lists(served)
    assert_error(send(app, "POST", "/lists", body, tokens[OWNER]), 400, "bad_request", word)
    assert n_lists(served) == before


@pytest.mark.parametrize(
    "raw, word",
    [
        (b"", "empty"),
        (b"{", "not valid JSON"),
        (b'{"title": "x", "movieIds": [1], "title": "y"}', "twice"),
        (b'{"title": "x", "movieIds": [NaN]}', "NaN"),
        (b"\xff\xfe", "UTF-8"),
    ],
)
def test_malformed_json_is_400(app, tokens, raw, word):
    assert_error(
        send(app, "POST", "/lists", raw=raw, token=tokens[OWNER]), 400, "bad_request", word
    )


def test_put_checks_its_body_like_post(app, served, tokens, movies):
    slug = create(app, tokens[OWNER], {"title": "Kept", "movieIds": [movies[0]]})
    stored = served.db[schema.LISTS].find_one({"_id": slug})
    for body in (
        {"movieIds": [movies[0]]},
        {"title": "x", "movieIds": [movies[0], movies[0]]},
        {"title": "x", "movieIds": [{"$gt": 1}]},
    ):
        assert_error(send(app, "PUT", f"/lists/{slug}", body, tokens[OWNER]), 400, "bad_request")
    assert_error(
        send(app, "PUT", f"/lists/{slug}", raw=b"x" * (64 * 1024 + 1), token=tokens[OWNER]),
        413,
        "payload_too_large",
    )
    assert served.db[schema.LISTS].find_one({"_id": slug}) == stored


def test_oversized_body_is_413_and_wrong_type_415(app, served, tokens, movies):
    before = n_lists(served)
    big = {"title": "x", "movieIds": [movies[0]], "description": "d" * (70 * 1024)}
    assert_error(send(app, "POST", "/lists", big, tokens[OWNER]), 413, "payload_too_large")
    res = send(
        app,
        "POST",
        "/lists",
        {"title": "x", "movieIds": [movies[0]]},
        tokens[OWNER],
        content_type="text/plain",
    )
    assert_error(res, 415, "unsupported_media_type")
    # the body is checked before the token: an oversized body needs no store read
    assert_error(send(app, "POST", "/lists", big), 413, "payload_too_large")
    assert n_lists(served) == before


def test_description_keeps_line_breaks_and_empty_means_none(app, tokens, movies):
    slug = create(
        app, tokens[OWNER], {"title": "T", "movieIds": [movies[0]], "description": " a\r\n\tb \n"}
    )
    assert app.get(f"/lists/{slug}").json["description"] == "a\n\tb"
    slug = create(app, tokens[OWNER], {"title": "T", "movieIds": [movies[0]], "description": "  "})
    assert app.get(f"/lists/{slug}").json["description"] is None


def test_a_list_of_the_maximum_size(app, served, tokens, spec):
    ids = [int(d["_id"]) for d in served.coll(schema.MOVIES).find({}, {"_id": 1}).limit(100)]
    assert len(ids) == 100
    slug = create(app, tokens[OWNER], {"title": "Big", "movieIds": ids[::-1]})
    body = app.get(f"/lists/{slug}").json
    validate(spec, "MovieList", body)
    assert [m["movieId"] for m in body["movies"]] == ids[::-1] and all(
        m["title"] for m in body["movies"]
    )


# --- the store down --------------------------------------------------------------------------


def test_store_down_is_503(tokens):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(
        mongodb_url=f"mongodb://127.0.0.1:{port}/?directConnection=true",
        database="x",
        server_selection_timeout_ms=200,
        connect_timeout_ms=200,
    )
    wsgi = create_app(settings)
    try:
        app = webtest.TestApp(wsgi)
        assert_error(app.get("/lists/" + "A" * 22, expect_errors=True), 503, "store_unavailable")
        assert_error(
            send(app, "POST", "/lists", {"title": "x", "movieIds": [1]}, tokens[OWNER]),
            503,
            "store_unavailable",
        )
    finally:
        wsgi.config["movietime.store"].close()


# --- the spec ----------------------------------------------------------------------------------


def test_spec_declares_the_list_endpoints(spec):
    assert "lists" in {t["name"] for t in spec["tags"]}
    post = spec["paths"]["/lists"]["post"]
    assert set(spec["paths"]["/lists/{slug}"]) == {"get", "put", "delete"}
    assert (
        post["security"] == [{"bearer": []}]
        and "201" in post["responses"]
        and "200" not in post["responses"]
    )
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ListInput"
    )
    assert {"400", "401", "404", "413", "415", "429", "503"} <= set(post["responses"])
    for method in ("put", "delete"):
        op = spec["paths"]["/lists/{slug}"][method]
        assert op["security"] == [{"bearer": []}] and {"400", "401", "403", "404"} <= set(
            op["responses"]
        )
    get = spec["paths"]["/lists/{slug}"]["get"]
    assert (
        "security" not in get and get["parameters"][0]["schema"]["pattern"] == "^[A-Za-z0-9_-]{22}$"
    )
    body = spec["components"]["schemas"]["ListInput"]
    assert body["required"] == ["title", "movieIds"] and body["additionalProperties"] is False
    assert (
        body["properties"]["movieIds"]["maxItems"] == 100
        and body["properties"]["movieIds"]["uniqueItems"]
    )


# --- pipeline re-runs (last: it publishes a new version into the module's database) ----------


def test_lists_survive_a_second_pipeline_run(served, tokens, movies, spec):
    first = pd.read_csv(served.sample / "movies.csv").movieId
    smaller = write_sample(served.tmp / "ml-sample-2", extra_movies=10)
    second = pd.read_csv(smaller / "movies.csv").movieId
    leaving = sorted(set(first) - set(second))
    assert leaving and served.coll(schema.MOVIES).find_one({"_id": int(leaving[0])}) is not None
    gone = int(leaving[0])

    wsgi = create_app(settings_for(served, pointer_cache_s=0))
    try:
        app = webtest.TestApp(wsgi)
        chosen = [movies[0], gone, movies[1]]
        slug = create(
            app, tokens[OWNER], {"title": "Keeper", "movieIds": chosen, "description": "d"}
        )
        before = app.get(f"/lists/{slug}").json
        assert all(m["title"] for m in before["movies"])
        n_before = n_lists(served)

        version = run_pipeline(served.db, smaller, served.tmp / "runs-2")
        assert version != served.version
        Store(served.db).cleanup()  # dropping retired versions leaves online data alone too
        assert schema.LISTS in served.db.list_collection_names() and n_lists(served) == n_before

        after = app.get(f"/lists/{slug}").json
        validate(spec, "MovieList", after)
        assert after["model_version"] == version
        assert {
            k: after[k]
            for k in ("slug", "title", "description", "userId", "created_at", "updated_at")
        } == {
            k: before[k]
            for k in ("slug", "title", "description", "userId", "created_at", "updated_at")
        }
        assert [m["movieId"] for m in after["movies"]] == chosen
        lost = after["movies"][1]
        assert lost == {
            "movieId": gone,
            "title": None,
            "name": None,
            "year": None,
            "genres": [],
            "poster_url": None,
        }
        assert after["movies"][0]["title"] and after["movies"][2]["title"]

        # the owner (whose token survived too) can still edit it; a gone movie can't be added back
        res = send(
            app, "PUT", f"/lists/{slug}", {"title": "Keeper", "movieIds": chosen}, tokens[OWNER]
        )
        assert_error(res, 404, "not_found", f"movie {gone}")
        res = send(
            app,
            "PUT",
            f"/lists/{slug}",
            {"title": "Keeper 2", "movieIds": [movies[1]]},
            tokens[OWNER],
        )
        assert res.status_int == 200 and res.json["model_version"] == version
    finally:
        wsgi.config["movietime.store"].close()

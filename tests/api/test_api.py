"""The REST API over HTTP (WebTest, with WSGI lint) and through a real gunicorn process,
against the pipeline's real output on a sample of the bundled data in a real SecantusDB."""

from __future__ import annotations

import json
import re
import shlex
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pymongo
import pytest
import webtest
from jsonschema import Draft202012Validator
from pymongo import monitoring
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from api.app import create_app
from api.routes.reads import ENDPOINTS
from api.services.live import rated_entries
from api.settings import Settings
from contract import schema
from tests.support import servers
from tests.support.paths import REPO
from tests.support.pipeline_sample import sample_database
from tests.support.secantus import free_port

JSON = "application/json; charset=utf-8"
COLD_USER = 900_001  # no precomputed list, has a cluster: cluster fallback
LOST_USER = 900_002  # no list and no cluster: popular fallback


@dataclass
class Served:
    db: pymongo.database.Database
    version: str
    url: str

    def coll(self, name: str):
        return self.db[schema.versioned_name(name, self.version)]


@pytest.fixture(scope="module")
def served(sample_run, mongo_url) -> Served:
    """A copy of the pipeline's output on a sample, plus two users without a precomputed list."""
    with sample_database(sample_run, "test_api") as (db, _, version):
        yield with_unlisted_users(Served(db, version, mongo_url))


def with_unlisted_users(s: Served) -> Served:
    db, version = s.db, s.version
    cluster = s.coll(schema.CLUSTERS).find_one({"_id": 1})
    favourites = [m["movieId"] for m in cluster["top_movies"]]
    popular = db[schema.MODELS].find_one({"_id": version})["artifacts"]["popular"]
    s.coll(schema.USERS).insert_many(
        [
            {
                "_id": COLD_USER,
                "cluster": 1,
                "stats": {"n_ratings": 2, "mean": 4.0},
                "top": [],
                "ratings": [
                    {"movieId": m, "rating": 4.0, "timestamp": 1_600_000_000 + i}
                    for i, m in enumerate(favourites[:2])
                ],
                "model_version": version,
            },
            {
                "_id": LOST_USER,
                "stats": {"n_ratings": 1, "mean": 5.0},
                "ratings": [{"movieId": popular[0], "rating": 5.0, "timestamp": 1_600_000_000}],
                "model_version": version,
            },
        ]
    )
    return s


def settings_for(served: Served, **kw) -> Settings:
    return Settings(mongodb_url=served.url, database=served.db.name, **kw)


@pytest.fixture(scope="module")
def app(served) -> webtest.TestApp:
    wsgi = create_app(settings_for(served))
    yield webtest.TestApp(wsgi)
    wsgi.config["movietime.store"].close()


@pytest.fixture(scope="module")
def spec(app) -> dict:
    return app.get("/openapi.json").json


def validator(spec: dict, name: str) -> Draft202012Validator:
    registry = Registry().with_resource(
        "urn:spec", Resource.from_contents(spec, default_specification=DRAFT202012)
    )
    return Draft202012Validator({"$ref": f"urn:spec#/components/schemas/{name}"}, registry=registry)


def assert_error(res, status: int, code: str, *words: str) -> dict:
    assert res.status_int == status, res.text
    assert res.headers["Content-Type"] == JSON
    body = res.json
    assert set(body) >= {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    for word in words:
        assert word in body["error"]["message"], body["error"]["message"]
    assert "Traceback" not in res.text
    return body


# --- contract --------------------------------------------------------------------------------


def documented_endpoints() -> set[tuple[str, str]]:
    text = (REPO / "API_Documentation.md").read_text()
    return {(m, p) for m, p in re.findall(r"^### `(GET|POST|PUT|DELETE|PATCH) (/\S*)`", text, re.M)}


def test_app_routes_spec_paths_and_document_agree(app, spec):
    routes = {(r.method, re.sub(r"<([^>:]+)>", r"{\1}", r.rule)) for r in app.app.routes}
    in_spec = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert routes == in_spec == documented_endpoints()
    assert len(routes) == 25


def test_openapi_declares_every_parameter_and_error(spec):
    assert spec["openapi"].startswith("3.1")
    for ep in ENDPOINTS:
        op = spec["paths"][ep.openapi_path][ep.method.lower()]
        assert [p["name"] for p in op["parameters"]] == [p.name for p in ep.params]
        assert {"404", "405", "500"} <= set(op["responses"])
        for status in ep.errors:
            assert str(status) in op["responses"]
        for p in op["parameters"]:
            assert p["description"] and p["schema"]["type"]
    Draft202012Validator.check_schema({"$defs": spec["components"]["schemas"]})


def test_docs_page_is_self_contained_html(app, spec):
    res = app.get("/docs")
    assert res.headers["Content-Type"] == "text/html; charset=utf-8"
    for path in spec["paths"]:
        assert path in res.text
    assert "<script" not in res.text and "src=" not in res.text  # nothing fetched from elsewhere
    assert "Recommendation" in res.text and "store_unavailable" in res.text


# --- recommendations ---------------------------------------------------------------------------


def test_recommendations_are_the_precomputed_list_in_rank_order(app, served, spec):
    user = served.coll(schema.USERS).find_one({"_id": 1})
    res = app.get("/user/1/recommendation")
    assert res.headers["Content-Type"] == JSON
    body = res.json
    validator(spec, "Recommendations").validate(body)
    assert body["source"] == "precomputed" and body["model_version"] == served.version
    items = body["recommendations"]
    assert [i["movieId"] for i in items] == [t["movieId"] for t in user["top"][:10]]
    movie = served.coll(schema.MOVIES).find_one({"_id": items[0]["movieId"]})
    first = user["top"][0]
    assert items[0]["title"] == movie["title"] and items[0]["genres"] == movie["genres"]
    assert (
        items[0]["predicted_rating"] == first["predicted_rating"]
        and items[0]["score"] == first["score"]
    )
    assert items[0]["reason"]["kind"] == first["reason"]["kind"] and items[0]["reason"]["text"]
    assert len(app.get("/user/1/recommendation?n=50").json["recommendations"]) == len(user["top"])
    assert len(app.get("/user/1/recommendation?n=1").json["recommendations"]) == 1


def test_recommendations_genre_filter_then_cut(app, served):
    user = served.coll(schema.USERS).find_one({"_id": 1})
    ids = [t["movieId"] for t in user["top"]]
    genres = {m["_id"]: m["genres"] for m in served.coll(schema.MOVIES).find({"_id": {"$in": ids}})}
    expected = [m for m in ids if "Comedy" in genres[m]][:5]
    body = app.get("/user/1/recommendation?n=5&genre=cOmEdY").json
    assert body["genre"] == "Comedy"
    assert [i["movieId"] for i in body["recommendations"]] == expected
    assert_error(
        app.get("/user/1/recommendation?genre=Comedyy", expect_errors=True),
        400,
        "bad_request",
        "genre",
        "Comedy",
    )


def ild(items) -> float:
    """Intra-list diversity: mean genre distance (1 - Jaccard) of two listed movies."""
    from contract.diversity import genre_similarity

    sim = genre_similarity([i["genres"] for i in items])
    pairs = [(a, b) for a in range(len(items)) for b in range(a + 1, len(items))]
    return sum(1 - sim[a, b] for a, b in pairs) / len(pairs)


def test_diversity_reranks_the_list_for_variety_and_exclude_leaves_movies_out(app, served, spec):
    user = served.coll(schema.USERS).find_one({"_id": 1})
    ids = [t["movieId"] for t in user["top"]]
    plain = app.get("/user/1/recommendation?n=10").json
    assert plain["diversity"] == 0
    assert app.get("/user/1/recommendation?n=10&diversity=0").json == plain
    varied = app.get("/user/1/recommendation?n=10&diversity=0.6").json
    validator(spec, "Recommendations").validate(varied)
    got = [i["movieId"] for i in varied["recommendations"]]
    assert varied["diversity"] == 0.6 and len(got) == 10 and set(got) <= set(ids)
    assert got[0] == ids[0] and got != ids[:10]  # the best stays first; the rest change
    assert ild(varied["recommendations"]) > ild(plain["recommendations"])
    listed = {i["movieId"]: i for i in plain["recommendations"]}
    for item in varied["recommendations"]:  # the same items, scores and reasons, re-ordered
        if item["movieId"] in listed:
            assert item == listed[item["movieId"]]

    left_out = f"{ids[0]},{ids[3]},999999"
    body = app.get(f"/user/1/recommendation?n=10&exclude={left_out}").json
    assert [i["movieId"] for i in body["recommendations"]] == [
        m for m in ids if m not in (ids[0], ids[3])
    ][:10]
    both = app.get(f"/user/1/recommendation?n=10&exclude={left_out}&diversity=1").json
    assert not {ids[0], ids[3]} & {i["movieId"] for i in both["recommendations"]}
    cold = app.get(f"/user/{COLD_USER}/recommendation?n=8&diversity=1").json
    assert cold["source"] in ("fallback_cluster", "fallback_popular")
    assert len(cold["recommendations"]) == 8


def test_reasons_carry_the_evidence_they_rest_on(app, served, spec):
    """Each "because you liked" reason of a precomputed list is the stored reason with the terms
    the two movie documents share; a cluster favourite shows the persona genres it has."""
    from contract.reasons import explained, shared_terms

    movies = served.coll(schema.MOVIES)
    shown = 0
    for user in (1, 2, 3):
        stored = {
            t["movieId"]: t["reason"]
            for t in served.coll(schema.USERS).find_one({"_id": user})["top"]
        }
        for item in app.get(f"/user/{user}/recommendation?n=10").json["recommendations"]:
            reason = item["reason"]
            if reason["kind"] == "because_you_liked":
                terms = movies.find_one({"_id": item["movieId"]})["terms"]
                seed = movies.find_one({"_id": reason["movieId"]})["terms"]
                evidence = shared_terms(terms, seed)
                assert reason == explained(stored[item["movieId"]], evidence)
                shown += bool(evidence)
    assert shown >= 10
    cold = app.get(f"/user/{COLD_USER}/recommendation?n=5").json
    validator(spec, "Recommendations").validate(cold)
    persona = served.coll(schema.CLUSTERS).find_one({"_id": 1})["persona"]
    for item in cold["recommendations"]:
        assert item["reason"].get("evidence", []) == [g for g in persona if g in item["genres"]]
        assert item["reason"]["text"].startswith("A favourite of viewers with tastes like yours")


def test_user_without_a_list_gets_labelled_cluster_fallback(app, served, spec):
    favourites = [
        m["movieId"] for m in served.coll(schema.CLUSTERS).find_one({"_id": 1})["top_movies"]
    ]
    body = app.get(f"/user/{COLD_USER}/recommendation?n=5").json
    validator(spec, "Recommendations").validate(body)
    assert body["source"] == "fallback_cluster"
    assert [i["movieId"] for i in body["recommendations"]] == favourites[2:7]  # rated ones left out
    assert all(
        i["predicted_rating"] is None and i["reason"]["kind"] == "cluster_favourite"
        for i in body["recommendations"]
    )
    # more than the cluster has: topped up with popular movies, each labelled
    many = app.get(f"/user/{COLD_USER}/recommendation?n=50").json["recommendations"]
    kinds = [i["reason"]["kind"] for i in many]
    assert kinds[: len(favourites) - 2] == ["cluster_favourite"] * (len(favourites) - 2)
    assert set(kinds[len(favourites) - 2 :]) == {"popular"} and len(many) == 50
    assert len({i["movieId"] for i in many}) == 50


def test_user_without_cluster_gets_popular_fallback(app, served):
    popular = served.db[schema.MODELS].find_one({"_id": served.version})["artifacts"]["popular"]
    body = app.get(f"/user/{LOST_USER}/recommendation?n=3").json
    assert body["source"] == "fallback_popular"
    assert [i["movieId"] for i in body["recommendations"]] == popular[1:4]  # popular[0] was rated
    assert all(i["reason"]["kind"] == "popular" for i in body["recommendations"])


def test_recommendation_bad_input(app):
    for query, word in [
        ("n=0", "'n'"),
        ("n=51", "'n'"),
        ("n=1.5", "'n'"),
        ("n=", "'n'"),
        ("n=abc", "'n'"),
        ("n=1&n=2", "once"),
        ("n[$gt]=1", "unknown"),
        ("genre=", "genre"),
        ("x=1", "allowed"),
        ("diversity=7", "'diversity'"),
        ("diversity=-0.1", "'diversity'"),
        ("diversity=nan", "'diversity'"),
        ("diversity=", "'diversity'"),
        ("exclude=", "'exclude'"),
        ("exclude=1,,2", "'exclude'"),
        ("exclude=0", "'exclude'"),
        ("exclude=%7B%22%24gt%22%3A0%7D", "'exclude'"),
        ("exclude=" + ",".join(map(str, range(1, 10_001))), "at most 500"),
    ]:
        assert_error(
            app.get(f"/user/1/recommendation?{query}", expect_errors=True), 400, "bad_request", word
        )
    assert_error(
        app.get("/user/999999/recommendation", expect_errors=True), 404, "not_found", "999999"
    )


@pytest.mark.parametrize(
    "raw",
    [
        "0",
        "-3",
        "1.5",
        "abc",
        "1e3",
        "+1",
        " 1",
        "0x10",
        "１２",
        "9223372036854775808",
        "99999999999999999999",
        "%7B%22%24gt%22%3A0%7D",
        "1%00",
        "null",
        "true",
    ],
)
def test_malformed_ids_are_rejected(app, raw):
    raw = quote(raw, safe="%")
    for path in (
        f"/user/{raw}/recommendation",
        f"/user/{raw}/rated",
        f"/movie/{raw}/metadata",
        f"/movie/{raw}/similar",
    ):
        assert_error(app.get(path, expect_errors=True), 400, "bad_request", "'id'")


def test_largest_id_is_a_valid_unknown_id(app):
    assert_error(
        app.get("/user/9223372036854775807/recommendation", expect_errors=True), 404, "not_found"
    )
    assert_error(
        app.get("/movie/9223372036854775807/similar", expect_errors=True), 404, "not_found"
    )


# --- activity ----------------------------------------------------------------------------------


def test_rated_sorting_and_pagination(app, served, spec):
    ratings = rated_entries(served.coll(schema.USERS).find_one({"_id": 1}))
    body = app.get("/user/1/rated?per_page=7&page=2").json
    validator(spec, "RatedPage").validate(body)
    assert body["total"] == len(ratings) and body["pages"] == -(-len(ratings) // 7)
    newest = sorted(ratings, key=lambda r: (r["timestamp"], r["movieId"]), reverse=True)
    assert [i["movieId"] for i in body["items"]] == [r["movieId"] for r in newest[7:14]]
    assert all(i["title"] for i in body["items"])
    by_rating = app.get("/user/1/rated?sort=rating&order=asc&per_page=100").json["items"]
    assert [i["rating"] for i in by_rating] == sorted(r["rating"] for r in ratings)[:100]
    by_id = app.get("/user/1/rated?sort=movieId&order=asc&per_page=5").json["items"]
    assert [i["movieId"] for i in by_id] == sorted(r["movieId"] for r in ratings)[:5]
    # all pages together are every rating once
    pages = [app.get(f"/user/1/rated?per_page=100&page={p}").json["items"] for p in (1, 2, 3)]
    assert sorted(i["movieId"] for page in pages for i in page) == sorted(
        r["movieId"] for r in ratings
    )


def test_pagination_edges(app):
    past = app.get("/user/1/rated?page=1000&per_page=100").json
    assert past["items"] == [] and past["total"] > 0 and past["page"] == 1000
    for query, word in [
        ("page=0", "'page'"),
        ("per_page=0", "'per_page'"),
        ("per_page=101", "'per_page'"),
        ("page=-1", "'page'"),
        ("sort=title", "'sort'"),
        ("order=up", "'order'"),
    ]:
        assert_error(
            app.get(f"/user/1/rated?{query}", expect_errors=True), 400, "bad_request", word
        )
    assert_error(app.get("/user/999999/rated", expect_errors=True), 404, "not_found")
    assert app.get("/movie/list/0?page=99").json["items"] == []
    assert app.get("/user/list/0?page=99").json["items"] == []


# --- clusters ----------------------------------------------------------------------------------


def test_cluster_users_by_id_paginated(app, served, spec):
    ids = sorted(u["_id"] for u in served.coll(schema.USERS).find({"cluster": 1}, {"_id": 1}))
    first = app.get("/user/list/1?per_page=5").json
    validator(spec, "ClusterUserPage").validate(first)
    assert first["total"] == len(ids) and COLD_USER in ids
    got = []
    for page in range(1, first["pages"] + 1):
        got += [u["userId"] for u in app.get(f"/user/list/1?per_page=5&page={page}").json["items"]]
    assert got == ids
    one = served.coll(schema.USERS).find_one({"_id": ids[0]})
    assert first["items"][0] == {
        "userId": ids[0],
        "n_ratings": one["stats"]["n_ratings"],
        "mean_rating": one["stats"]["mean"],
    }
    assert_error(app.get("/user/list/77", expect_errors=True), 404, "not_found", "cluster 77")
    assert_error(app.get("/user/list/-1", expect_errors=True), 400, "bad_request", "'cluster'")


def test_cluster_movies_paginated(app, served, spec):
    top = served.coll(schema.CLUSTERS).find_one({"_id": 2})["top_movies"]
    body = app.get("/movie/list/2?per_page=3&page=2").json
    validator(spec, "ClusterMoviePage").validate(body)
    assert body["total"] == len(top)
    assert [(m["movieId"], m["rank"]) for m in body["items"]] == [
        (t["movieId"], r) for r, t in enumerate(top[3:6], start=4)
    ]
    assert all(m["title"] for m in body["items"])
    assert_error(app.get("/movie/list/77", expect_errors=True), 404, "not_found")
    assert_error(app.get("/movie/list/x", expect_errors=True), 400, "bad_request")


def test_onboarding_movies_are_the_served_most_rated_in_pages(app, served, spec):
    popular = served.db[schema.MODELS].find_one({"_id": served.version})["artifacts"]["popular"]
    first = app.get("/onboarding/movies").json
    validator(spec, "OnboardingMoviePage").validate(first)
    assert (first["total"], first["per_page"], first["model_version"]) == (
        len(popular),
        12,
        served.version,
    )
    assert [m["movieId"] for m in first["items"]] == popular[:12]
    second = app.get("/onboarding/movies?page=2&per_page=5").json
    assert [(m["movieId"], m["rank"]) for m in second["items"]] == [
        (m, r) for r, m in enumerate(popular[5:10], start=6)
    ]
    assert all(m["title"] and m["genres"] for m in second["items"])
    assert app.get(f"/onboarding/movies?page={len(popular) + 1}&per_page=1").json["items"] == []
    for query in ("per_page=51", "per_page=0", "page=0", "page=x"):
        assert_error(app.get(f"/onboarding/movies?{query}", expect_errors=True), 400, "bad_request")


def test_clusters_list_and_detail(app, served, spec):
    docs = {c["_id"]: c for c in served.coll(schema.CLUSTERS).find()}
    body = app.get("/clusters").json
    validator(spec, "Clusters").validate(body)
    assert [c["clusterId"] for c in body["clusters"]] == sorted(docs)
    for c in body["clusters"]:
        doc = docs[c["clusterId"]]
        assert c["size"] == doc["size"] and c["persona"] == doc["persona"]
        assert [m["movieId"] for m in c["top_movies"]] == [m["movieId"] for m in doc["top_movies"]]
        assert all(m["title"] for m in c["top_movies"])
    detail = app.get("/clusters/0").json
    validator(spec, "ClusterDetail").validate(detail)
    assert detail["profile"] == pytest.approx(docs[0]["profile"])
    assert_error(app.get("/clusters/77", expect_errors=True), 404, "not_found")
    assert_error(app.get("/clusters/1.0", expect_errors=True), 400, "bad_request")


# --- movies ------------------------------------------------------------------------------------


def test_movie_metadata(app, served, spec):
    doc = served.coll(schema.METADATA).find_one({"_id": 1})
    body = app.get("/movie/1/metadata").json
    validator(spec, "Metadata").validate(body)
    assert (
        body["movieId"] == 1
        and body["overview"] == doc["overview"]
        and body["tmdbId"] == doc["tmdbId"]
    )
    assert body["keywords"] == doc["keywords"] and body["tags"] == doc["tags"]
    assert body["collection"] == doc["collection"] and body["companies"] == doc["companies"]
    assert_error(
        app.get("/movie/999999999/metadata", expect_errors=True), 404, "not_found", "999999999"
    )


def test_similar_movies(app, served, spec):
    doc = served.coll(schema.MOVIES).find_one({"_id": 1})
    body = app.get("/movie/1/similar?n=5").json
    validator(spec, "SimilarMovies").validate(body)
    assert body["title"] == doc["title"]
    assert [m["movieId"] for m in body["similar"]] == [s["movieId"] for s in doc["similar"][:5]]
    assert all(m["title"] and m["score"] is not None for m in body["similar"])
    assert len(app.get("/movie/1/similar").json["similar"]) == min(20, len(doc["similar"]))
    assert_error(app.get("/movie/1/similar?n=51", expect_errors=True), 400, "bad_request", "'n'")


def search(app, q: str, **params) -> dict:
    query = "&".join([f"q={quote(q)}", *(f"{k}={v}" for k, v in params.items())])
    return app.get(f"/movies/search?{query}").json


def test_search_finds_titles_with_moved_articles_accents_and_case(app, spec):
    body = search(app, "matrix")
    validator(spec, "SearchResults").validate(body)
    assert body["results"][0]["movieId"] == 2571 and body["results"][0]["match"] == "exact"
    assert {r["movieId"] for r in body["results"]} >= {2571, 6365}  # The Matrix, ... Reloaded
    assert search(app, "MÁTRIX")["results"] == body["results"]
    assert search(app, "the matrix")["results"][0]["movieId"] == 2571
    assert search(app, "miserables")["results"][0]["name"] == "Les Misérables"
    assert search(app, "amélie")["results"][0]["movieId"] == 4973


def test_search_year_narrows_or_is_a_title_word(app):
    body = search(app, "matrix 1999")
    assert body["year"] == 1999 and [r["movieId"] for r in body["results"]] == [2571]
    assert search(app, "2001")["results"][0]["movieId"] == 924  # "2001: A Space Odyssey" (1968)
    spaced = search(app, "2001 a space")
    assert spaced["year"] is None and spaced["results"][0]["movieId"] == 924


def test_short_queries_match_whole_words(app):
    results = search(app, "up", limit=50)["results"]
    assert results and results[0]["name"] == "Up"
    assert all(r["name"].lower() == "up" or r["name"].lower().startswith("up ") for r in results)
    assert search(app, "the")["results"] == []  # an article alone is not a prefix of everything


def test_search_bad_input_and_injection(app):
    for query, word in [
        ("", "'q'"),
        ("q=", "'q'"),
        ("q=" + "a" * 101, "'q'"),
        ("q=%21%21", "letter"),
        ("q=matrix&limit=0", "'limit'"),
        ("q=matrix&limit=51", "'limit'"),
        ("q[$ne]=1", "unknown"),
        ("q[$regex]=.*", "unknown"),
        ("q=a&q=b", "once"),
        ("q=%ff", "UTF-8"),
        ("q=a%00b", "control"),
        ("q=x&$where=1", "unknown"),
    ]:
        assert_error(
            app.get(f"/movies/search?{query}", expect_errors=True), 400, "bad_request", word
        )
    # operator-looking text is just text: folded to words, never a query operator
    assert search(app, '{"$gt": ""}')["results"] == search(app, "gt")["results"]


# --- service -----------------------------------------------------------------------------------


def test_health(app, served, spec):
    body = app.get("/health").json
    validator(spec, "Health").validate(body)
    assert body["model_version"] == served.version


def test_metrics_count_requests_by_route_template(app):
    before = app.get("/metrics")
    assert before.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    app.get("/movie/1/similar")
    app.get("/movie/2/similar")
    app.get("/nope", expect_errors=True)
    text = app.get("/metrics").text
    line = re.compile(
        r'^[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? -?[0-9.e+-]+(Inf)?$|^# (HELP|TYPE) .+$'
    )
    assert all(line.match(row) for row in text.splitlines()), [
        row for row in text.splitlines() if not line.match(row)
    ]

    def value(txt: str, series: str) -> float:
        m = re.search(re.escape(series) + r" (\S+)$", txt, re.M)
        return float(m.group(1)) if m else 0.0

    ok = 'movietime_http_requests_total{method="GET",route="/movie/<id>/similar",status="200"}'
    assert value(text, ok) - value(before.text, ok) == 2
    assert (
        value(text, 'movietime_http_requests_total{method="GET",route="<unmatched>",status="404"}')
        >= 1
    )
    series = re.escape("movietime_http_request_duration_seconds_bucket{le=") + r'"[^"]+"'
    series += re.escape(',method="GET",route="/movie/<id>/similar"}')
    buckets = [float(v) for v in re.findall("^" + series + r" (\S+)$", text, re.M)]
    count = (
        'movietime_http_request_duration_seconds_count{method="GET",route="/movie/<id>/similar"}'
    )
    assert len(buckets) == 14 and buckets == sorted(buckets) and buckets[-1] == value(text, count)


def test_every_error_is_json_with_one_shape(app):
    assert_error(app.get("/no/such/route", expect_errors=True), 404, "not_found", "/no/such/route")
    assert_error(app.get("/clusters/", expect_errors=True), 404, "not_found")
    res = app.post("/user/1/recommendation", expect_errors=True)
    assert_error(res, 405, "method_not_allowed", "POST")
    assert "GET" in res.headers["Allow"]
    assert_error(app.delete("/health", expect_errors=True), 405, "method_not_allowed")
    head = app.head("/user/1/recommendation")
    assert head.status_int == 200 and head.body == b"" and head.headers["Content-Type"] == JSON


def test_unexpected_failure_is_a_json_500_without_details(served):
    def broken():
        raise RuntimeError("secret detail")

    app = webtest.TestApp(create_app(settings_for(served), db_factory=broken))
    res = app.get("/user/1/recommendation", expect_errors=True)
    body = assert_error(res, 500, "internal_error")
    assert "secret" not in res.text and "RuntimeError" not in json.dumps(body)


def test_cors_header_only_for_allowed_origins(served):
    app = webtest.TestApp(
        create_app(settings_for(served, cors_origins=("https://movietime.example",)))
    )
    allowed = app.get("/health", headers={"Origin": "https://movietime.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://movietime.example"
    other = app.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


class CommandLog(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[tuple[str, str]] = []

    def started(self, event) -> None:
        self.commands.append((event.command_name, str(event.command.get(event.command_name))))

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


def warm_commands(served, **settings) -> list[tuple[str, str]]:
    """The store commands of a second, warm ``GET /user/1/recommendation``."""
    listener = CommandLog()
    client = pymongo.MongoClient(served.url, event_listeners=[listener])
    try:
        app = webtest.TestApp(
            create_app(
                settings_for(served, pointer_cache_s=5, **settings),
                db_factory=lambda: client[served.db.name],
            )
        )
        app.get("/user/1/recommendation?n=20")  # cold: pointer, live index, user, movie details
        assert len(listener.commands) >= 3
        listener.commands.clear()
        body = app.get("/user/1/recommendation?n=20").json
        assert len(body["recommendations"]) == 20
        return list(listener.commands)
    finally:
        client.close()


def test_warm_recommendation_makes_no_store_round_trip(served, tmp_path):
    # the served list is cached per version, and the live index says the user has no live state
    assert warm_commands(served, live_index_dir=str(tmp_path)) == []


def test_warm_recommendation_without_the_live_index_reads_the_profile(served):
    assert warm_commands(served, live_index=False) == [("find", schema.PROFILES)]


# --- a real gunicorn process, started as the Procfile says -------------------------------------


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as res:
            return res.status, res.headers["Content-Type"], res.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def test_gunicorn_serves_the_procfile_command(served, app, tmp_path):
    line = next(
        row for row in (REPO / "Procfile").read_text().splitlines() if row.startswith("web:")
    )
    port = free_port()
    argv = shlex.split(
        line.removeprefix("web:").replace("$PORT", str(port)).replace("0.0.0.0", "127.0.0.1")
    )
    assert argv[0] == "gunicorn"
    argv[0] = str(Path(sys.executable).parent / "gunicorn")
    env = {"PORT": str(port), "MONGODB_URL": served.url, "MOVIETIME_DATABASE": served.db.name}
    base = f"http://127.0.0.1:{port}"
    with servers.serve(argv, port, env, tmp_path / "gunicorn.log"):
        status, ctype, body = http_get(base + "/user/1/recommendation?n=5")
        assert status == 200 and ctype == JSON
        assert json.loads(body) == app.get("/user/1/recommendation?n=5").json
        status, ctype, body = http_get(base + "/user/abc/rated")
        assert (
            status == 400 and ctype == JSON and json.loads(body)["error"]["code"] == "bad_request"
        )
        status, ctype, body = http_get(base + "/nope")
        assert status == 404 and ctype == JSON
        # a request line past gunicorn's limit: the API's JSON 400, not gunicorn's HTML page
        many = ",".join(map(str, range(1, 10_001)))
        status, ctype, body = http_get(base + f"/user/1/recommendation?exclude={many}")
        error = json.loads(body)["error"]
        assert status == 400 and ctype == JSON and error["code"] == "bad_request"
        assert "at most 500" in error["message"]
        status, ctype, body = http_get(base + "/user/1/recommendation?n=5")
        assert status == 200  # and the worker serves on
        for _ in range(6):  # both workers answer (each with its own client, created after fork)
            assert http_get(base + "/movies/search?q=toy")[0] == 200
        # one scrape, whichever worker answers it, counts every worker's requests
        series = 'movietime_http_requests_total{method="GET",route="/movies/search",status="200"} '
        for _ in range(4):
            text = http_get(base + "/metrics")[2].decode()
            assert series + "6.0" in text, text[:2000]
            assert (
                'movietime_store_call_duration_seconds_count{command="find",outcome="ok"}' in text
            )

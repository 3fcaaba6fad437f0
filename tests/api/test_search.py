"""Title search (api/services/search.py): matching and ranking on a handful of titles, then over HTTP
against the pipeline's real output on a sample of the bundled data in a real SecantusDB."""

from __future__ import annotations

import threading
from urllib.parse import urlencode

import pymongo
import pytest
import webtest
from jsonschema import Draft202012Validator
from pymongo import monitoring
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from api.app import create_app
from api.services.search import (
    EXACT,
    FUZZY,
    PREFIX,
    TITLE_INDEXES,
    WORD_PREFIX,
    TitleIndex,
    TitleIndexes,
    key_lookups,
    max_typos,
    relevance,
)
from api.settings import Settings
from api.store.serving import ServingStore
from contract import schema
from contract.titles import display_name, search_key
from tests.support.pipeline_sample import sample_database

# --- matching and ranking on a few titles ----------------------------------------------------


def movie(
    mid: int, title: str, year: int | None = None, genres=("Drama",), n_ratings: int = 0
) -> dict:
    return {
        "_id": mid,
        "year": year,
        "genres": list(genres),
        "stats": {"n_ratings": n_ratings, "popularity": n_ratings / 1000},
        "search": {"key": search_key(display_name(title))},
    }


TITLES = [
    movie(1, "Matrix, The", 1999, ("Action", "Sci-Fi"), 278),
    movie(2, "Matrix Reloaded, The", 2003, ("Action", "Sci-Fi"), 57),
    movie(3, "Star Wars: Episode IV - A New Hope", 1977, ("Action", "Sci-Fi"), 251),
    movie(4, "Star Wars: Episode V - The Empire Strikes Back", 1980, ("Action", "Sci-Fi"), 211),
    movie(5, "Star Wars: The Clone Wars", 2008, ("Animation", "Sci-Fi"), 8),
    movie(6, "Rogue One: A Star Wars Story", 2016, ("Action", "Sci-Fi"), 30),
    movie(7, "Hope Floats", 1998, ("Comedy", "Romance"), 12),
    movie(8, "Godfather, The", 1972, ("Crime", "Drama"), 192),
    movie(9, "Godfather: Part II, The", 1974, ("Crime", "Drama"), 129),
    movie(10, "Amelie (Fabuleux destin d'Amélie Poulain, Le)", 2001, ("Comedy", "Romance"), 120),
    movie(11, "2001: A Space Odyssey", 1968, ("Sci-Fi",), 109),
    movie(12, "Sugar & Spice", 2001, ("Comedy",), 3),
    movie(13, "Up", 2009, ("Animation",), 105),
    movie(14, "Upside Down", 2012, ("Romance",), 4),
    movie(15, "Spider-Man", 2002, ("Action",), 122),
    movie(16, "Lord of the Rings: The Two Towers, The", 2002, ("Fantasy",), 188),
    movie(17, "War of the Worlds", 2005, ("Sci-Fi",), 60),
    movie(18, "Misérables, Les", 1995, ("Drama", "War"), 20),
]


@pytest.fixture(scope="module")
def index() -> TitleIndex:
    return TitleIndex(TITLES)


def ids(hits) -> list[int]:
    return [h.movie_id for h in hits]


def test_typo_allowance_by_word_length():
    assert [max_typos(w) for w in ("up", "war", "hope", "wras", "spice", "matirx", "godfater")] == [
        0, 0, 1, 1, 1, 1, 2,
    ]  # fmt: skip
    assert max_typos("1999") == 0  # numbers match exactly or as a prefix only


def test_word_matches_exact_prefix_swapped_and_joined_words(index):
    def similar(word):
        return {index.words[i]: round(s, 2) for i, s in index.word_matches(word).items()}

    assert similar("matirx") == {"matrix": 0.83}  # two letters swapped: one typo
    assert similar("wras")["wars"] == 0.75
    assert similar("godfat") == {"godfather": 0.9, "godfatherpart": 0.9}  # the start of a word
    assert similar("starwars") == {"starwars": 1.0}  # two title words joined
    assert similar("war")["war"] == 1.0 and similar("war")["wars"] == 0.9
    assert "wars" not in similar("wa")  # too short to be a prefix
    assert similar("atrix") == {"matrix": 0.8}  # the first letter left out
    assert similar("natrix") == {}  # a typo in the first letter is not looked for


def test_typos_and_words_in_the_middle_are_fuzzy_matches(index):
    assert ids(index.rank("matirx")) == [1, 2]
    assert ids(index.rank("star wras")) == [3, 4, 6, 5]  # by popularity: Rogue One has 30 ratings
    assert ids(index.rank("godfater")) == [8, 9]
    assert ids(index.rank("spiderman")) == [15]
    assert all(h.match == FUZZY and h.score == 88 for h in index.rank("star wras"))
    assert ids(index.rank("lord of the rngs")) == [16]  # stop words left out
    # an exact word in the middle of a title beats a typo; ties go to the more popular movie
    assert [(h.movie_id, h.score) for h in index.rank("wars")] == [
        (3, 100),
        (4, 100),
        (6, 100),
        (5, 100),
        (17, 75),
    ]


def test_exact_and_prefix_classes_come_before_fuzzy_ones(index):
    hits = index.rank("hope")
    assert [(h.movie_id, h.match) for h in hits] == [(7, WORD_PREFIX), (3, FUZZY)]
    hits = index.rank("star wars")
    assert [h.match for h in hits] == [WORD_PREFIX] * 3 + [FUZZY]  # Rogue One: in the middle
    assert ids(index.rank("matrix")) == [1, 2] and index.rank("matrix")[0].match == EXACT
    assert [(h.movie_id, h.match) for h in index.rank("amelie")] == [(10, WORD_PREFIX)]
    assert [(h.movie_id, h.match) for h in index.rank("miserables")] == [(18, EXACT)]
    assert [(h.movie_id, h.match) for h in index.rank("matr")] == [(1, PREFIX), (2, PREFIX)]


def test_exact_and_prefix_matches_are_those_of_the_search_key_index(index):
    """The matches ranked above fuzzy ones are what the search.key lookups find, with the same
    classes (the index path answers short queries on a worker that has not read the titles)."""
    for text in (
        "matrix",
        "the matrix",
        "star",
        "star wars",
        "up",
        "godfather",
        "hope",
        "a",
        "misera",
        "les",
    ):
        exact, ranges = key_lookups(text)
        expected = {
            d["_id"]: relevance(d["search"]["key"], text)
            for d in TITLES
            if d["search"]["key"] in exact
            or any(r.low <= d["search"]["key"] < r.high for r in ranges)
        }
        assert {h.movie_id: h.match for h in index.rank(text) if h.match != FUZZY} == expected, text


def test_short_queries_are_whole_words_at_the_start_and_never_fuzzy(index):
    assert [(h.movie_id, h.match) for h in index.rank("up")] == [(13, EXACT)]  # not Upside Down
    assert index.rank("ap") == [] and index.rank("u") == []
    assert index.rank("the") == []  # an article alone matches only a title that is just that


def test_fuzzy_needs_every_word_but_one_from_three_words(index):
    assert index.rank("star hope") and ids(index.rank("star hope")) == [3]
    assert index.rank("star floats") == []  # two words: both
    hits = index.rank("star wars empire")  # three words: two are enough, all three score best
    assert hits[0].movie_id == 4 and hits[0].score == 100
    assert {h.movie_id for h in hits[1:]} == {3, 5, 6} and {h.score for h in hits[1:]} == {67}


def test_year_narrows_unless_the_whole_query_matches_better(index):
    assert index.search("matirx 1999", 10) == (1999, index.rank("matirx", year=1999))
    assert ids(index.search("matrix 2003", 10)[1]) == [2]
    # "a space" of 2001 would fuzzily find "Sugar & Spice" (2001); the whole query is a prefix
    year, hits = index.search("2001 a space", 10)
    assert year is None and ids(hits) == [11] and hits[0].match == WORD_PREFIX
    assert ids(index.rank("a space", year=2001)) == [12]
    assert index.search("2001", 10)[0] is None  # a title word on its own


def test_genre_filter_and_limit(index):
    assert ids(index.rank("star wras", genre="Animation")) == [5]
    assert ids(index.rank("matrix", genre="Comedy")) == []
    assert ids(index.rank("star wras", genre="Unknown")) == []
    assert ids(index.search("star wars", 2)[1]) == [3, 4]


def test_order_is_class_then_score_then_popularity(index):
    pop = {d["_id"]: d["stats"]["n_ratings"] for d in TITLES}
    for text in (
        "star wars",
        "wars",
        "war",
        "hope",
        "matirx",
        "the",
        "sp",
        "spi",
        "godfather part",
    ):
        keys = [(h.match, h.score, pop[h.movie_id]) for h in index.rank(text)]
        assert keys == sorted(keys, reverse=True), text


# --- over HTTP, on the pipeline's output ---------------------------------------------------------


@pytest.fixture(scope="module")
def served(sample_run, mongo_url):
    """A copy of the pipeline's output on a sample of the bundled data (users 1..80, their movies)."""
    with sample_database(sample_run, "test_search") as (db, _, version):
        yield Settings(mongodb_url=mongo_url, database=db.name), db, version


@pytest.fixture(scope="module")
def app(served):
    wsgi = create_app(served[0])
    yield webtest.TestApp(wsgi)
    wsgi.config["movietime.store"].close()


@pytest.fixture(scope="module")
def validate(app):
    spec = app.get("/openapi.json").json
    registry = Registry().with_resource(
        "urn:spec", Resource.from_contents(spec, default_specification=DRAFT202012)
    )
    return Draft202012Validator(
        {"$ref": "urn:spec#/components/schemas/SearchResults"}, registry=registry
    ).validate


def search(app, q: str, **params) -> dict:
    return app.get("/movies/search?" + urlencode({"q": q, **params})).json


def found(app, q: str, **params) -> list[int]:
    return [r["movieId"] for r in search(app, q, **params)["results"]]


def test_typos_and_middle_words_over_http(app, validate):
    body = search(app, "matirx")
    validate(body)
    assert body["genre"] is None and body["year"] is None
    first = body["results"][0]
    assert first["movieId"] == 2571 and first["name"] == "The Matrix"
    assert first["match"] == "fuzzy" and 0 < first["score"] < 100 and first["n_ratings"] > 0
    assert found(app, "star wras")[:3] == [260, 1196, 1210]  # the most rated Star Wars films first
    assert found(app, "godfater")[:2] == [858, 1221]
    assert found(app, "amelie")[0] == 4973 and found(app, "AMÉLIE") == found(app, "amelie")
    assert 260 in found(app, "hope") and {260, 1196, 1210, 166528} <= set(
        found(app, "wars", limit=50)
    )
    assert found(app, "spiderman")[0] == 5349


def test_relevance_class_then_score_then_popularity_over_http(app):
    rank = {"exact": 3, "word_prefix": 2, "prefix": 1, "fuzzy": 0}
    for q in (
        "star wars",
        "star",
        "hope",
        "matirx",
        "terminatr",
        "lord of the rngs",
        "toy story 2",
        "war",
    ):
        results = search(app, q, limit=50)["results"]
        keys = [(rank[r["match"]], r["score"], r["n_ratings"]) for r in results]
        assert results and keys == sorted(keys, reverse=True), q
    assert len(search(app, "star", limit=2)["results"]) == 2
    hope = search(app, "hope", limit=50)["results"]
    assert hope[0]["name"] == "Hope Floats" and hope[0]["match"] == "word_prefix"
    assert [r["movieId"] for r in hope if r["match"] == "fuzzy"][0] == 260


def test_genre_filter_over_http(app, validate):
    body = search(app, "star wras", genre="ANIMATION")
    validate(body)
    assert body["genre"] == "Animation"
    assert [r["movieId"] for r in body["results"]] == [61160]  # Star Wars: The Clone Wars
    results = (
        search(app, "the", genre="drama", limit=50)["results"]
        + search(app, "love", genre="Drama")["results"]
    )
    assert all("Drama" in r["genres"] for r in results)
    assert found(app, "matrix", genre="Comedy") == []
    res = app.get("/movies/search?q=matrix&genre=Space%20Opera", expect_errors=True)
    assert res.status_int == 400 and res.json["error"]["code"] == "bad_request"
    assert "'genre'" in res.json["error"]["message"] and "Sci-Fi" in res.json["error"]["message"]
    assert (
        app.get("/movies/search?q=matrix&genre=" + "x" * 41, expect_errors=True).status_int == 400
    )


def test_year_over_http(app):
    body = search(app, "matirx 1999")
    assert body["year"] == 1999 and [r["movieId"] for r in body["results"]] == [2571]
    body = search(app, "2001 a space")  # not "Sugar & Spice" (2001)
    assert body["year"] is None and body["results"][0]["movieId"] == 924


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict]] = []

    def started(self, event) -> None:
        cmd = event.command
        self.seen.append(
            (event.command_name, str(cmd.get(event.command_name)), dict(cmd.get("filter") or {}))
        )

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


@pytest.fixture
def cold(served):
    """A new app (cold caches) whose store commands are recorded."""
    settings, db, version = served
    listener = Commands()
    client = pymongo.MongoClient(settings.mongodb_url, event_listeners=[listener])
    wsgi = create_app(settings, db_factory=lambda: client[db.name])
    yield webtest.TestApp(wsgi), listener, schema.versioned_name(schema.MOVIES, version)
    client.close()


def test_titles_are_read_once_per_worker_and_short_queries_never_load_them(cold):
    app, listener, movies = cold
    short = [search(app, q, limit=50) for q in ("up", "it", "o", "sh")]
    assert not any(
        c[0] == "find" and c[1] == movies and not c[2] for c in listener.seen
    )  # no full read
    assert all(
        c[2] and "search.key" in c[2] for c in listener.seen if c[0] == "find" and c[1] == movies
    )
    assert (
        TITLE_INDEXES.peek(app.app.config["movietime.store"], {"version": movies.split("__", 1)[1]})
        is None
    )

    listener.seen.clear()
    search(app, "matirx")  # loads the titles: one read of every movie
    assert [c for c in listener.seen if c[0] == "find" and c[1] == movies and not c[2]] != []
    for q, genre in (("star wras", None), ("wars", "Action"), ("godfater", None)):
        listener.seen.clear()
        search(app, q, **({"genre": genre} if genre else {}))
        reads = [c for c in listener.seen if c[1] == movies]  # at most the details of new hits
        assert len(reads) <= 1 and all(set(c[2]) == {"_id"} for c in reads), reads
    listener.seen.clear()
    search(app, "matirx")
    assert [
        c for c in listener.seen if c[1] == movies
    ] == []  # warm: ranked in memory, details cached

    # the short queries rank the same from memory as through the search.key index
    assert [search(app, q, limit=50) for q in ("up", "it", "o", "sh")] == short


def test_title_indexes_load_once_per_version_and_keep_two(served):
    settings, db, version = served
    store = ServingStore(settings)
    try:
        pointer = store.pointer()
        versions = [dict(pointer, version=f"{version}-{i}") for i in range(3)]  # same collections
        cache = TitleIndexes()
        got = []
        threads = [
            threading.Thread(target=lambda: got.append(cache.get(store, versions[0])))
            for _ in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        first = cache.peek(store, versions[0])
        assert first is not None and len(first) == db[
            pointer["collections"][schema.MOVIES]
        ].count_documents({})
        assert len(got) == 3 and all(
            index is first for index in got
        )  # one load for the three requests
        assert cache.get(store, versions[0]) is first
        cache.get(store, versions[1])
        cache.get(store, versions[2])
        assert cache.peek(store, versions[0]) is None and cache.peek(store, versions[2]) is not None
        assert cache.peek(ServingStore(settings), versions[2]) is None  # per store (per process)
    finally:
        store.close()

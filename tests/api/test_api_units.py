"""API building blocks without a store: parameter parsing, search keys, metrics, JSON encoding."""

from __future__ import annotations

import json
import math

import pytest

from api.app import encode_json
from api.http.body import StringField
from api.http.errors import BadRequest
from api.http.params import ChoiceParam, IntParam, TextParam, parse_request
from api.http.prometheus import Metrics
from api.services.search import (
    EXACT,
    PREFIX,
    WORD_PREFIX,
    KeyRange,
    key_lookups,
    parse_query,
    relevance,
    search_movies,
)

PARAMS = (
    IntParam(name="id", where="path", minimum=1),
    IntParam(name="n", minimum=1, maximum=50, default=10),
    ChoiceParam(name="order", choices=("desc", "asc"), default="desc"),
    TextParam(name="q", max_length=5),
)


def parse(query: str, id: str = "7") -> dict:
    return parse_request(PARAMS, {"id": id}, query)


def test_parse_request_types_defaults_and_case():
    assert parse("") == {"id": 7, "n": 10, "order": "desc", "q": None}
    assert parse("n=50&order=ASC&q=%20ab%20") == {"id": 7, "n": 50, "order": "asc", "q": "ab"}
    assert parse("n=007")["n"] == 7


@pytest.mark.parametrize(
    "query, message",
    [
        ("n=51", "from 1 to 50"),
        ("n=-1", "integer"),
        ("n=1.0", "integer"),
        ("n=1e1", "integer"),
        ("n=%201", "integer"),
        ("n=", "integer"),
        ("n=1&n=1", "2 times"),
        ("order=sideways", "one of desc, asc"),
        ("q=abcdef", "1 to 5 characters"),
        ("q=", "1 to 5"),
        ("N=1", "unknown query parameter 'N'"),
        ("n[$gt]=1", "unknown"),
        ("q=%C3", "UTF-8"),
        ("q=ab%0A", "control characters"),  # a trailing newline too: the schema's pattern says so
        ("q=%09ab", "control characters"),
        ("&".join(f"k{i}=1" for i in range(30)), "too many"),
    ],
)
def test_parse_request_rejects(query, message):
    with pytest.raises(BadRequest, match=message.replace("[", r"\[").replace("$", r"\$")):
        parse(query)


def test_body_strings_refuse_control_characters_anywhere():
    field = StringField(max_length=10)
    assert field.check("  Sci-Fi ", "genre") == "Sci-Fi"
    for value in ("Sci-Fi\n", "\tSci-Fi", "Sci\x00Fi"):
        with pytest.raises(BadRequest, match="control characters"):
            field.check(value, "genre")


def test_path_ids_are_plain_positive_int64():
    assert parse("", id="9223372036854775807")["id"] == 2**63 - 1
    for raw in ("0", "9223372036854775808", "12345678901234567890", "-1", "1_000", "٣"):
        with pytest.raises(BadRequest, match="path parameter 'id'"):
            parse("", id=raw)


def test_query_year_is_taken_out_only_beside_title_words():
    q = parse_query("The Matrix 1999")
    assert (q.text, q.year, q.full) == ("the matrix", 1999, "the matrix 1999")
    assert parse_query("2001").year is None  # a title on its own
    assert parse_query("Amélie!").text == "amelie"
    assert parse_query("blade runner 2049").year == 2049


def test_key_lookups():
    exact, ranges = key_lookups("matrix")
    assert exact[:4] == ["matrix", "the matrix", "a matrix", "an matrix"] and "les matrix" in exact
    assert ranges[:2] == [
        KeyRange("matrix", "matrix\U0010ffff"),
        KeyRange("the matrix", "the matrix\U0010ffff"),
    ]
    exact, ranges = key_lookups("up")
    assert all(r.low.endswith(" ") for r in ranges)  # whole words only
    assert key_lookups("the") == (["the"], [])
    exact, ranges = key_lookups("the matrix")
    assert [r.low for r in ranges] == ["the matrix"]
    assert key_lookups("") == ([], [])


def test_relevance():
    assert relevance("the matrix", "matrix") == EXACT
    assert relevance("the matrix reloaded", "matrix") == WORD_PREFIX
    assert relevance("matrixx", "matrix") == PREFIX
    assert relevance("les miserables", "miserables") == EXACT


class FakeSource:
    """An in-memory stand-in for the movies collection's search.key index (unit test only)."""

    def __init__(self, docs):
        self.docs = docs
        self.calls = 0

    def movies_by_keys(self, pointer, keys, fields):
        self.calls += 1
        return [d for d in self.docs if d["search"]["key"] in keys]

    def movies_by_key_range(self, pointer, low, high, fields):
        self.calls += 1
        return [d for d in self.docs if low <= d["search"]["key"] < high]


def doc(mid, key, year, popularity):
    return {
        "_id": mid,
        "title": key,
        "year": year,
        "search": {"key": key},
        "stats": {"popularity": popularity},
    }


def test_search_ranking_and_year():
    source = FakeSource(
        [
            doc(1, "the matrix", 1999, 0.9),
            doc(2, "the matrix reloaded", 2003, 0.8),
            doc(3, "matrix of fear", 2010, 0.95),
            doc(4, "matrixx", 2001, 0.99),
        ]
    )
    year, found = search_movies(source, None, "matrix", 10)
    assert year is None and [d["_id"] for _, d in found] == [1, 3, 2, 4]
    year, found = search_movies(source, None, "matrix 2003", 10)
    assert year == 2003 and [d["_id"] for _, d in found] == [2]
    assert search_movies(source, None, "matrix", 2)[1][1][1]["_id"] == 3
    source.calls = 0
    search_movies(source, None, "matrix", 10)
    assert source.calls == 1 + 4  # one $in of exact keys, one range per English variant


def test_metrics_render_prometheus_text():
    m = Metrics(buckets=(0.01, 0.1))
    m.observe("/a/<id>", "GET", 200, 0.005)
    m.observe("/a/<id>", "GET", 200, 0.05)
    m.observe('we"ird\\', "GET", 404, 1.0)
    text = m.render().decode()
    assert 'movietime_http_requests_total{method="GET",route="/a/<id>",status="200"} 2.0' in text
    assert 'route="we\\"ird\\\\"' in text and "_created" not in text
    bucket = 'movietime_http_request_duration_seconds_bucket{le="%s",method="GET",route="/a/<id>"}'
    assert bucket % "0.01" + " 1.0" in text and bucket % "+Inf" + " 2.0" in text
    assert 'movietime_http_request_duration_seconds_count{method="GET",route="/a/<id>"} 2.0' in text
    assert "movietime_store_answering 1.0" in text and text.endswith("\n")
    with pytest.raises(ValueError):
        Metrics(buckets=(1.0, 0.5))


def test_json_encoding_is_strict_json():
    body = json.loads(encode_json({"a": math.nan, "b": [math.inf, 1.5], "c": "é"}))
    assert body == {"a": None, "b": [None, 1.5], "c": "é"}
    assert "é".encode() in encode_json({"c": "é"})

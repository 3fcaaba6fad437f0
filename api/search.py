"""Title search over the served movies, backed by the ``search.key`` index.

``search.key`` is ``pipeline.text.search_key`` of the display title: lower-case ASCII with the
article moved back to the front ("Matrix, The" -> "the matrix"). A query is folded the same way
and looked up with a few cheap index reads (SecantusDB decodes every document a query matches,
and scans everything for a ``$or``, so each lookup is one narrow range or one ``$in``):

* one ``$in`` of exact keys: the query, and the query behind each leading article ("matrix" ->
  "the matrix"; "miserables" -> "les miserables");
* one prefix range per English variant: the query ("star wars" -> "star wars episode iv ...")
  and "the/a/an " + query ("matrix" -> "the matrix reloaded");
* a query shorter than ``SearchConfig.min_prefix`` characters matches whole words only ("up"
  finds "Up" and "Up in the Air", not "Upside Down"), and an article alone only itself: a
  one-letter prefix would make the store decode thousands of documents.

A four-digit year in the query ("matrix 1999") narrows the matches to that year; when nothing
matches with the year, the number is searched as part of the title ("2001", "blade runner 2049").
Results are ordered by relevance (exact title, then whole-word prefix, then prefix), then by
popularity. Words in the middle of a title are not searched (a later issue adds fuzzy matching).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.text import fold

ARTICLES = ("the", "a", "an")
#: Other leading articles that MovieLens moves to the end ("Misérables, Les"), folded like
#: pipeline.text.display_name does; matched as whole titles only, to keep lookups few.
OTHER_ARTICLES = ("les", "la", "le", "l", "il", "das", "der", "die", "el", "los", "las")
_YEAR = re.compile(r"^(18[89][0-9]|19[0-9]{2}|20[0-9]{2})$")
KEY_END = "\U0010ffff"

EXACT, WORD_PREFIX, PREFIX = 3, 2, 1


@dataclass(frozen=True)
class SearchConfig:
    min_prefix: int = 3  # shorter queries match whole words only
    max_candidates: int = 5000  # never rank more matches than this (a bound on memory)


DEFAULT_CONFIG = SearchConfig()


@dataclass(frozen=True)
class ParsedQuery:
    text: str  # folded title words, without the year
    year: int | None  # a year given in the query, if any
    full: str  # the whole query folded (the year kept as a title word)


@dataclass(frozen=True)
class KeyRange:
    low: str  # inclusive
    high: str  # exclusive


class MovieSource(Protocol):
    def movies_by_keys(self, pointer: Any, keys: list[str], fields: Any) -> list[dict]: ...

    def movies_by_key_range(self, pointer: Any, low: str, high: str, fields: Any) -> list[dict]: ...


def parse_query(query: str) -> ParsedQuery:
    """Fold ``query`` and take out a four-digit year, if it has one besides title words."""
    full = fold(query)
    words = full.split()
    year = None
    for i in range(len(words) - 1, -1, -1):
        if _YEAR.match(words[i]) and len(words) > 1:
            year = int(words[i])
            words = words[:i] + words[i + 1 :]
            break
    return ParsedQuery(text=" ".join(words), year=year, full=full)


def key_lookups(text: str, config: SearchConfig = DEFAULT_CONFIG) -> tuple[list[str], list[KeyRange]]:
    """``(exact keys, prefix ranges)`` that a folded query ``text`` is looked up with: the exact
    keys in one ``$in`` query, each range in its own query (a ``$or`` of ranges is a full scan
    on SecantusDB)."""
    if not text:
        return [], []
    if text in ARTICLES + OTHER_ARTICLES:
        return [text], []  # an article alone: only a movie called "The" (etc.)
    first = text.split(" ", 1)[0]
    english = [text] if first in ARTICLES else [text, *(f"{a} {text}" for a in ARTICLES)]
    exact = [*english]
    if first not in OTHER_ARTICLES:
        exact += [f"{a} {text}" for a in OTHER_ARTICLES]  # "miserables" -> "les miserables"
    if len(text) < config.min_prefix:  # whole words: "up" finds "Up", not "Upside Down"
        ranges = [KeyRange(v + " ", v + " " + KEY_END) for v in english]
    else:
        ranges = [KeyRange(v, v + KEY_END) for v in english]
    return exact, ranges


def relevance(key: str, text: str) -> int:
    """How well title key ``key`` matches folded query ``text`` (higher is better)."""
    best = 0
    for variant in (text, *(f"{a} {text}" for a in ARTICLES + OTHER_ARTICLES)):
        if key == variant:
            return EXACT
        if key.startswith(variant + " "):
            best = max(best, WORD_PREFIX)
        elif key.startswith(variant):
            best = max(best, PREFIX)
    return best


SEARCH_FIELDS = ("title", "name", "year", "genres", "poster_url", "stats", "search.key")


def search_movies(
    source: MovieSource,
    pointer: Any,
    query: str,
    limit: int,
    config: SearchConfig = DEFAULT_CONFIG,
) -> tuple[int | None, list[tuple[int, dict]]]:
    """``(year, [(relevance, movie doc), ...])``: at most ``limit`` movies, best first; ``year``
    is the year from the query when it narrowed the results (None otherwise)."""
    parsed = parse_query(query)
    attempts: list[tuple[str, int | None]] = []
    if parsed.year is not None:
        attempts.append((parsed.text, parsed.year))
    attempts.append((parsed.full, None))
    for text, year in attempts:
        docs = _candidates(source, pointer, text, config)
        if year is not None:
            docs = [d for d in docs if d.get("year") == year]
        if docs:
            scored = [(relevance(_key(d), text), d) for d in docs]
            scored.sort(
                key=lambda pair: (-pair[0], -_popularity(pair[1]), pair[1].get("title") or "", pair[1]["_id"])
            )
            return year, scored[:limit]
    return None, []


def _candidates(source: MovieSource, pointer: Any, text: str, config: SearchConfig) -> list[dict]:
    exact, ranges = key_lookups(text, config)
    lookups = [functools.partial(source.movies_by_keys, pointer, exact, SEARCH_FIELDS)] if exact else []
    lookups += [
        functools.partial(source.movies_by_key_range, pointer, r.low, r.high, SEARCH_FIELDS) for r in ranges
    ]
    seen: dict[int, dict] = {}
    for lookup in lookups:
        for doc in lookup():
            seen.setdefault(int(doc["_id"]), doc)
        if len(seen) >= config.max_candidates:
            break
    return list(seen.values())


def _key(doc: dict) -> str:
    return ((doc.get("search") or {}).get("key")) or ""


def _popularity(doc: dict) -> float:
    value = (doc.get("stats") or {}).get("popularity")
    return float(value) if isinstance(value, (int, float)) else 0.0

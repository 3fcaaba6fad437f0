"""Title search: matching and ranking titles (the endpoint is ``api.routes.search``).

Titles are compared as ``search.key``: ``contract.titles.search_key`` of the display title, i.e.
lower-case ASCII with the article moved back to the front ("Matrix, The" -> "the matrix"). A
query is folded the same way, so search is case- and accent-insensitive ("AMÉLIE" = "amelie").
Every match has a relevance class, best first:

* ``exact``: the whole title, also behind a leading article ("matrix" -> "The Matrix",
  "miserables" -> "Les Misérables");
* ``word_prefix``: the query is the title's first whole words ("star wars" -> "Star Wars:
  Episode IV - A New Hope"), also behind "the/a/an";
* ``prefix``: the title starts with the query ("matr" -> "The Matrix");
* ``fuzzy``: every query word (besides articles and the like: ``STOPWORDS``) is found anywhere in
  the title, exactly, as the start of a title word, or with typos: one for a word of 4 to 7
  letters, two from 8 letters on (optimal string alignment distance, so a swap of two letters
  is one typo: "matirx", "star wras", "godfater"). Two joined words match too ("starwars",
  "spiderman"). With three or more query words, one may be missing.

Within a class, results are ordered by ``score`` (0 to 100: how closely the query words match;
100 for the first three classes), then by popularity (number of ratings). A query shorter than
``SearchConfig.min_prefix`` characters ("up") matches whole words at the start only ("Up", "Up
in the Air", not "Upside Down"), never fuzzily. A four-digit year in the query ("matrix 1999")
narrows the results to that year, unless the query matches better as a whole, with the number as
a title word ("2001 a space", "blade runner 2049"). ``genre=`` keeps one genre's movies.

Where the titles come from (the store's cost model is in ``api/store/serving.py``): each API worker
reads the served version's titles once, with a narrow projection, into a :class:`TitleIndex`
kept per version (:class:`TitleIndexes`), and ranks every query in memory. The one read decodes
every movie document (seconds for tens of thousands of movies on SecantusDB), so a worker that
has not loaded it yet answers queries of one or two characters through the ``search.key`` index
instead (:func:`search_movies`: an ``$in`` of exact keys and one range per article variant;
it ranks those short queries the same way), and loads the titles on its first longer query.
"""

from __future__ import annotations

import bisect
import functools
import logging
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import OSA

from contract import schema
from contract.titles import fold

log = logging.getLogger("api.search")

ARTICLES = ("the", "a", "an")
#: Other leading articles that MovieLens moves to the end ("Misérables, Les"), folded like
#: contract.titles.display_name does; matched as whole titles only, to keep lookups few.
OTHER_ARTICLES = ("les", "la", "le", "l", "il", "das", "der", "die", "el", "los", "las")
#: Query words that fuzzy matching ignores (they are in too many titles to tell any apart).
STOPWORDS = frozenset(
    (
        *ARTICLES,
        *OTHER_ARTICLES,
        "of",
        "and",
        "in",
        "on",
        "to",
        "for",
        "at",
        "de",
        "du",
        "des",
        "et",
        "und",
        "y",
    )
)
_YEAR = re.compile(r"^(18[89][0-9]|19[0-9]{2}|20[0-9]{2})$")
KEY_END = "\U0010ffff"

EXACT, WORD_PREFIX, PREFIX, FUZZY = 3, 2, 1, 0
MATCH_NAMES = {EXACT: "exact", WORD_PREFIX: "word_prefix", PREFIX: "prefix", FUZZY: "fuzzy"}
FULL_SCORE = 100.0  # the score of an exact or prefix match


@dataclass(frozen=True)
class SearchConfig:
    min_prefix: int = 3  # shorter queries match whole words only, and never fuzzily
    max_candidates: int = 5000  # index path: never rank more matches than this (a bound on memory)
    one_typo_from: int = 4  # query words this long may have one typo ...
    two_typos_from: int = 8  # ... and two from this length on; numbers never
    prefix_similarity: float = 0.9  # a query word that is the start of a title word
    keep_versions: int = 2  # title indexes kept per process: current, and the one requests may hold


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


@dataclass(frozen=True)
class Hit:
    movie_id: int
    match: int  # EXACT, WORD_PREFIX, PREFIX or FUZZY
    score: float  # 0..100 within the class


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


def key_lookups(
    text: str, config: SearchConfig = DEFAULT_CONFIG
) -> tuple[list[str], list[KeyRange]]:
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
    """How well title key ``key`` matches folded query ``text`` by its start (higher is better;
    FUZZY when it does not start with it)."""
    best = FUZZY
    for variant in (text, *(f"{a} {text}" for a in ARTICLES + OTHER_ARTICLES)):
        if key == variant:
            return EXACT
        if key.startswith(variant + " "):
            best = max(best, WORD_PREFIX)
        elif key.startswith(variant):
            best = max(best, PREFIX)
    return best


def max_typos(word: str, config: SearchConfig = DEFAULT_CONFIG) -> int:
    """Typos a query word may have: none in short words or numbers."""
    if not word.isalpha() or len(word) < config.one_typo_from:
        return 0
    return 1 if len(word) < config.two_typos_from else 2


# --- the in-memory title index ---------------------------------------------------------------

#: What the title index reads of each movie (an inclusion projection).
TITLE_PROJECTION = {
    "search.key": 1,
    "year": 1,
    "genres": 1,
    "stats.n_ratings": 1,
    "stats.popularity": 1,
}


class TitleIndex:
    """The titles of one served version, for exact, prefix and fuzzy matching in memory.

    Rows are movies. ``keys`` sorted (with ``by_key``) answer the exact and prefix lookups of
    :func:`key_lookups`; a vocabulary of title words and of joined neighbouring words, with
    postings (the rows holding each, as one CSR array), answers the fuzzy ones. Words are
    bucketed by their first and by their second letter: a typo is looked for among the words
    that start with the query word's first letter, that have it second (the first letter left
    out, or two swapped) or that start with its second letter (a letter added in front), so
    only a typo in the first letter itself is not found.
    """

    def __init__(
        self, docs: Iterable[Mapping[str, Any]], config: SearchConfig = DEFAULT_CONFIG
    ) -> None:
        self.config = config
        ids, keys, years, n_ratings, popularity, genres = [], [], [], [], [], []
        for doc in docs:
            key = (doc.get("search") or {}).get("key")
            if not isinstance(key, str) or not key:
                continue
            stats = doc.get("stats") or {}
            ids.append(int(doc["_id"]))
            keys.append(key)
            years.append(doc.get("year") if isinstance(doc.get("year"), int) else 0)
            n_ratings.append(_number(stats.get("n_ratings")))
            popularity.append(_number(stats.get("popularity")))
            genres.append(doc.get("genres") or ())
        n = len(ids)
        self.ids = np.array(ids, dtype=np.int64)
        self.keys = keys
        self.years = np.array(years, dtype=np.int32)
        self.n_ratings = np.array(n_ratings, dtype=np.float64)
        self.popularity = np.array(popularity, dtype=np.float64)
        genre_rows: dict[str, list[int]] = {}
        for row, names in enumerate(genres):
            for name in names:
                genre_rows.setdefault(str(name), []).append(row)
        self.genres: dict[str, np.ndarray] = {}
        for name, rows in genre_rows.items():
            self.genres[name] = np.zeros(n, dtype=bool)
            self.genres[name][rows] = True
        # tie-break within a class and score: most ratings, then popularity, key and id
        order = sorted(range(n), key=lambda i: (-n_ratings[i], -popularity[i], keys[i], ids[i]))
        self.pop_rank = np.empty(n, dtype=np.int64)
        self.pop_rank[order] = np.arange(n)
        by_key = sorted(range(n), key=lambda i: keys[i])
        self.sorted_keys = [keys[i] for i in by_key]
        self.sorted_rows = np.array(by_key, dtype=np.int64)
        self.by_key: dict[str, list[int]] = {}
        for row, key in enumerate(keys):
            self.by_key.setdefault(key, []).append(row)
        self._build_vocabulary()

    def _build_vocabulary(self) -> None:
        ids: dict[str, int] = {}  # word -> provisional id
        singles: set[str] = set()
        pair_word: list[int] = []
        pair_row: list[int] = []
        for row, key in enumerate(self.keys):
            words = key.split()
            singles.update(words)
            # "starwars" is found like a word of "star wars"
            for w in (*words, *(a + b for a, b in zip(words, words[1:]))):
                pair_word.append(ids.setdefault(w, len(ids)))
                pair_row.append(row)
        self.words = sorted(ids)
        self.word_ids = {w: i for i, w in enumerate(self.words)}
        remap = np.empty(len(ids), dtype=np.int64)
        remap[np.fromiter(ids.values(), dtype=np.int64, count=len(ids))] = np.fromiter(
            (self.word_ids[w] for w in ids), dtype=np.int64, count=len(ids)
        )
        word = remap[np.array(pair_word, dtype=np.int64)]
        row = np.array(pair_row, dtype=np.int64)
        order = np.lexsort((row, word))
        word, row = word[order], row[order]
        first = np.ones(len(word), dtype=bool)  # a word twice in a title: one posting
        first[1:] = (word[1:] != word[:-1]) | (row[1:] != row[:-1])
        word, row = word[first], row[first]
        self.post_rows = row
        self.post_start = np.concatenate(
            ([0], np.cumsum(np.bincount(word, minlength=len(self.words))))
        ).astype(np.int64)
        # typo candidates: single words only (joined ones match exactly or as a prefix)
        by_first: dict[str, list[int]] = {}
        by_second: dict[str, list[int]] = {}
        for i, w in enumerate(self.words):
            if w in singles and w.isalpha():
                by_first.setdefault(w[0], []).append(i)
                if len(w) > 1:
                    by_second.setdefault(w[1], []).append(i)
        self._first = {
            c: ([self.words[i] for i in ids], np.array(ids)) for c, ids in by_first.items()
        }
        self._second = {
            c: ([self.words[i] for i in ids], np.array(ids)) for c, ids in by_second.items()
        }

    def __len__(self) -> int:
        return len(self.ids)

    # --- matching ------------------------------------------------------------------------------

    def word_matches(self, word: str) -> dict[int, float]:
        """Vocabulary ids matching query ``word``, with a similarity in (0, 1]: 1 for the word
        itself, ``prefix_similarity`` for a longer word it starts, ``1 - typos / len(word)``."""
        cfg = self.config
        found: dict[int, float] = {}
        if len(word) >= cfg.min_prefix:
            lo = bisect.bisect_left(self.words, word)
            hi = bisect.bisect_left(self.words, word + KEY_END, lo)
            found.update((i, cfg.prefix_similarity) for i in range(lo, hi))
        k = max_typos(word, cfg)
        if k:
            buckets = [self._first.get(word[0]), self._second.get(word[0])]
            if len(word) > 1 and word[1] != word[0]:
                buckets.append(self._first.get(word[1]))
            for bucket in buckets:
                if bucket is None:
                    continue
                choices, ids = bucket
                dist = process.cdist(
                    [word], choices, scorer=OSA.distance, score_cutoff=k, dtype=np.int32
                )[0]
                for j in np.flatnonzero(dist <= k):
                    sim = 1.0 - float(dist[j]) / len(word)
                    i = int(ids[j])
                    if sim > found.get(i, 0.0):
                        found[i] = sim
        exact = self.word_ids.get(word)
        if exact is not None:
            found[exact] = 1.0
        return found

    def rank(
        self, text: str, year: int | None = None, genre: str | None = None, limit: int | None = None
    ) -> list[Hit]:
        """The movies matching folded query ``text`` (of ``year`` and ``genre`` when given), best
        first: relevance class, then score, then popularity; the first ``limit`` (or all)."""
        n = len(self.ids)
        if not text or not n:
            return []
        cls = np.full(n, -1, dtype=np.int8)
        exact, ranges = key_lookups(text, self.config)
        for key in exact:
            rows = self.by_key.get(key)
            if rows:
                cls[rows] = EXACT
        for r in ranges:
            lo = bisect.bisect_left(self.sorted_keys, r.low)
            hi = bisect.bisect_left(self.sorted_keys, r.high, lo)
            if lo == hi:
                continue
            variant = r.low.rstrip(" ")
            classes = [
                EXACT if key == variant else WORD_PREFIX if key[len(variant)] == " " else PREFIX
                for key in self.sorted_keys[lo:hi]
            ]
            rows = self.sorted_rows[lo:hi]
            cls[rows] = np.maximum(cls[rows], np.array(classes, dtype=np.int8))
        score = np.where(cls >= 0, FULL_SCORE, 0.0)
        if len(text) >= self.config.min_prefix:
            self._fuzzy(text, cls, score)
        keep = cls >= 0
        if year is not None:
            keep &= self.years == year
        if genre is not None:
            keep &= self.genres.get(genre, np.zeros(n, dtype=bool))
        rows = np.flatnonzero(keep)
        order = np.lexsort((self.pop_rank[rows], -score[rows], -cls[rows]))
        rows = rows[order[:limit]]
        return [Hit(int(self.ids[r]), int(cls[r]), float(score[r])) for r in rows]

    def _fuzzy(self, text: str, cls: np.ndarray, score: np.ndarray) -> None:
        """Mark the movies that match every query word (all but one from three words on) as
        FUZZY, unless they already have a better class, with the words' mean similarity."""
        words = [w for w in dict.fromkeys(text.split()) if w not in STOPWORDS]
        if not words:
            return
        n = len(self.ids)
        total = np.zeros(n, dtype=np.float64)
        matched = np.zeros(n, dtype=np.int32)
        for word in words:
            matches = self.word_matches(word)
            if not matches:
                continue
            ids = np.fromiter(matches.keys(), dtype=np.int64, count=len(matches))
            sims = np.fromiter(matches.values(), dtype=np.float64, count=len(matches))
            starts, lengths = self.post_start[ids], self.post_start[ids + 1] - self.post_start[ids]
            offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
            rows = self.post_rows[offsets + np.arange(int(lengths.sum()))]
            best = np.zeros(n, dtype=np.float64)
            np.maximum.at(best, rows, np.repeat(sims, lengths))
            total += best
            matched += best > 0
        need = len(words) if len(words) < 3 else len(words) - 1
        fuzzy = (matched >= need) & (cls < 0)
        cls[fuzzy] = FUZZY
        score[fuzzy] = np.round(100.0 * total[fuzzy] / len(words))

    def search(
        self, query: str, limit: int, genre: str | None = None
    ) -> tuple[int | None, list[Hit]]:
        """``(year, hits)``: at most ``limit`` hits, best first; ``year`` is the query's year
        when it narrowed them: when the rest of the query matches something of that year at
        least as well (by class) as the whole query matches anything."""
        parsed = parse_query(query)
        whole = self.rank(parsed.full, None, genre, limit)
        if parsed.year is not None:
            dated = self.rank(parsed.text, parsed.year, genre, limit)
            if dated and (not whole or dated[0].match >= whole[0].match):
                return parsed.year, dated
        return None, whole


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and value == value else 0.0


class TitleIndexes:
    """Title indexes per store and served version, loaded once each (concurrent requests for
    the same version wait for one load). Versions never change once published, so an index is
    valid for as long as its version is served; the ``keep_versions`` most recent are kept."""

    def __init__(self, config: SearchConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._stores: weakref.WeakKeyDictionary[Any, OrderedDict[str, TitleIndex]] = (
            weakref.WeakKeyDictionary()
        )
        self._loading: dict[tuple[int, str], threading.Lock] = {}

    def peek(self, store: Any, pointer: Mapping) -> TitleIndex | None:
        with self._lock:
            return self._stores.get(store, {}).get(pointer["version"])

    def get(self, store: Any, pointer: Mapping) -> TitleIndex:
        version = pointer["version"]
        with self._lock:
            loaded = self._stores.setdefault(store, OrderedDict())
            index = loaded.get(version)
            if index is not None:
                loaded.move_to_end(version)
                return index
            load_lock = self._loading.setdefault((id(store), version), threading.Lock())
        with load_lock:
            index = self.peek(store, pointer)
            if index is None:
                try:
                    index = load_title_index(store, pointer, self.config)
                finally:  # loaded or failed: the next request starts afresh
                    with self._lock:
                        if index is not None:
                            loaded[version] = index
                            while len(loaded) > self.config.keep_versions:
                                loaded.popitem(last=False)
                        self._loading.pop((id(store), version), None)
        return index


def load_title_index(
    store: Any, pointer: Mapping, config: SearchConfig = DEFAULT_CONFIG
) -> TitleIndex:
    """Read the served version's titles (every movie, ``TITLE_PROJECTION``) into a TitleIndex.

    Once per version and worker, and it decodes every movie document on SecantusDB: a longer
    deadline than ordinary reads (``ServingStore.long_read``)."""
    started = time.perf_counter()
    movies = store.collection(pointer, schema.MOVIES)
    docs = store.long_read(lambda: list(movies.find({}, TITLE_PROJECTION)))
    read = time.perf_counter() - started
    index = TitleIndex(docs, config)
    log.info(
        "title index of %s: %d movies, %d words; read %.3f s, built %.3f s",
        pointer["version"],
        len(index),
        len(index.words),
        read,
        time.perf_counter() - started - read,
    )
    return index


TITLE_INDEXES = TitleIndexes()


# --- the search.key index path (short queries before the title index is loaded) ---------------


class MovieSource(Protocol):
    def movies_by_keys(self, pointer: Any, keys: list[str], fields: Any) -> list[dict]: ...

    def movies_by_key_range(self, pointer: Any, low: str, high: str, fields: Any) -> list[dict]: ...


SEARCH_FIELDS = ("title", "name", "year", "genres", "poster_url", "stats", "search.key")


def search_movies(
    source: MovieSource,
    pointer: Any,
    query: str,
    limit: int,
    config: SearchConfig = DEFAULT_CONFIG,
    genre: str | None = None,
) -> tuple[int | None, list[tuple[int, dict]]]:
    """Exact and prefix matches through the ``search.key`` index (no fuzzy matching):
    ``(year, [(relevance, movie doc), ...])``, at most ``limit`` movies, best first (class, then
    popularity as in :class:`TitleIndex`); ``year`` is the year from the query when it narrowed
    the results (None otherwise)."""
    parsed = parse_query(query)
    attempts: list[tuple[str, int | None]] = []
    if parsed.year is not None:
        attempts.append((parsed.text, parsed.year))
    attempts.append((parsed.full, None))
    for text, year in attempts:
        docs = _candidates(source, pointer, text, config)
        if year is not None:
            docs = [d for d in docs if d.get("year") == year]
        if genre is not None:
            docs = [d for d in docs if genre in (d.get("genres") or ())]
        if docs:
            scored = [(relevance(_key(d), text), d) for d in docs]
            scored.sort(
                key=lambda pair: (
                    -pair[0],
                    -_number((pair[1].get("stats") or {}).get("n_ratings")),
                    -_number((pair[1].get("stats") or {}).get("popularity")),
                    _key(pair[1]),
                    pair[1]["_id"],
                )
            )
            return year, scored[:limit]
    return None, []


def _candidates(source: MovieSource, pointer: Any, text: str, config: SearchConfig) -> list[dict]:
    exact, ranges = key_lookups(text, config)
    lookups = (
        [functools.partial(source.movies_by_keys, pointer, exact, SEARCH_FIELDS)] if exact else []
    )
    lookups += [
        functools.partial(source.movies_by_key_range, pointer, r.low, r.high, SEARCH_FIELDS)
        for r in ranges
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

"""``GET /movies/search``: the handler and its declaration (matching: ``api.services.search``)."""

from __future__ import annotations

from collections.abc import Mapping

from api.http.endpoint import Context, Endpoint
from api.http.errors import BadRequest
from api.http.params import IntParam, TextParam
from api.http.views import movie_stats, movie_summary
from api.services.search import (
    DEFAULT_CONFIG,
    FULL_SCORE,
    MATCH_NAMES,
    TITLE_INDEXES,
    search_movies,
)
from contract.titles import fold


def movie_search(ctx: Context, q: str, limit: int, genre: str | None) -> dict:
    if not fold(q):
        raise BadRequest("query parameter 'q' must contain a letter or a digit")
    pointer = ctx.pointer
    if genre is not None:
        genre = ctx.genre(genre)
    index = TITLE_INDEXES.peek(ctx.store, pointer)
    if index is None and len(fold(q)) < DEFAULT_CONFIG.min_prefix:
        # one or two characters: a few index reads instead of loading every title first
        year, found = search_movies(ctx.store, pointer, q, limit, genre=genre)
        ctx.store.remember_movies(pointer, (doc for _, doc in found))
        results = [_result(doc["_id"], doc, rel, FULL_SCORE) for rel, doc in found]
    else:
        index = index or TITLE_INDEXES.get(ctx.store, pointer)
        year, hits = index.search(q, limit, genre)
        details = ctx.store.movie_details(pointer, (h.movie_id for h in hits))
        results = [_result(h.movie_id, details.get(h.movie_id), h.match, h.score) for h in hits]
    return {
        "query": q,
        "year": year,
        "genre": genre,
        "model_version": pointer["version"],
        "results": results,
    }


def _result(movie_id: int, doc: Mapping | None, match: int, score: float) -> dict:
    return {
        **movie_summary(movie_id, doc),
        "match": MATCH_NAMES[match],
        "score": score,
        **movie_stats(doc),
    }


SEARCH_ENDPOINT = Endpoint(
    "/movies/search",
    movie_search,
    "Search movies by title",
    description=(
        "Case- and accent-insensitive title search with prefix and fuzzy matching: 'matrix' "
        "finds 'The Matrix', 'matirx' and 'star wras' find them despite the typos, 'hope' finds "
        "'Star Wars: Episode IV - A New Hope'. A four-digit year in the query narrows the results "
        "to that year. Ordered by relevance (match: exact title, whole-word prefix, prefix, "
        "fuzzy), then score, then popularity. Queries of one or two characters match whole "
        "words at the start only."
    ),
    params=(
        TextParam(
            name="q",
            required=True,
            min_length=1,
            max_length=100,
            description="title words, optionally with a year: 'matrix 1999'",
        ),
        IntParam(
            name="limit",
            minimum=1,
            maximum=50,
            default=10,
            description="at most this many (1 to 50)",
        ),
        TextParam(
            name="genre",
            max_length=40,
            description="only movies of this genre, case-insensitive: one of the data set's genres "
            "(Action, Adventure, Animation, Children, Comedy, Crime, Documentary, Drama, Fantasy, "
            "Film-Noir, Horror, IMAX, Musical, Mystery, Romance, Sci-Fi, Thriller, War, Western "
            "for the bundled data)",
        ),
    ),
    response="SearchResults",
    errors=(400, 503),
    tag="movies",
)

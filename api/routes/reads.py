"""The endpoints of the Movie Time API: handlers and their declarations (``ENDPOINTS``)."""

from __future__ import annotations

import math
from datetime import UTC
from typing import Any

import pymongo
from pymongo.errors import PyMongoError

from api.http import docs_page
from api.http.endpoint import SERVED_FROM, Context, Endpoint, Reply
from api.http.errors import NotFound, NotReady, StoreUnavailable
from api.http.params import (
    ChoiceParam,
    IntParam,
    TextParam,
    cluster_id,
    movie_id,
    page_params,
    user_id,
    variety_params,
)
from api.http.prometheus import CONTENT_TYPE as METRICS_TYPE
from api.http.views import iso_time, movie_summary, page_slice, paged
from api.routes.groups import ENDPOINTS as GROUP_ENDPOINTS
from api.routes.lists import ENDPOINTS as LIST_ENDPOINTS
from api.routes.search import SEARCH_ENDPOINT
from api.routes.writes import ENDPOINTS as USER_WRITES
from api.services.live import rated_entries
from api.services.recommendations import ListRequest, recommend
from api.web import page as web_page
from api.web import static_asset

RATED_SORT_KEYS = {
    "timestamp": lambda r: (r.get("timestamp", 0), r["movieId"]),
    "rating": lambda r: (r.get("rating", 0.0), r.get("timestamp", 0), r["movieId"]),
    "movieId": lambda r: (r["movieId"],),
}


# --- users -----------------------------------------------------------------------------------


def user_recommendations(
    ctx: Context,
    id: int,
    n: int,
    genre: str | None,
    diversity: float,
    exclude: frozenset[int] | None,
) -> dict:
    if genre is not None:
        genre = ctx.genre(genre)
    ask = ListRequest(n, genre, diversity, exclude or frozenset())
    return recommend(ctx.store, ctx.pointer, id, ask)


def user_rated(ctx: Context, id: int, page: int, per_page: int, sort: str, order: str) -> dict:
    pointer = ctx.pointer
    user = ctx.store.user(pointer, id, ("ratings_packed", "ratings"))
    live = ctx.store.live.profile(id, with_events=True)
    if user is None and live is None:
        raise NotFound(f"user {id} not found")
    ratings = rated_entries(user)
    if live and live.get("ratings"):
        ratings = _with_live_ratings(ratings, live)
    ratings.sort(key=RATED_SORT_KEYS[sort], reverse=order == "desc")
    window = ratings[page_slice(len(ratings), page, per_page)]
    details = ctx.store.movie_details(pointer, (r["movieId"] for r in window))
    items = [
        {
            **movie_summary(r["movieId"], details.get(int(r["movieId"]))),
            "rating": r.get("rating"),
            "timestamp": r.get("timestamp"),
            "rated_at": iso_time(r.get("timestamp")),
        }
        for r in window
    ]
    extra = {"userId": id, "model_version": pointer["version"], "sort": sort, "order": order}
    return paged(items, len(ratings), page, per_page, **extra)


def _with_live_ratings(ratings: list[dict], profile: dict) -> list[dict]:
    """Training ratings overlaid with the profile's live ratings (the last event of a movie
    gives its rating and time)."""
    when = {}
    for ev in profile.get("events") or ():
        if ev.get("type") == "rating" and isinstance(ev.get("movieId"), int):
            at = ev.get("at")
            when[ev["movieId"]] = int(at.replace(tzinfo=at.tzinfo or UTC).timestamp()) if at else 0
    live = {int(k): float(v) for k, v in profile["ratings"].items() if k.isdigit()}
    out = [r for r in ratings if int(r["movieId"]) not in live]
    out += [{"movieId": m, "rating": v, "timestamp": when.get(m, 0)} for m, v in live.items()]
    return out


def cluster_users(ctx: Context, cluster: int, page: int, per_page: int) -> dict:
    pointer = ctx.pointer
    _cluster_doc(ctx, cluster)
    members = ctx.store.cluster_members(pointer, cluster)
    window = page_slice(len(members), page, per_page)
    items = [
        {
            "userId": members.ids[i],
            "n_ratings": members.n_ratings[i] if members.n_ratings[i] >= 0 else None,
            "mean_rating": None if math.isnan(members.mean[i]) else members.mean[i],
        }
        for i in range(window.start, window.stop)
    ]
    return paged(
        items, len(members), page, per_page, cluster=cluster, model_version=pointer["version"]
    )


# --- movies ----------------------------------------------------------------------------------


def cluster_movies(ctx: Context, cluster: int, page: int, per_page: int) -> dict:
    pointer = ctx.pointer
    top = _cluster_doc(ctx, cluster).get("top_movies") or []
    window = page_slice(len(top), page, per_page)
    items = _scored_movies(ctx, top[window], first_rank=window.start + 1)
    return paged(items, len(top), page, per_page, cluster=cluster, model_version=pointer["version"])


def movie_metadata(ctx: Context, id: int) -> dict:
    pointer = ctx.pointer
    # versioned documents never change: kept per version and process, like users' lists
    doc = ctx.store.cached(pointer, ("metadata", id), lambda: ctx.store.metadata(pointer, id))
    if doc is None:
        raise NotFound(f"movie {id} not found")
    fields = {
        key: default if doc.get(key) is None else doc[key]
        for key, default in _METADATA_DEFAULTS.items()
    }
    return {"movieId": id, "model_version": pointer["version"], **fields}


_METADATA_DEFAULTS: dict[str, Any] = {
    key: None
    for key in (
        "tmdbId",
        "imdbId",
        "title",
        "overview",
        "tagline",
        "runtime",
        "release_date",
        "original_language",
        "poster_path",
        "poster_url",
        "vote_average",
        "vote_count",
        "collection",
        "source",
    )
} | {"keywords": [], "companies": [], "tags": []}


def movie_similar(ctx: Context, id: int, n: int) -> dict:
    pointer = ctx.pointer
    doc = ctx.store.movie_details(pointer, [id])[id]  # both cached per version and process
    if doc is None:
        raise NotFound(f"movie {id} not found")
    similar = [
        {"movieId": m, "score": score}
        for m, score in ctx.store.similar_lists(pointer, [id])[id][:n]
    ]
    return {
        **movie_summary(id, doc),
        "model_version": pointer["version"],
        "similar": _scored_movies(ctx, similar),
    }


# --- onboarding ------------------------------------------------------------------------------


def onboarding_movies(ctx: Context, page: int, per_page: int) -> dict:
    """The movies the questionnaire asks about, in its order: the served version's most rated
    (``benchmarks.onboarding`` compares this order with more informative ones)."""
    pointer = ctx.pointer
    ids = ctx.store.model(pointer).popular
    window = page_slice(len(ids), page, per_page)
    details = ctx.store.movie_details(pointer, ids[window])
    items = [
        {**movie_summary(m, details.get(m)), "rank": rank}
        for rank, m in enumerate(ids[window], start=window.start + 1)
    ]
    return paged(items, len(ids), page, per_page, model_version=pointer["version"])


# --- clusters --------------------------------------------------------------------------------


def clusters_list(ctx: Context) -> dict:
    pointer = ctx.pointer
    docs = ctx.store.clusters(pointer)
    clusters = [_cluster_view(ctx, docs[cid]) for cid in sorted(docs)]
    return {"model_version": pointer["version"], "clusters": clusters}


def cluster_detail(ctx: Context, id: int) -> dict:
    doc = _cluster_doc(ctx, id)
    view = _cluster_view(ctx, doc)
    profile = {str(k): float(v) for k, v in (doc.get("profile") or {}).items()}
    return {
        "clusterId": view["clusterId"],
        "model_version": ctx.pointer["version"],
        "size": view["size"],
        "persona": view["persona"],
        "profile": profile,
        "top_movies": view["top_movies"],
    }


def _cluster_doc(ctx: Context, cluster: int) -> dict:
    doc = ctx.store.clusters(ctx.pointer).get(cluster)
    if doc is None:
        raise NotFound(f"cluster {cluster} not found")
    return doc


def _cluster_view(ctx: Context, doc: dict) -> dict:
    return {
        "clusterId": int(doc["_id"]),
        "size": int(doc.get("size") or 0),
        "persona": [str(g) for g in doc.get("persona") or ()],
        "top_movies": _scored_movies(ctx, doc.get("top_movies") or []),
    }


def _scored_movies(ctx: Context, entries: list, first_rank: int = 1) -> list[dict]:
    entries = [e for e in entries if isinstance(e, dict) and "movieId" in e]
    details = ctx.store.movie_details(ctx.pointer, (e["movieId"] for e in entries))
    out = []
    for rank, entry in enumerate(entries, start=first_rank):
        mid = int(entry["movieId"])
        score = entry.get("score")
        score = float(score) if isinstance(score, (int, float)) else None
        out.append({**movie_summary(mid, details.get(mid)), "score": score, "rank": rank})
    return out


# --- service ---------------------------------------------------------------------------------


HEALTH_DEADLINE_S = 0.15  # /health answers within about this long, the store answering or not


def health(ctx: Context) -> dict | Reply:
    """``ok`` when the store answers within ``HEALTH_DEADLINE_S``; ``degraded`` (still 200: this
    worker serves what it holds) when it does not but a served version is in memory; 503
    otherwise. Never waits for a store that another request already found not answering."""
    store = ctx.store
    if not store.down:
        try:
            with pymongo.timeout(HEALTH_DEADLINE_S):
                store.ping()
                pointer = store.pointer(fresh=True)
            return {
                "status": "ok",
                "store": "ok",
                "model_version": pointer["version"],
                "published_at": iso_time(pointer.get("published_at")),
            }
        except NotReady as exc:
            return _health_down("empty", exc)
        except (PyMongoError, StoreUnavailable):
            pass
    pointer = store.last_pointer
    if pointer is None:
        return _health_down("unavailable", StoreUnavailable())
    body = {
        "status": "degraded",
        "store": "not_answering",
        "model_version": pointer["version"],
        "published_at": iso_time(pointer.get("published_at")),
        "store_down_s": round(store.availability.down_for, 3),
    }
    return Reply(body, headers={SERVED_FROM: "memory"})


def _health_down(store: str, exc: NotReady | StoreUnavailable) -> Reply:
    body = {"status": "unavailable", "store": store, **exc.body()}
    return Reply(body, status=exc.status, headers=exc.headers)


def metrics(ctx: Context) -> Reply:
    return Reply(ctx.app_info["metrics"].render(), content_type=METRICS_TYPE)


def openapi_spec(ctx: Context) -> dict:
    return ctx.app_info["spec"]()


def docs(ctx: Context) -> Reply:
    return Reply(docs_page.render(ctx.app_info["spec"]()), content_type="text/html; charset=utf-8")


# --- declarations ----------------------------------------------------------------------------

PAGE, PER_PAGE = page_params()

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "/user/<id>/recommendation",
        user_recommendations,
        "A user's top recommendations",
        description=(
            "The user's precomputed top list (rank order), optionally only one genre and without "
            "the movies in exclude, cut to n; diversity above 0 re-ranks the list's candidates "
            "for variety in genres first. A user without a list gets a labelled fallback (source "
            "fallback_cluster or fallback_popular) of movies they have not rated, with "
            "predicted_rating null. With a genre filter or exclusions fewer than n items may come "
            "back (50 are precomputed)."
        ),
        params=(
            user_id(),
            IntParam(name="n", minimum=1, maximum=50, default=10, description="how many (1 to 50)"),
            TextParam(
                name="genre",
                max_length=40,
                description="only movies of this genre, case-insensitive: one of the data "
                "set's genres (Action, Adventure, Animation, Children, Comedy, "
                "Crime, Documentary, Drama, Fantasy, Film-Noir, Horror, IMAX, "
                "Musical, Mystery, Romance, Sci-Fi, Thriller, War, Western for "
                "the bundled data)",
            ),
            *variety_params(),
        ),
        response="Recommendations",
        errors=(400, 404, 503),
        tag="users",
    ),
    Endpoint(
        "/user/<id>/rated",
        user_rated,
        "The movies a user rated",
        description="The user's ratings with movie details, sorted and paginated.",
        params=(
            user_id(),
            PAGE,
            PER_PAGE,
            ChoiceParam(
                name="sort",
                choices=("timestamp", "rating", "movieId"),
                default="timestamp",
                description="sort key (ties: by timestamp, then movieId)",
            ),
            ChoiceParam(
                name="order", choices=("desc", "asc"), default="desc", description="sort order"
            ),
        ),
        response="RatedPage",
        errors=(400, 404, 503),
        tag="users",
    ),
    *USER_WRITES,
    Endpoint(
        "/onboarding/movies",
        onboarding_movies,
        "Movies the questionnaire asks about",
        description=(
            "The movies a new user is asked to rate if they have seen them, in order: the most "
            "rated of the served version first, so that most people find movies they know on the "
            "first pages. Rate the ones you have seen in POST /users."
        ),
        params=page_params(default_per_page=12, max_per_page=50),
        response="OnboardingMoviePage",
        errors=(400, 503),
        tag="users",
    ),
    *LIST_ENDPOINTS,
    *GROUP_ENDPOINTS,
    Endpoint(
        "/user/list/<cluster>",
        cluster_users,
        "Users of a cluster",
        description="Users assigned to the cluster, ordered by userId, paginated.",
        params=(cluster_id(), PAGE, PER_PAGE),
        response="ClusterUserPage",
        errors=(400, 404, 503),
        tag="clusters",
    ),
    Endpoint(
        "/movie/list/<cluster>",
        cluster_movies,
        "Favourite movies of a cluster",
        description="The cluster's favourite movies (best first) with details, paginated.",
        params=(cluster_id(), PAGE, PER_PAGE),
        response="ClusterMoviePage",
        errors=(400, 404, 503),
        tag="clusters",
    ),
    Endpoint(
        "/movie/<id>/metadata",
        movie_metadata,
        "TMDB metadata and tags of a movie",
        params=(movie_id(),),
        response="Metadata",
        errors=(400, 404, 503),
        tag="movies",
    ),
    Endpoint(
        "/movie/<id>/similar",
        movie_similar,
        "Movies similar to a movie",
        description="Precomputed similar movies (collaborative and content blend), best first.",
        params=(
            movie_id(),
            IntParam(
                name="n",
                minimum=1,
                maximum=50,
                default=20,
                description="how many (1 to 50; 20 are precomputed)",
            ),
        ),
        response="SimilarMovies",
        errors=(400, 404, 503),
        tag="movies",
    ),
    SEARCH_ENDPOINT,
    Endpoint(
        "/clusters",
        clusters_list,
        "All user clusters",
        description="Every cluster with its size, persona (top genres) and favourite movies.",
        response="Clusters",
        errors=(503,),
        tag="clusters",
    ),
    Endpoint(
        "/clusters/<id>",
        cluster_detail,
        "One user cluster",
        description="A cluster with its genre profile and favourite movies.",
        params=(cluster_id("id"),),
        response="ClusterDetail",
        errors=(400, 404, 503),
        tag="clusters",
    ),
    Endpoint(
        "/health",
        health,
        "Liveness and store check",
        description="200 when the store answers a ping and a model is published; 503 otherwise.",
        response="Health",
        errors=(503,),
        tag="service",
    ),
    Endpoint(
        "/metrics",
        metrics,
        "Prometheus metrics of every worker process",
        description=(
            "Request counts by route template, method and status; latency histograms of requests "
            "and of store commands; whether the store answers. One scrape adds up every gunicorn "
            "worker (prometheus-client's multiprocess mode)."
        ),
        content="text/plain",
        errors=(),
        tag="service",
    ),
    Endpoint(
        "/openapi.json",
        openapi_spec,
        "This API's OpenAPI 3.1 description",
        content="application/json",
        errors=(),
        tag="service",
    ),
    Endpoint(
        "/docs",
        docs,
        "Human-readable API documentation (HTML)",
        content="text/html",
        errors=(),
        tag="service",
    ),
    Endpoint(
        "/",
        web_page,
        "The Movie Time web page (HTML)",
        description=(
            "The page people use: onboarding, recommendations with like, dislike and rating, "
            "movie details with similar movies, title search and shareable lists. Plain HTML, CSS "
            "and JavaScript (api/web) that talk to this API only; sent with a strict "
            "Content-Security-Policy and revalidated on each visit (ETag)."
        ),
        content="text/html",
        errors=(),
        tag="service",
    ),
    Endpoint(
        "/static/<name>",
        static_asset,
        "A file of the web page (script, style sheet, icon)",
        description=(
            "Only the files of api/web with a known type, by exact name (no other path is "
            "reachable): text/css, text/javascript, image/svg+xml or image/png. With the content "
            "version the page links to (v) the file may be cached for a year; without it, it is "
            "revalidated (ETag, 304)."
        ),
        params=(
            TextParam(
                name="name", where="path", max_length=64, description="the file's name, e.g. app.js"
            ),
            TextParam(
                name="v",
                max_length=64,
                description="the file's content version, as the page links to it (cache busting)",
            ),
        ),
        content="*/*",
        errors=(400, 404),
        tag="service",
    ),
)

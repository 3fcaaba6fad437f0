"""A user's recommendations: the re-scored list of a user with live feedback, the precomputed
list, or a labelled fallback when there is none.

* ``live``: the user has a ``profiles`` document (onboarded, or sent ratings or feedback): their
  list re-scored at request time from training ratings plus live events (``api.services.live``).

* ``precomputed``: the user document's ``top`` (the pipeline's ranked top 50, in rank order),
  filtered by genre, then cut to ``n``.
* ``fallback_cluster``: no list (a user the last run could not score): the favourites of the
  user's cluster that the user has not rated, topped up with popular movies when fewer than n.
* ``fallback_popular``: no cluster favourites left: the most popular movies (``models`` doc
  ``artifacts.popular``) the user has not rated.

Fallback items have ``predicted_rating: null``: no model estimate was made for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from api.http.errors import NotFound
from api.http.views import has_genre, movie_summary
from api.services.live import live_list, read_training_ratings
from api.store.serving import ServingStore
from contract.schema import REASON_TEXTS

USER_FIELDS = ("cluster", "top", "model_version")


def recommend(
    store: ServingStore, pointer: Mapping, user_id: int, n: int, genre: str | None
) -> dict[str, Any]:
    profile = store.live.profile(user_id)
    if profile is not None:
        return {
            "userId": user_id,
            "model_version": pointer["version"],
            "source": "live",
            "genre": genre,
            "recommendations": live_items(store, pointer, user_id, profile, n, genre),
        }
    # served documents never change: a user's list is read once per version and process
    user = store.cached(
        pointer, ("user", user_id), lambda: _compact(store.user(pointer, user_id, USER_FIELDS))
    )
    if user is None:
        raise NotFound(f"user {user_id} not found")
    top = user["top"]
    if top:
        source = "precomputed"
        items = _precomputed(store, pointer, top, n, genre)
    else:
        source, items = _fallback(store, pointer, user_id, user.get("cluster"), n, genre)
    return {
        "userId": user_id,
        "model_version": pointer["version"],
        "source": source,
        "genre": genre,
        "recommendations": items,
    }


_SHARED: dict = {}  # equal reasons of all cached lists share one object


def _compact(user: Mapping | None) -> dict | None:
    """What a cached user keeps: the cluster and the list as tuples, reasons shared (about a
    tenth of the decoded document's memory)."""
    if user is None:
        return None
    top = []
    for entry in user.get("top") or ():
        if isinstance(entry, Mapping) and "movieId" in entry:
            reason = _reason(entry.get("reason"))
            key = (
                None if reason is None else (reason["kind"], reason.get("movieId"), reason["text"])
            )
            reason = (
                _SHARED.setdefault(key, reason)
                if key is not None and len(_SHARED) < 200_000
                else reason
            )
            top.append(
                (int(entry["movieId"]), entry.get("score"), entry.get("predicted_rating"), reason)
            )
    return {"cluster": user.get("cluster"), "top": tuple(top)}


def live_items(
    store: ServingStore, pointer: Mapping, user_id: int, profile: Mapping, n: int, genre: str | None
) -> list[dict]:
    """The re-scored list of a user with live feedback (see ``api.services.live``)."""
    result, reasons = live_list(store, pointer, user_id, profile)
    details = store.movie_details(pointer, (int(m) for m in result.movie_ids))
    items = []
    for mid, score, predicted, reason in zip(
        result.movie_ids, result.scores, result.predicted, reasons
    ):
        d = details.get(int(mid))
        if d is None or not has_genre(d, genre):
            continue
        items.append(_item(int(mid), d, round(float(predicted), 3), round(float(score), 5), reason))
        if len(items) == n:
            break
    return items


def _precomputed(store, pointer, top, n, genre) -> list[dict]:
    wanted = top if genre is not None else top[:n]  # a genre filter may need the whole list
    details = store.movie_details(pointer, (e[0] for e in wanted))
    items = []
    for mid, score, predicted, reason in wanted:
        if not has_genre(details.get(mid), genre):
            continue
        items.append(
            _item(mid, details.get(mid), predicted, score, dict(reason) if reason else None)
        )
        if len(items) == n:
            break
    return items


def _fallback(store, pointer, user_id, cluster_id, n, genre) -> tuple[str, list[dict]]:
    rated = set(read_training_ratings(store, pointer, user_id)[0].tolist())
    candidates: list[tuple[int, float | None, dict]] = []  # movieId, score, reason
    from_cluster = 0
    if isinstance(cluster_id, int):
        cluster = store.clusters(pointer).get(cluster_id) or {}
        for fav in cluster.get("top_movies") or ():
            mid = int(fav["movieId"])
            if mid not in rated:
                candidates.append((mid, fav.get("score"), _reason_of("cluster_favourite")))
        from_cluster = len(candidates)
    seen = {c[0] for c in candidates}
    for mid in store.model(pointer).popular:
        if mid not in rated and mid not in seen:
            candidates.append((mid, None, _reason_of("popular")))
    details = store.movie_details(pointer, (c[0] for c in candidates))
    items = []
    n_cluster_items = 0
    for i, (mid, score, reason) in enumerate(candidates):
        d = details.get(mid)
        if d is None or not has_genre(d, genre):
            continue
        if score is None:
            score = (d.get("stats") or {}).get("popularity")
        items.append(_item(mid, d, None, score, reason))
        n_cluster_items += i < from_cluster
        if len(items) == n:
            break
    return ("fallback_cluster" if n_cluster_items else "fallback_popular"), items


def _reason_of(kind: str) -> dict[str, str]:
    return {"kind": kind, "text": REASON_TEXTS[kind]}


def _item(mid: int, details, predicted_rating, score, reason) -> dict[str, Any]:
    summary = movie_summary(mid, details)
    return {
        **summary,
        "predicted_rating": _number(predicted_rating),
        "score": _number(score),
        "reason": reason,
    }


def _reason(reason: Any) -> dict[str, Any] | None:
    if not isinstance(reason, Mapping):
        return None
    out: dict[str, Any] = {"kind": reason.get("kind"), "text": reason.get("text")}
    if reason.get("movieId") is not None:
        out["movieId"] = int(reason["movieId"])
    return out


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

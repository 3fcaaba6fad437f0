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

Whatever the source, movies in ``exclude`` are left out, and ``diversity`` > 0 re-ranks every
remaining candidate (up to the list's 50, with the genre filter) for variety before the cut to
``n`` (``contract.diversity``); ``diversity`` 0 is the list as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from api.http.errors import NotFound
from api.http.views import has_genre, movie_summary
from api.services.live import live_list, read_training_ratings
from api.store.serving import ServingStore
from contract.diversity import genre_similarity, rerank
from contract.reasons import evidence, explained
from contract.schema import REASON_TEXTS

USER_FIELDS = ("cluster", "top", "model_version")


@dataclass(frozen=True)
class ListRequest:
    """What a caller asks of a list besides its user."""

    n: int = 10
    genre: str | None = None
    diversity: float = 0.0
    exclude: frozenset[int] = frozenset()

    @property
    def limit(self) -> int | None:
        """How many candidates a source must give: n, or all it has when they are re-ranked."""
        return self.n if self.diversity == 0.0 else None

    def wants(self, movie_id: int, details: Mapping | None) -> bool:
        return movie_id not in self.exclude and has_genre(details, self.genre)

    def cut(self, items: list[dict]) -> list[dict]:
        if self.diversity == 0.0:
            return items[: self.n]
        places = rerank(genre_similarity([i["genres"] for i in items]), self.diversity, self.n)
        return [items[p] for p in places]


def recommend(
    store: ServingStore, pointer: Mapping, user_id: int, ask: ListRequest
) -> dict[str, Any]:
    profile = store.live.profile(user_id)
    head = {"userId": user_id, "model_version": pointer["version"]}
    asked = {"genre": ask.genre, "diversity": ask.diversity}
    if profile is not None:
        items = live_items(store, pointer, user_id, profile, ask)
        items = with_evidence(store, pointer, items, profile.get("cluster"), profile.get("genres"))
        return {**head, "source": "live", **asked, "recommendations": items}
    # served documents never change: a user's list is read once per version and process
    user = store.cached(
        pointer, ("user", user_id), lambda: _compact(store.user(pointer, user_id, USER_FIELDS))
    )
    if user is None:
        raise NotFound(f"user {user_id} not found")
    top = user["top"]
    if top:
        source = "precomputed"
        items = ask.cut(_precomputed(store, pointer, top, ask))
    else:
        items = ask.cut(_fallback(store, pointer, user_id, user.get("cluster"), ask))
        from_cluster = any(i["reason"]["kind"] == "cluster_favourite" for i in items)
        source = "fallback_cluster" if from_cluster else "fallback_popular"
    items = with_evidence(store, pointer, items, user.get("cluster"))
    return {**head, "source": source, **asked, "recommendations": items}


def with_evidence(
    store: ServingStore,
    pointer: Mapping,
    items: list[dict],
    cluster: Any = None,
    genres: Any = None,
) -> list[dict]:
    """The items with each reason's evidence (``contract.reasons``): the terms a liked movie
    shares with the item, the persona genres of the user's ``cluster`` the item has, the stated
    ``genres`` it has. New reason objects: the ones given may be cached."""
    seeds = [i["reason"]["movieId"] for i in items if (i.get("reason") or {}).get("movieId")]
    details = store.movie_details(pointer, [*(i["movieId"] for i in items), *seeds])
    persona: list[str] = []
    if isinstance(cluster, int):
        persona = [str(g) for g in (store.clusters(pointer).get(cluster) or {}).get("persona", ())]
    stated = [str(g) for g in genres or ()]
    out = []
    for item in items:
        reason = item.get("reason")
        if not reason:
            out.append(item)
            continue
        seed = reason.get("movieId")
        shown = evidence(
            reason,
            item["genres"],
            (details.get(item["movieId"]) or {}).get("terms") or (),
            (details.get(int(seed)) or {}).get("terms") or () if seed is not None else (),
            persona,
            stated,
        )
        out.append({**item, "reason": explained(reason, shown)})
    return out


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
    store: ServingStore, pointer: Mapping, user_id: int, profile: Mapping, ask: ListRequest
) -> list[dict]:
    """The re-scored list of a user with live feedback (see ``api.services.live``)."""
    result, reasons = live_list(store, pointer, user_id, profile)
    details = store.movie_details(pointer, (int(m) for m in result.movie_ids))
    items = []
    for mid, score, predicted, reason in zip(
        result.movie_ids, result.scores, result.predicted, reasons
    ):
        d = details.get(int(mid))
        if d is None or not ask.wants(int(mid), d):
            continue
        items.append(_item(int(mid), d, round(float(predicted), 3), round(float(score), 5), reason))
        if len(items) == ask.limit:
            break
    return ask.cut(items)


def _precomputed(store, pointer, top, ask: ListRequest) -> list[dict]:
    wanted = top[: ask.n] if ask.limit and not ask.genre and not ask.exclude else top
    details = store.movie_details(pointer, (e[0] for e in wanted))
    items = []
    for mid, score, predicted, reason in wanted:
        if not ask.wants(mid, details.get(mid)):
            continue
        items.append(
            _item(mid, details.get(mid), predicted, score, dict(reason) if reason else None)
        )
        if len(items) == ask.limit:
            break
    return items


def _fallback(store, pointer, user_id, cluster_id, ask: ListRequest) -> list[dict]:
    """The cluster's favourites the user has not rated, then the most popular movies."""
    rated = set(read_training_ratings(store, pointer, user_id)[0].tolist())
    candidates: list[tuple[int, float | None, dict]] = []  # movieId, score, reason
    if isinstance(cluster_id, int):
        cluster = store.clusters(pointer).get(cluster_id) or {}
        for fav in cluster.get("top_movies") or ():
            mid = int(fav["movieId"])
            if mid not in rated:
                candidates.append((mid, fav.get("score"), _reason_of("cluster_favourite")))
    seen = {c[0] for c in candidates}
    for mid in store.model(pointer).popular:
        if mid not in rated and mid not in seen:
            candidates.append((mid, None, _reason_of("popular")))
    details = store.movie_details(pointer, (c[0] for c in candidates))
    items = []
    for mid, score, reason in candidates:
        d = details.get(mid)
        if d is None or not ask.wants(mid, d):
            continue
        if score is None:
            score = (d.get("stats") or {}).get("popularity")
        items.append(_item(mid, d, None, score, reason))
        if len(items) == ask.limit:
            break
    return items


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

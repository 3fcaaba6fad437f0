"""Live users: onboarding, feedback events, and lists re-scored at request time.

A user has a ``profiles`` document once they onboard or send feedback (``contract.schema.
ProfileDoc``). Every write is ONE atomic update of that document that appends the event to
``events`` and applies it (``ratings.<movieId>``, ``feedback.<movieId>``, ``rev`` + 1), so an
acknowledged event is stored exactly once and concurrent ratings of one movie end with one
rating: the last applied, which is also the last event.

``GET /user/<id>/recommendation`` sees every acknowledged write at once, in any process: this
host's live index (``api.store.live_index``) says whether the user has a profile and at which rev, and
the profile is read from the store when the process has not cached it at that rev. A user without
one gets the precomputed list. A user with one is re-scored (``contract.live_model.recommend_live``)
from their training ratings (the served ``users`` document) overlaid with their live ratings,
likes, dislikes and hidden movies; the result is cached per (version, user, rev), so only the
first request after a change pays for it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from api.http.errors import BadRequest, KeyReused, NotFound, StoreUnavailable
from api.store.serving import ServingStore
from contract import schema
from contract.clusters import ClusterAssigner, genre_share_profile
from contract.live_model import LiveList, UserSignals, recommend_live

#: Users created by ``POST /users`` get ids from here up (MovieLens ids are far below).
NEW_USER_BASE = 1_000_000_000
LIST_LENGTH = 50  # re-scored lists are as long as precomputed ones
REASON_MIN_RATING = 3.5  # a movie rated this high can be the "because you liked" seed
RECENT_SEEDS = 50  # training ratings considered as reason seeds (most recent first)
GENRE_MASS = 5.0  # a stated genre counts like a 5-star rating of a movie of that genre alone

ACTIONS = ("like", "dislike", "not_interested")
MAX_WRITE_ATTEMPTS = 100  # optimistic retries of one event under concurrent writes to one user
# idempotency keys remembered per user (a retry must come within their next 100 writes)
KEYS_KEPT = 100


# --- writes ----------------------------------------------------------------------------------


def new_event(
    kind: str, movie_id: int, rating: float | None = None, at: datetime | None = None
) -> dict:
    at = at or datetime.now(UTC)
    at = at.replace(
        microsecond=at.microsecond // 1000 * 1000
    )  # as stored (BSON keeps milliseconds)
    event: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "type": kind,
        "movieId": int(movie_id),
        "at": at,
    }
    if rating is not None:
        event["rating"] = float(rating)
    return event


def record(
    store: ServingStore, user_id: int, event: Mapping[str, Any], key: str | None = None
) -> tuple[int, dict]:
    """Append ``event`` to the user's profile and apply it, atomically. Returns the new rev and
    the event.

    ``key`` (the request's ``Idempotency-Key``) makes a retry safe: a write whose answer was lost
    (the store hung after applying it, or the connection broke) and that is sent again with the
    same key is not applied twice; the retry gets the first one's rev and event. The last
    ``KEYS_KEPT`` keys of each user are kept, in the profile, written by the same update as the
    event. A key reused for another event is a 422."""
    mid = int(event["movieId"])
    if event["type"] == "rating":
        field, value = f"ratings.{mid}", float(event["rating"])
    elif event["type"] in ACTIONS:
        field, value = f"feedback.{mid}", event["type"]
    else:
        raise ValueError(f"unknown event type {event['type']!r}")
    profiles = store.online(schema.PROFILES)
    update = {
        "$push": {"events": dict(event)},
        "$inc": {"rev": 1},
        "$set": {field: value, "updated_at": event["at"]},
        "$setOnInsert": {"created_at": event["at"]},
    }
    # Optimistic concurrency: read the rev, then apply the event only if the rev is unchanged, so
    # the acknowledged rev is exactly this event's position (and a key read at that rev cannot
    # have been used since). update_one and find_one, not find_one_and_update: SecantusDB's
    # findAndModify slows with the collection's size (18 ms at 3,000 profiles, 106 ms at 10,000;
    # update_one stays at ~3 ms).
    store.live.begin_write(user_id)  # readers in every process go to the store until live.end_write
    for _ in range(MAX_WRITE_ATTEMPTS):
        doc = profiles.find_one({"_id": int(user_id)}, {"rev": 1, "keys": 1} if key else {"rev": 1})
        rev = int((doc or {}).get("rev") or 0)
        if key is not None:
            done = _done(doc, key, event)
            if done is not None:
                store.live.end_write(user_id, rev)
                return done
            entry = {"key": key, "rev": rev + 1, "event": dict(event)}
            update["$push"]["keys"] = {"$each": [entry], "$slice": -KEYS_KEPT}
        if doc is None:  # first event: create the profile, unless another write just did
            try:
                profiles.update_one(
                    {"_id": int(user_id), "rev": {"$exists": False}}, update, upsert=True
                )
            except DuplicateKeyError:
                continue
            store.live.end_write(user_id, 1)
            return 1, dict(event)
        if (
            profiles.update_one({"_id": int(user_id), "rev": doc.get("rev")}, update).modified_count
            == 1
        ):
            store.live.end_write(user_id, rev + 1)
            return rev + 1, dict(event)
    raise StoreUnavailable("too many concurrent writes to this user; try again")


def _done(profile: Mapping | None, key: str, event: Mapping[str, Any]) -> tuple[int, dict] | None:
    """The rev and event already recorded under ``key``; None if there is none; 422 if the key
    was used for another event."""
    for entry in (profile or {}).get("keys") or ():
        if entry.get("key") == key:
            first = entry["event"]
            same = ("type", "movieId", "rating")
            if any(first.get(k) != event.get(k) for k in same):
                raise KeyReused(
                    f"Idempotency-Key {key!r} was used for another request ({first['type']} of movie "
                    f"{first['movieId']}); use a new key for a new request"
                )
            return int(entry["rev"]), dict(first)
    return None


def allocate_user_id(store: ServingStore) -> int:
    counters = store.online(schema.COUNTERS)
    for _ in range(MAX_WRITE_ATTEMPTS):
        try:
            doc = counters.find_one_and_update(
                {"_id": "userId"},
                {"$inc": {"seq": 1}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:  # two first onboardings at once: the other made the counter
            continue
        if doc is not None:  # (SecantusDB answered a racing upsert with no document once)
            return NEW_USER_BASE + int(doc["seq"])
    raise StoreUnavailable("could not allocate a user id; try again")


# --- signals ---------------------------------------------------------------------------------


def genre_names(store: ServingStore, pointer: Mapping, raw: list[str]) -> list[str]:
    """Canonical genre names, or 400 naming the allowed ones."""
    info = store.model(pointer)
    out = []
    for name in raw:
        canonical = info.genre(name)
        if canonical is None:
            raise BadRequest(
                f"unknown genre {name[:40]!r}; the genres are: {', '.join(info.genres)}"
            )
        out.append(canonical)
    if len(set(out)) != len(out):
        raise BadRequest("genres must not repeat")
    return out


def require_movies(store: ServingStore, pointer: Mapping, ids: list[int]) -> dict[int, dict]:
    details = store.movie_details(pointer, ids)
    for mid in ids:
        if details.get(mid) is None:
            raise NotFound(f"movie {mid} not found")
    return details


def assign_cluster(
    store: ServingStore, pointer: Mapping, ratings: Mapping[int, float], genres: list[str]
) -> int | None:
    """A new user's cluster: their genre profile (the pipeline's definition, with each stated
    genre counted as ``GENRE_MASS``) put into the served clustering with its out-of-sample
    extension."""
    info = store.model(pointer)
    assigner, prior, names = info.cluster_assigner, info.genre_prior, list(info.genres)
    if not assigner or prior is None or len(prior) != len(names):
        return None
    model = store.live_model(pointer)
    mass = np.zeros(len(names))
    total = 0.0
    if ratings:
        ids = np.fromiter(ratings, np.int64, len(ratings))
        masks = model.genre_masks(ids)
        for mid, mask in zip(ids, masks):
            r = float(ratings[int(mid)])
            hit = [k for k, g in enumerate(model.genres) if mask >> k & 1]
            for k in hit:
                mass[names.index(model.genres[k])] += r
            total += r * len(hit)
    for g in genres:
        mass[names.index(g)] += GENRE_MASS
        total += GENRE_MASS
    profile = genre_share_profile(mass[None, :], np.array([total]), np.asarray(prior, float))
    return int(ClusterAssigner.from_dict(assigner).assign(profile)[0])


def training_ratings(user: Mapping | None) -> tuple[np.ndarray, np.ndarray]:
    """A served user document's ratings as (movieIds, ratings) arrays, newest first (compact:
    what the cache keeps). Read from ``ratings_packed`` (two binaries) when the version has it,
    else from the ``ratings`` subdocuments."""
    packed = (user or {}).get("ratings_packed")
    if isinstance(packed, Mapping):
        return (
            np.frombuffer(packed["movieId"], "<i4").astype(np.int64),
            np.frombuffer(packed["rating"], "<f4").astype(np.float32),
        )
    rows = [
        (int(r["movieId"]), float(r["rating"]))
        for r in (user or {}).get("ratings") or ()
        if isinstance(r, Mapping) and "movieId" in r and "rating" in r
    ]
    return np.array([m for m, _ in rows], np.int64), np.array([v for _, v in rows], np.float32)


def rated_entries(user: Mapping | None) -> list[dict]:
    """A served user document's ratings as ``{movieId, rating, timestamp}`` dicts (newest
    first): from ``ratings_packed`` (timestamps 0 when the version did not pack them), else
    from the ``ratings`` subdocuments of versions published before."""
    packed = (user or {}).get("ratings_packed")
    if isinstance(packed, Mapping):
        movies, ratings = training_ratings(user)
        stamps = (
            np.frombuffer(packed["timestamp"], "<i8")
            if "timestamp" in packed
            else np.zeros(len(movies), np.int64)
        )
        return [
            {"movieId": m, "rating": r, "timestamp": t}
            for m, r, t in zip(movies.tolist(), ratings.tolist(), stamps.tolist())
        ]
    return [
        r for r in (user or {}).get("ratings") or () if isinstance(r, Mapping) and "movieId" in r
    ]


def read_training_ratings(
    store: ServingStore, pointer: Mapping, user_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """The user's training ratings from the served version: the packed arrays alone, or, for a
    version published before they existed, the ``ratings`` subdocuments."""
    user = store.user(pointer, user_id, ("ratings_packed",))
    if user is not None and "ratings_packed" not in user:
        user = store.user(pointer, user_id, ("ratings.movieId", "ratings.rating"))
    return training_ratings(user)


def signals(base: tuple[np.ndarray, np.ndarray], profile: Mapping | None) -> UserSignals:
    ratings = dict(zip(base[0].tolist(), base[1].tolist()))
    liked, disliked, hidden = set(), set(), set()
    genres: tuple[str, ...] = ()
    boost: dict[int, float] = {}
    if profile:
        for key, value in (profile.get("ratings") or {}).items():
            if key.isdigit() and isinstance(value, (int, float)):
                ratings[int(key)] = float(value)
                if value >= 4.0:
                    boost[int(key)] = 1.0
        for key, action in (profile.get("feedback") or {}).items():
            if not key.isdigit():
                continue
            mid = int(key)
            if action == "like":
                liked.add(mid)
                boost[mid] = 1.0
            elif action == "dislike":
                disliked.add(mid)
                boost[mid] = -1.0
            elif action == "not_interested":
                hidden.add(mid)
        genres = tuple(str(g) for g in profile.get("genres") or ())
    # live answers are newer than any training rating; among them, the later written first
    live = []
    for part in ("ratings", "feedback"):
        live += [int(k) for k in (profile or {}).get(part) or () if str(k).isdigit()]
    newest_first = tuple(reversed(live)) + tuple(base[0].tolist())
    return UserSignals(ratings, liked, disliked, hidden, genres, boost, newest_first)


def _reason_seeds(
    base: tuple[np.ndarray, np.ndarray], sig: UserSignals, profile: Mapping | None
) -> list[int]:
    """Movies that can be "because you liked" seeds: live likes and high ratings first, then the
    most recent high training ratings."""
    live_keys = set((profile or {}).get("ratings") or {})
    seeds = [m for m, s in (sig.boost_sources or {}).items() if s > 0]
    seeds += [
        m
        for m, r in zip(base[0].tolist(), base[1].tolist())
        if str(m) not in live_keys and r >= REASON_MIN_RATING
    ][:RECENT_SEEDS]  # newest first
    return list(dict.fromkeys(seeds))


# --- the re-scored list ----------------------------------------------------------------------


def cached_training_ratings(
    store: ServingStore,
    pointer: Mapping,
    user_ids: Sequence[int],
    read_already: Mapping[int, Mapping] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`read_training_ratings` of each of ``user_ids``, kept per user, version and process
    (training ratings never change within a version); the ones not kept read together, but for
    those in ``read_already`` (served documents the caller read with ``ratings_packed``)."""

    def read(missing: list) -> list:
        given = read_already or {}
        docs = {**given}
        unread = [u for _, u in missing if u not in given]
        if unread:
            docs.update(store.users(pointer, unread, ("ratings_packed",)))
        return [
            read_training_ratings(store, pointer, u)  # a version from before the packing
            if u in docs and "ratings_packed" not in docs[u]
            else training_ratings(docs.get(u))
            for _, u in missing
        ]

    return store.cached_many(pointer, [("ratings", int(u)) for u in user_ids], read)


def similar_lists(store: ServingStore, pointer: Mapping, model, ids) -> dict[int, tuple]:
    """The stored similar lists of ``ids``: from the live model in memory; versions published
    before it held them, from the store."""
    ids = list(ids)
    neighbors = model.similar_lists(ids)
    return store.similar_lists(pointer, ids) if neighbors is None else neighbors


def live_list(
    store: ServingStore, pointer: Mapping, user_id: int, profile: Mapping
) -> tuple[LiveList, list]:
    """The user's re-scored top ``LIST_LENGTH`` and a reason per item (cached per rev)."""

    def compute():
        started = time.perf_counter()
        (base,) = cached_training_ratings(store, pointer, [user_id])
        sig = signals(base, profile)
        model = store.live_model(pointer)
        seeds = _reason_seeds(base, sig, profile)
        sources = [m for m in sig.boost_sources or {}]
        neighbors = similar_lists(store, pointer, model, dict.fromkeys(sources + seeds))
        result = recommend_live(model, sig, LIST_LENGTH, neighbors)
        reasons = _reasons(store, pointer, result, seeds, neighbors, sig, model)
        if store.on_rescore is not None:
            last = profile.get("updated_at")  # the latest event's time (naive UTC from pymongo)
            since = None
            if isinstance(last, datetime):
                since = (
                    datetime.now(UTC) - last.replace(tzinfo=last.tzinfo or UTC)
                ).total_seconds()
            store.on_rescore(time.perf_counter() - started, since)
        return result, reasons

    return store.cached(pointer, ("live", user_id, int(profile.get("rev") or 0)), compute)


def _reasons(
    store, pointer, result: LiveList, seeds, neighbors, sig: UserSignals, model
) -> list[dict]:
    best: dict[int, tuple[float, int]] = {}
    for seed in seeds:
        for mid, sim in neighbors.get(seed, ()):
            if mid not in best or sim > best[mid][0]:
                best[mid] = (sim, seed)
    wanted = model.genre_mask(sig.genres) if sig.genres else 0
    masks = (
        model.genre_masks(result.movie_ids)
        if wanted
        else np.zeros(len(result.movie_ids), np.uint32)
    )
    seed_ids = {best[int(m)][1] for m in result.movie_ids if int(m) in best}
    seed_ids |= {int(b) for b in result.because if b >= 0}
    titles = store.movie_details(pointer, seed_ids)
    out = []
    for mid, because, mask in zip(result.movie_ids, result.because, masks):
        seed = best[int(mid)][1] if int(mid) in best else (int(because) if because >= 0 else None)
        if seed is not None:
            d = titles.get(seed) or {}
            name = d.get("name") or d.get("title") or f"movie {seed}"
            year = f" ({d['year']})" if d.get("year") else ""
            out.append(
                {
                    "kind": "because_you_liked",
                    "movieId": seed,
                    "text": schema.because_you_liked(f"{name}{year}"),
                }
            )
        elif int(mask) & wanted:
            out.append({"kind": "genre_match", "text": schema.REASON_TEXTS["genre_match"]})
        else:
            out.append({"kind": "popular", "text": schema.REASON_TEXTS["popular"]})
    return out

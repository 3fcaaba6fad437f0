"""MongoDB collection names, document shapes and index specs, all in one place.

Two kinds of collections:

* **Versioned** (``users``, ``movies``, ``metadata``, ``clusters``): every pipeline run writes a
  complete new set named ``<name>__<version>`` (for example ``users__v20261121T111313-ab12cd``).
  The set is served once the pointer document ``serving/{_id: "current"}`` names it
  (see :mod:`pipeline.publish.store`), so readers never see half a run.
* **Non-versioned** (``models``, ``serving``, and the API's online data ``accounts``,
  ``profiles``, ``counters`` and ``lists``): one collection each, written in place. Pipeline
  runs never drop or rewrite the online data; they read ``profiles`` (the feedback events) to
  train on.

The TypedDicts below document what the pipeline writes and what the API may read. They are
not enforced by the server; :mod:`pipeline.publish.store` only checks counts and indexes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NotRequired, TypedDict

from pymongo import ASCENDING, DESCENDING, IndexModel

from contract.titles import fold

# --- collection names ------------------------------------------------------------------------

USERS = "users"
MOVIES = "movies"
METADATA = "metadata"
CLUSTERS = "clusters"
MODELS = "models"
SERVING = "serving"
LIVE_MODEL = "livemodel"  # versioned: the model the API re-scores users with (contract.live_model)
ACCOUNTS = "accounts"  # userId -> hashed token (API writes; pipeline token command)
PROFILES = "profiles"  # userId -> live state and the append-only feedback events
COUNTERS = "counters"  # id allocation for new users
LISTS = "lists"  # shareable user lists
GROUPS = "groups"  # users watching together

#: Collections written as a whole per run and swapped in together.
VERSIONED: tuple[str, ...] = (USERS, MOVIES, METADATA, CLUSTERS, LIVE_MODEL)
#: Versioned collections that must not be empty when a version is published.
REQUIRED_NONEMPTY: tuple[str, ...] = (USERS, MOVIES)
#: Collections updated in place (history, pointer, online data).
NON_VERSIONED: tuple[str, ...] = (MODELS, SERVING, ACCOUNTS, PROFILES, COUNTERS, LISTS, GROUPS)
#: Online data written by the API: never touched by pipeline runs, rollbacks or cleanups.
ONLINE: tuple[str, ...] = (ACCOUNTS, PROFILES, COUNTERS, LISTS, GROUPS)

#: ``_id`` of the pointer document in ``serving``.
POINTER_ID = "current"
#: ``_id`` of the publish/cleanup lock document in ``serving``.
LOCK_ID = "lock"

VERSION_SEPARATOR = "__"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def check_version(version: str) -> str:
    """Return ``version`` if it can be part of a collection name, else raise ValueError."""
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise ValueError(
            f"invalid model version {version!r}: use 1-100 characters of [A-Za-z0-9_.-], "
            "starting with a letter or digit"
        )
    return version


def versioned_name(name: str, version: str) -> str:
    """Collection name of versioned collection ``name`` for ``version`` (``users__v1``)."""
    if name not in VERSIONED:
        raise ValueError(f"{name!r} is not a versioned collection (one of {VERSIONED})")
    return f"{name}{VERSION_SEPARATOR}{check_version(version)}"


def parse_versioned(collection_name: str) -> tuple[str, str] | None:
    """``(name, version)`` for a versioned collection name, ``None`` for anything else."""
    name, sep, version = collection_name.partition(VERSION_SEPARATOR)
    if not sep or name not in VERSIONED or not _VERSION_RE.match(version):
        return None
    return name, version


# --- document shapes -------------------------------------------------------------------------


class RatingStats(TypedDict):
    n_ratings: int
    mean: float


class PackedRatings(TypedDict):
    """A user's ratings, newest first, as little-endian arrays in BSON binary: decoding three
    binaries is far cheaper than thousands of subdocuments (``api.services.live.training_ratings``), and
    a 150-rating user's document is about a third of the size. Versions published before
    these were the only copy also carry ``ratings``: a list of ``{movieId, rating, timestamp}``
    subdocuments (the API reads either)."""

    movieId: bytes  # int32
    rating: bytes  # float32
    timestamp: NotRequired[bytes]  # int64 unix seconds (0: unknown)


ReasonKind = Literal[
    "because_you_liked", "cluster_favourite", "taste_match", "genre_match", "popular"
]
#: The text of each reason kind, the same in the precomputed lists (pipeline.publish.user_lists) and in
#: the API's live and fallback lists ("because_you_liked" names its movie: ``because_you_liked``).
REASON_TEXTS: dict[str, str] = {
    "cluster_favourite": "A favourite of viewers with tastes like yours",
    "taste_match": "Matches the movies you rated",
    "genre_match": "Matches the genres you picked",
    "popular": "Popular with everyone",
}


def because_you_liked(title: str) -> str:
    return f"Because you liked {title}"


class Reason(TypedDict):
    kind: ReasonKind
    movieId: NotRequired[int]  # the liked movie, for kind == "because_you_liked"
    text: str  # human-readable, e.g. "Because you liked Heat (1995)"
    # added by the API when it answers (never stored): what the reason rests on, e.g. the terms
    # the two movies share (contract.reasons)
    evidence: NotRequired[list[str]]


class TopEntry(TypedDict):
    movieId: int
    score: float  # ranking score (higher is better)
    predicted_rating: float  # rating model's estimate on the 0.5..5 scale
    reason: Reason


class UserDoc(TypedDict):
    """``users``: one document per user, precomputed top-N included."""

    _id: int  # MovieLens userId
    cluster: int  # clusters._id
    stats: RatingStats
    ratings_packed: PackedRatings  # the user's training ratings (activity and re-score)
    top: list[TopEntry]  # best first, typically 50
    model_version: str  # models._id that produced this document


class MovieStats(TypedDict):
    n_ratings: int
    mean: float
    shrunk_mean: float  # mean shrunk towards the global mean (Bayesian average)
    popularity: float


class SimilarEntry(TypedDict):
    movieId: int
    score: float


class MovieSearch(TypedDict):
    key: str  # contract.titles.search_key(title); query with search_prefix_query()


class MovieDoc(TypedDict):
    """``movies``: catalogue entry, statistics and similar movies."""

    _id: int  # MovieLens movieId
    title: str  # as in MovieLens, e.g. "Matrix, The (1999)"
    name: str  # display title without the year, e.g. "The Matrix"
    year: int | None
    genres: list[str]  # [] when MovieLens says "(no genres listed)"
    imdbId: int | None
    tmdbId: int | None
    poster_url: str | None
    stats: MovieStats
    similar: list[SimilarEntry]  # best first
    search: MovieSearch
    terms: list[str]  # genres, tags and keywords other movies share too, rarest first (evidence)


class MetadataDoc(TypedDict):
    """``metadata``: TMDB details and user tags of a movie."""

    _id: int  # MovieLens movieId
    tmdbId: int | None
    imdbId: int | None
    title: str
    overview: str | None
    tagline: str | None
    runtime: int | None  # minutes
    release_date: str | None  # ISO date "YYYY-MM-DD"
    original_language: str | None
    poster_path: str | None  # TMDB path, e.g. "/abc.jpg"
    poster_url: str | None  # full URL built from poster_path
    vote_average: float | None
    vote_count: int | None
    keywords: list[str]
    collection: str | None  # the franchise, e.g. "Toy Story Collection"
    companies: list[str]  # production companies
    tags: list[str]  # MovieLens user tags
    source: str  # where the record came from, e.g. "tmdb", "movielens"


class ClusterDoc(TypedDict):
    """``clusters``: one document per user cluster."""

    _id: int
    size: int  # number of users
    persona: list[str]  # top genres, most characteristic first
    profile: dict[str, float]  # genre -> weight
    top_movies: list[SimilarEntry]  # cluster favourites, best first


ModelStatus = Literal["staging", "serving", "superseded", "failed"]


class StagingOwner(TypedDict):
    host: str  # hostname + kernel boot id
    pid: int
    started: float  # process creation time (psutil), guards against pid reuse
    token: str  # random, unique per Staging/lock holder


class ModelDoc(TypedDict):
    """``models``: one document per model version (the run that produced it)."""

    _id: str  # the version
    created_at: datetime
    status: ModelStatus
    dataset: NotRequired[Any]  # e.g. {"name": "ml-latest-small", "n_ratings": ...}
    data_fingerprint: NotRequired[str]
    params: NotRequired[dict[str, Any]]
    metrics: NotRequired[dict[str, Any]]
    artifacts: NotRequired[dict[str, Any]]
    timings: NotRequired[dict[str, float]]
    # maintained by pipeline.publish.store:
    collections: NotRequired[dict[str, str]]  # versioned name -> collection name
    counts: NotRequired[dict[str, int]]  # documents per versioned collection at publish
    owner: NotRequired[StagingOwner]  # the writing process while status == "staging"
    lease_until: NotRequired[datetime]  # staging lease, renewed while loading
    published_at: NotRequired[datetime]
    superseded_at: NotRequired[datetime]
    failed_at: NotRequired[datetime]
    error: NotRequired[str]
    dropped_at: NotRequired[datetime]  # when cleanup dropped its collections


class PointerTarget(TypedDict):
    version: str
    collections: dict[str, str]  # versioned name -> collection name
    published_at: datetime


class PointerDoc(TypedDict):
    """``serving/{_id: "current"}``: the single document that says what is served."""

    _id: Literal["current"]
    version: str
    collections: dict[str, str]
    published_at: datetime
    previous: PointerTarget | None  # kept for rollback; its collections are never dropped
    serial: int  # +1 per flip; the flip is a compare-and-set on it


class LockDoc(TypedDict):
    """``serving/{_id: "lock"}``: held while publishing or cleaning up."""

    _id: Literal["lock"]
    owner: StagingOwner
    acquired_at: datetime
    expires_at: datetime


# --- online data (written by the API) --------------------------------------------------------


class AccountDoc(TypedDict):
    """``accounts``: who may write as a user. The token itself is never stored."""

    _id: int  # userId
    token_sha256: str  # hex SHA-256 of the bearer token (tokens are 256-bit random)
    origin: Literal["onboarding", "issued"]
    created_at: datetime


EventType = Literal["rating", "like", "dislike", "not_interested"]


class FeedbackEvent(TypedDict):
    id: str  # unique per event (uuid4 hex)
    type: EventType
    movieId: int
    rating: NotRequired[float]  # type "rating" only
    at: datetime


class IdempotencyEntry(TypedDict):
    key: str  # the request's Idempotency-Key
    rev: int  # the profile's rev once the event was applied
    event: FeedbackEvent


class ProfileDoc(TypedDict):
    """``profiles``: a user's live state, and the events it was built from, in one document so
    one atomic update appends an event and applies it (no event without its effect, or the
    reverse). ``ratings`` and ``feedback`` are keyed by str(movieId); the last event wins."""

    _id: int  # userId
    rev: int  # incremented by every event: caches of re-scored lists key on it
    ratings: dict[str, float]
    feedback: dict[str, Literal["like", "dislike", "not_interested"]]
    events: list[FeedbackEvent]  # append-only, in the order they were applied
    keys: NotRequired[
        list[IdempotencyEntry]
    ]  # the last writes sent with an Idempotency-Key (api.services.live.record)
    genres: NotRequired[list[str]]  # onboarding answers
    age: NotRequired[str]
    occupation: NotRequired[str]
    cluster: NotRequired[int]  # assigned at onboarding (dataset users: the served version's)
    created_at: datetime
    updated_at: datetime


# --- indexes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexSpec:
    """One index: ``keys`` as ((field, direction), ...), named explicitly."""

    name: str
    keys: tuple[tuple[str, int], ...]
    unique: bool = False

    def model(self) -> IndexModel:
        return IndexModel(list(self.keys), name=self.name, unique=self.unique)


#: Indexes of every collection the API reads, created by the code that writes it.
INDEXES: dict[str, tuple[IndexSpec, ...]] = {
    USERS: (IndexSpec("cluster_1", (("cluster", ASCENDING),)),),
    # Only what the API queries: every index costs load time (about 0.2 ms per document per
    # index on the embedded server). Movies are read by _id and by title prefix; year and genre
    # narrow a prefix match, and "popular" lists are precomputed (models.artifacts, clusters).
    MOVIES: (IndexSpec("search_key_1", (("search.key", ASCENDING),)),),
    METADATA: (),  # read by _id only
    CLUSTERS: (),
    LIVE_MODEL: (),  # read whole, once per version and API worker
    MODELS: (
        IndexSpec("status_1", (("status", ASCENDING),)),
        IndexSpec("created_at_-1", (("created_at", DESCENDING),)),
    ),
    SERVING: (),
}


def index_models(name: str) -> list[IndexModel]:
    """pymongo IndexModels for collection ``name`` (without version suffix)."""
    return [spec.model() for spec in INDEXES.get(name, ())]


# --- title search ----------------------------------------------------------------------------


def search_prefix_query(prefix: str) -> dict[str, Any]:
    """Filter on ``search.key`` (``contract.titles.search_key`` of the title) for titles that
    start with ``prefix``, folded the same way.

    A range (``$gte``/``$lt``) rather than an anchored ``$regex``: both use the index on a real
    mongod, but SecantusDB only turns the range into an index scan (a regex scans everything).
    """
    key = fold(prefix)
    if not key:
        return {}
    return {"search.key": {"$gte": key, "$lt": key + "\U0010ffff"}}

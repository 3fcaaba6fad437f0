"""Read access to the served version: one MongoClient per process, the cached serving pointer,
and per-version caches of the small, immutable things (movie details, clusters, model info).

Every versioned collection is read through the pointer (``serving/{_id: "current"}``, see
``pipeline.publish.store``), resolved at most every ``Settings.pointer_cache_s`` seconds, so a pipeline
run in progress never shows through and every read of one request comes from one version.
Versioned collections never change once published, so anything read from them can be cached
under the version's name for as long as that version is served.

SecantusDB cost model (measured, see API_Documentation.md): a query decodes every document it
matches before applying ``limit``, projections are applied after decoding, and a filter on two
fields falls back to a full scan. So reads here are ``_id`` lookups, ``$in`` on ``_id``, a range
on the indexed ``search.key``, or the ``cluster`` index, each filtering on ONE field, with
inclusion projections (they are cheaper than exclusions on SecantusDB and smaller on the wire).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

import pymongo
from pymongo.database import Database

from api.http.errors import NotReady, StoreUnavailable
from api.settings import DEFAULT_DATABASE, Settings
from api.store.availability import Availability
from api.store.cache import ClusterMembers, ModelInfo, VersionCache, put_bounded
from api.store.profiles import LiveProfiles
from contract import schema

log = logging.getLogger("api.store")
T = TypeVar("T")

#: Fields of a movie shown wherever a movie appears in a response.
MOVIE_DETAIL_FIELDS = ("title", "name", "year", "genres", "poster_url", "stats", "terms")
MOVIE_DETAIL_PROJECTION = {name: 1 for name in MOVIE_DETAIL_FIELDS}
_MEMORY_ONLY: ContextVar[bool] = ContextVar("movietime_memory_only", default=False)


class ServingStore:
    """The served version of the store, for one process.

    ``db_factory`` (tests) returns the ``Database`` to read; by default a ``MongoClient`` for
    ``settings.mongodb_url`` is created on first use, in the process that uses it: gunicorn
    forks workers after loading the app, and a client must never cross a fork.
    """

    def __init__(
        self,
        settings: Settings,
        db_factory: Callable[[], Database] | None = None,
        clock: Callable[[], float] = time.monotonic,
        event_listeners: Sequence[Any] = (),
    ) -> None:
        if db_factory is None and not settings.mongodb_url:
            raise ValueError("Settings.mongodb_url is required without a db_factory")
        self.settings = settings
        self._db_factory = db_factory
        self._event_listeners = tuple(event_listeners)  # pymongo monitoring (api.http.prometheus)
        self._clock = clock
        self._lock = threading.Lock()
        self._db: Database | None = None
        self._client: pymongo.MongoClient | None = None
        self._pid: int | None = None
        self._pointer: dict | None = None
        self._pointer_at = float("-inf")
        self._caches: OrderedDict[str, VersionCache] = OrderedDict()
        self.availability = Availability(self._probe, settings.store_probe_s, clock)
        # called after each live re-score with (its seconds, seconds since the user's latest
        # event or None): the app's metrics (api.http.prometheus)
        self.on_rescore: Callable[[float, float | None], None] | None = None
        # the users' live state: their profiles, and which users have one (api.store.profiles)
        self.live = LiveProfiles(settings, self.db, self.online, self.long_read)

    # --- connection ----------------------------------------------------------------------------

    def mark_down(self, why: BaseException | str) -> None:
        """The store just failed to answer: until the probe finds it answering again, ``db()``
        raises ``StoreUnavailable`` at once and ``pointer()`` answers from memory (``api.store.availability``)."""
        self.availability.failed(why)

    @property
    def down(self) -> bool:
        """The store is not answering, or this request is answered from memory only."""
        return self.availability.down or _MEMORY_ONLY.get()

    @staticmethod
    @contextlib.contextmanager
    def memory_only() -> Iterator[None]:
        """Within the block, this thread's store calls fail at once and the pointer is the last
        one read, as when the store is not answering (a request answered again from memory)."""
        token = _MEMORY_ONLY.set(True)
        try:
            yield
        finally:
            _MEMORY_ONLY.reset(token)

    def db(self) -> Database:
        """The database, connecting lazily (again after a fork); ``StoreUnavailable`` at once
        while the store is not answering."""
        if self.down:
            raise StoreUnavailable()
        return self._connect()

    def _connect(self) -> Database:
        pid = os.getpid()
        if self._db is not None and self._pid == pid:
            return self._db
        with self._lock:
            if self._db is None or self._pid != pid:
                self._pointer, self._pointer_at = None, float("-inf")
                self._caches.clear()
                self.live.forget()
                self._client = None
                if self._db_factory is not None:
                    self._db = self._db_factory()
                else:
                    self._client = self._new_client()
                    name = self.settings.database
                    self._db = (
                        self._client.get_database(name)
                        if name
                        else self._client.get_default_database(DEFAULT_DATABASE)
                    )
                self._pid = pid
        return self._db

    def _new_client(self) -> pymongo.MongoClient:
        s = self.settings
        return pymongo.MongoClient(
            s.mongodb_url,
            serverSelectionTimeoutMS=s.server_selection_timeout_ms,
            connectTimeoutMS=s.connect_timeout_ms,
            socketTimeoutMS=s.socket_timeout_ms,
            maxPoolSize=s.max_pool_size,
            appname=s.app_name,
            timeoutMS=s.store_deadline_ms,  # every store call, unless a pymongo.timeout() says otherwise
            event_listeners=list(self._event_listeners),
        )

    def close(self) -> None:
        with self._lock:
            if self._client is not None and self._pid == os.getpid():
                self._client.close()
            self._client = self._db = None
            self._pid = None
        self.live.close()

    def ping(self) -> None:
        """Raises a PyMongoError when the store does not answer."""
        self.db().client.admin.command("ping")

    def long_read(self, read: Callable[[], T]) -> T:
        """``read()`` under its own deadline, ``scan_timeout_s``, instead of a store call's: for
        the one-off reads a process then keeps for a whole version (a cluster's members, the
        titles, the live model), which decode many documents on SecantusDB. A ping with the
        ordinary deadline comes first, so that a store that hangs costs no more than that."""
        self.ping()
        with pymongo.timeout(self.settings.scan_timeout_s):
            return read()

    def _probe(self) -> None:
        """The availability probe's ping, within one request's deadline (never answered from memory)."""
        with pymongo.timeout(self.settings.store_deadline_s):
            self._connect().client.admin.command("ping")

    # --- the serving pointer -------------------------------------------------------------------

    def pointer(self, fresh: bool = False) -> dict:
        """The serving pointer, re-read when older than ``pointer_cache_s`` (or ``fresh``). While
        the store is not answering, the last one read (``StoreUnavailable`` if there is none):
        what this process holds of that version is still served."""
        pointer = self._pointer
        if self.down and pointer is not None and not fresh:
            return pointer
        db = self.db()
        now = self._clock()
        if fresh or pointer is None or now - self._pointer_at >= self.settings.pointer_cache_s:
            pointer = db[schema.SERVING].find_one(
                {"_id": schema.POINTER_ID}, {"version": 1, "collections": 1, "published_at": 1}
            )
            if pointer is None or not pointer.get("collections"):
                raise NotReady()
            self._pointer, self._pointer_at = pointer, now
        return pointer

    @property
    def last_pointer(self) -> dict | None:
        """The serving pointer last read (None before the first), however old."""
        return self._pointer

    def pointer_age(self) -> float:
        return self._clock() - self._pointer_at

    def collection(self, pointer: Mapping, name: str):
        try:
            return self.db()[pointer["collections"][name]]
        except KeyError:
            raise NotReady(
                f"the served version {pointer.get('version')!r} has no {name!r}"
            ) from None

    def cache(self, pointer: Mapping) -> VersionCache:
        version = pointer["version"]
        with self._lock:
            cache = self._caches.get(version)
            if cache is None:
                cache = VersionCache(version, self.settings.movie_cache_size)
                # the current version, and the one requests may still hold
                put_bounded(self._caches, [(version, cache)], 2)
            else:
                self._caches.move_to_end(version)
        return cache

    # --- model ---------------------------------------------------------------------------------

    def model(self, pointer: Mapping) -> ModelInfo:
        cache = self.cache(pointer)
        if cache.model is None:
            doc = (
                self.db()[schema.MODELS].find_one(
                    {"_id": pointer["version"]},
                    {
                        "artifacts.genres": 1,
                        "artifacts.popular": 1,
                        "artifacts.cluster_assigner": 1,
                        "artifacts.genre_prior": 1,
                        "published_at": 1,
                        "dataset": 1,
                    },
                )
                or {}
            )
            artifacts = doc.get("artifacts") or {}
            cache.model = ModelInfo(
                version=pointer["version"],
                genres=tuple(str(g) for g in artifacts.get("genres") or ()),
                popular=tuple(int(m) for m in artifacts.get("popular") or ()),
                published_at=doc.get("published_at", pointer.get("published_at")),
                dataset=doc.get("dataset"),
                cluster_assigner=artifacts.get("cluster_assigner"),
                genre_prior=tuple(float(v) for v in artifacts.get("genre_prior") or ()),
            )
        return cache.model

    # --- users ---------------------------------------------------------------------------------

    def user(self, pointer: Mapping, user_id: int, fields: Iterable[str]) -> dict | None:
        """One user document with only ``fields`` (an inclusion projection)."""
        projection = {name: 1 for name in fields}
        return self.collection(pointer, schema.USERS).find_one({"_id": user_id}, projection)

    def users(self, pointer: Mapping, user_ids: Iterable[int], fields: Iterable[str]) -> dict:
        """The documents of ``user_ids`` that exist, by ``_id``, with only ``fields`` (one read)."""
        projection = {name: 1 for name in fields}
        found = self.collection(pointer, schema.USERS).find(
            {"_id": {"$in": [int(u) for u in user_ids]}}, projection
        )
        return {d["_id"]: d for d in found}

    def cluster_members(self, pointer: Mapping, cluster_id: int) -> ClusterMembers:
        """All users of a cluster, ordered by ``_id`` (one index query per version and process)."""
        cache = self.cache(pointer)
        members = cache.members.get(cluster_id)
        if members is None:
            # once per cluster, version and worker, and slow on SecantusDB for big clusters (it
            # decodes every member's whole document)
            users = self.collection(pointer, schema.USERS)
            docs = self.long_read(
                lambda: list(
                    users.find(
                        {"cluster": cluster_id}, {"_id": 1, "stats.n_ratings": 1, "stats.mean": 1}
                    )
                )
            )
            rows = sorted(
                (
                    int(d["_id"]),
                    (d.get("stats") or {}).get("n_ratings"),
                    (d.get("stats") or {}).get("mean"),
                )
                for d in docs
            )
            members = ClusterMembers(
                ids=array("q", (r[0] for r in rows)),
                n_ratings=array("q", (int(r[1]) if r[1] is not None else -1 for r in rows)),
                mean=array("d", (float(r[2]) if r[2] is not None else float("nan") for r in rows)),
            )
            with cache.lock:
                cache.members[cluster_id] = members
        return members

    # --- clusters ------------------------------------------------------------------------------

    def clusters(self, pointer: Mapping) -> dict[int, dict]:
        """Every cluster document of the served version, by ``_id`` (a handful; cached)."""
        cache = self.cache(pointer)
        if cache.clusters is None:
            docs = self.collection(pointer, schema.CLUSTERS).find({})
            cache.clusters = {int(d["_id"]): d for d in docs}
        return cache.clusters

    # --- movies --------------------------------------------------------------------------------

    def movie_details(self, pointer: Mapping, ids: Iterable[int]) -> dict[int, dict | None]:
        """Details (``MOVIE_DETAIL_FIELDS``) of ``ids``; cached ones from memory, the rest with
        ONE ``$in`` query. Unknown ids map to None."""
        ids = list(dict.fromkeys(int(i) for i in ids))
        cache = self.cache(pointer)
        found, missing = cache.get_movies(ids)
        if missing:
            fetched: dict[int, dict | None] = dict.fromkeys(missing)
            cursor = self.collection(pointer, schema.MOVIES).find(
                {"_id": {"$in": missing}}, MOVIE_DETAIL_PROJECTION
            )
            for doc in cursor:
                fetched[int(doc["_id"])] = doc
            cache.put_movies(fetched)
            found.update(fetched)
        return found

    def remember_movies(self, pointer: Mapping, docs: Iterable[dict]) -> None:
        """Add movie documents read elsewhere (with at least the detail fields) to the cache."""
        self.cache(pointer).put_movies(
            {
                int(d["_id"]): {k: d[k] for k in ("_id", *MOVIE_DETAIL_FIELDS) if k in d}
                for d in docs
            }
        )

    def movie(self, pointer: Mapping, movie_id: int, fields: Iterable[str]) -> dict | None:
        projection = {name: 1 for name in fields}
        return self.collection(pointer, schema.MOVIES).find_one({"_id": movie_id}, projection)

    def movies_by_keys(
        self, pointer: Mapping, keys: list[str], fields: Iterable[str]
    ) -> list[dict]:
        """Movies whose ``search.key`` is one of ``keys`` (one ``$in`` on the index)."""
        projection = {name: 1 for name in fields}
        query = {"search.key": {"$in": [str(k) for k in keys]}}
        return list(self.collection(pointer, schema.MOVIES).find(query, projection))

    def movies_by_key_range(
        self, pointer: Mapping, low: str, high: str, fields: Iterable[str]
    ) -> list[dict]:
        """Movies whose ``search.key`` is in ``[low, high)`` (an index range scan)."""
        projection = {name: 1 for name in fields}
        query = {"search.key": {"$gte": str(low), "$lt": str(high)}}
        return list(self.collection(pointer, schema.MOVIES).find(query, projection))

    def similar_lists(self, pointer: Mapping, ids: Iterable[int]) -> dict[int, tuple]:
        """Each movie's precomputed similar movies as ``((movieId, score), ...)`` (cached per version)."""
        ids = list(dict.fromkeys(int(i) for i in ids))
        cache = self.cache(pointer)
        with cache.lock:
            found = {m: cache.similar[m] for m in ids if m in cache.similar}
        missing = [m for m in ids if m not in found]
        if missing:
            fetched = dict.fromkeys(missing, ())
            for doc in self.collection(pointer, schema.MOVIES).find(
                {"_id": {"$in": missing}}, {"similar": 1}
            ):
                fetched[int(doc["_id"])] = tuple(
                    (int(e["movieId"]), float(e.get("score") or 0.0))
                    for e in doc.get("similar") or ()
                    if isinstance(e, dict) and "movieId" in e
                )
            with cache.lock:
                put_bounded(cache.similar, fetched.items(), max(self.settings.movie_cache_size, 1))
            found.update(fetched)
        return found

    def live_model(self, pointer: Mapping):
        """The served version's :class:`contract.live_model.LiveModel` (read once per process)."""
        from contract.live_model import LiveModel

        cache = self.cache(pointer)
        if cache.live_model is None:
            collection = self.collection(pointer, schema.LIVE_MODEL)
            docs = self.long_read(lambda: list(collection.find({})))
            if not docs:
                raise NotReady(
                    f"the served version {pointer['version']!r} has no live model; re-run the pipeline"
                )
            model = LiveModel.from_docs(docs)
            with cache.lock:
                if cache.live_model is None:
                    cache.live_model = model
        return cache.live_model

    def cached(self, pointer: Mapping, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` memoised per version under ``key`` (LRU, ``response_cache_size``)."""
        return self.cached_many(pointer, [key], lambda missing: [compute()])[0]

    def cached_many(
        self, pointer: Mapping, keys: Sequence[Any], compute: Callable[[list], list]
    ) -> list:
        """The values of ``keys``, memoised per version as :meth:`cached` does; the missing
        ones made by one ``compute(missing keys)`` (their values, in that order)."""
        cache = self.cache(pointer)
        found: dict = {}
        with cache.lock:
            for key in keys:
                if key in cache.responses:
                    cache.responses.move_to_end(key)
                    found[key] = cache.responses[key]
        missing = [key for key in keys if key not in found]
        if missing:
            made = list(zip(missing, compute(missing)))
            found.update(made)
            if self.settings.response_cache_size > 0:
                with cache.lock:
                    put_bounded(cache.responses, made, self.settings.response_cache_size)
        return [found[key] for key in keys]

    # --- online data (not versioned: written by the API, kept across pipeline runs) -----------

    def online(self, name: str):
        if name not in schema.ONLINE:
            raise ValueError(f"{name!r} is not an online collection")
        return self.db()[name]

    def metadata(self, pointer: Mapping, movie_id: int) -> dict | None:
        return self.collection(pointer, schema.METADATA).find_one({"_id": movie_id})

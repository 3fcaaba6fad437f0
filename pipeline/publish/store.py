"""Staging, atomic publish and reading of the served MongoDB collections.

Each pipeline run writes a complete set of versioned collections (``users__<version>``,
``movies__<version>``, ...; names in :mod:`contract.schema`), builds their indexes, and then
publishes the whole set with ONE single-document write: the pointer
``serving/{_id: "current"}`` is replaced by one naming the new collections. A one-document
write is atomic, so a reader that resolves the pointer once per request sees one whole version,
never users of the new run with movies of the old one (``rename_collection`` would swap one
collection at a time).

Bookkeeping, all in the database:

* ``models/{_id: version}`` is created with ``status: "staging"``, an owner (host, pid, process
  start time) and a lease when a run starts staging, and becomes ``serving``, later
  ``superseded``, or ``failed``.
* ``serving/{_id: "lock"}`` is a lock with an expiry, held while staging starts, while
  publishing and while cleaning up, so concurrent runs do not race each other.
* Cleanup keeps the current and previous version (rollback) and up to ``keep_versions``
  published versions in all; a superseded version also stays ``retire_grace_s`` after it left
  ``current`` so requests that resolved the pointer just before can finish. Staging sets of runs
  that died (process gone, or lease lapsed for a run on another host) are dropped; those of live
  runs are never touched.

Usage::

    store = Store(client.get_default_database())
    with store.stage(new_version()) as staging:   # aborts (drops its collections) on error
        staging.insert("users", user_docs)
        staging.insert("movies", movie_docs)
        staging.publish({"dataset": ..., "params": ..., "metrics": ...})

    pointer = store.current()                      # once per request
    users = store.collection("users", pointer)
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import numpy as np
import psutil
import pymongo
from bson.codec_options import TypeRegistry
from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import CollectionInvalid, DuplicateKeyError, PyMongoError

from contract import schema

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreConfig:
    keep_versions: int = 2  # published versions kept, current and previous included (>= 2)
    lease_s: float = 900.0  # staging lease; renewed on every write, see Staging.heartbeat
    retire_grace_s: float = 10.0  # a superseded version is kept this long after leaving current
    lock_ttl_s: float = 300.0  # a lock older than this is free (holder died mid-publish)
    lock_wait_s: float = 60.0  # wait this long for the lock before LockTimeout
    batch_size: int = 1000  # documents per insert_many
    # a store call that gets no answer for this long fails the run (socketTimeoutMS of the run's
    # clients: a retried write can wait twice this long), see ``client_options``
    answer_timeout_s: float = 20.0

    def __post_init__(self) -> None:
        if self.keep_versions < 2:
            raise ValueError("keep_versions must be >= 2: current and previous are always kept")
        if (
            min(self.lease_s, self.lock_ttl_s, self.lock_wait_s, self.answer_timeout_s) <= 0
            or self.batch_size < 1
        ):
            raise ValueError(
                "lease_s, lock_ttl_s, lock_wait_s, answer_timeout_s and batch_size must be positive"
            )

    def client_options(self) -> dict[str, Any]:
        """``MongoClient`` options of the run's clients (the driver's and each Dask worker's): a
        store that stops answering fails the call, and the run, instead of hanging it."""
        wait_ms = int(self.answer_timeout_s * 1000)
        return {
            "serverSelectionTimeoutMS": min(wait_ms, 10_000),
            "connectTimeoutMS": min(wait_ms, 10_000),
            "socketTimeoutMS": wait_ms,
            "tz_aware": True,
        }
        if self.retire_grace_s < 0:
            raise ValueError("retire_grace_s must be >= 0")


ABORT_TIMEOUT_S = 5.0  # Staging.abort gives up after this long (the next run cleans up)


class PublishError(RuntimeError):
    """A staged version failed validation or lost its staging claim; nothing was published."""


class NotPublishedError(LookupError):
    """Nothing is being served yet (or the pointer lacks the requested collection)."""


class LockTimeout(TimeoutError):
    """Another run held the publish lock for longer than ``lock_wait_s``."""


class StoreNotAnswering(RuntimeError):
    """The store stopped answering during the load; nothing was published."""


def new_version(now: datetime | None = None) -> str:
    """A fresh, time-sortable version string such as ``v20261121-111313-3fa9c2``."""
    now = now or datetime.now(UTC)
    return f"v{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


# Fields of a models document that the store maintains itself.
_RESERVED_MODEL_FIELDS = frozenset(
    {"status", "owner", "lease_until", "collections", "counts", "published_at",
     "superseded_at", "failed_at", "dropped_at", "error"}
)  # fmt: skip


class Store:
    """Writer (:meth:`stage`) and reader (:meth:`current`, :meth:`collection`) of the store."""

    def __init__(
        self,
        db: Database,
        keep_versions: int = 2,
        *,
        config: StoreConfig | None = None,
        url: str | None = None,
    ) -> None:
        if config is not None and keep_versions not in (2, config.keep_versions):
            raise ValueError("pass keep_versions either directly or in config, not both")
        self.db = db
        # the connection string of ``db``'s server, for other processes (Dask workers) that
        # write staged documents themselves; None: only this process writes
        self.url = url
        self.config = config if config is not None else StoreConfig(keep_versions=keep_versions)
        codec = db.codec_options.with_options(
            type_registry=TypeRegistry(fallback_encoder=_encode_numpy)
        )
        self._serving = db.get_collection(schema.SERVING)
        self._models = db.get_collection(schema.MODELS, codec_options=codec)
        self._codec = codec
        self._lock_token: str | None = None
        self._is_secantus: bool | None = None

    # --- reading -------------------------------------------------------------------------------

    def current(self) -> dict | None:
        """The pointer document (``schema.PointerDoc``), or None before the first publish."""
        return self._serving.find_one({"_id": schema.POINTER_ID})

    def collection(self, name: str, pointer: Mapping | None = None) -> Collection:
        """The served collection ``name``; versioned names resolve through ``pointer``.

        Resolve the pointer once per request (``store.current()``) and pass it to every call,
        so all reads of that request come from one version.
        """
        if name in schema.VERSIONED:
            pointer = pointer if pointer is not None else self.current()
            if pointer is None:
                raise NotPublishedError("nothing is published yet: run the pipeline first")
            try:
                return self.db.get_collection(pointer["collections"][name])
            except KeyError:
                raise NotPublishedError(
                    f"version {pointer.get('version')!r} has no {name!r} collection"
                ) from None
        if name in schema.NON_VERSIONED:
            return self.db.get_collection(name)
        raise ValueError(f"unknown collection {name!r}")

    def model(self, version: str | None = None) -> dict | None:
        """The models document of ``version`` (default: the one being served)."""
        if version is None:
            pointer = self.current()
            if pointer is None:
                return None
            version = pointer["version"]
        return self._models.find_one({"_id": version})

    # --- writing -------------------------------------------------------------------------------

    def stage(self, version: str | None = None) -> Staging:
        """Start writing ``version`` (default: :func:`new_version`) into staging collections.

        Cleans up first (frees the space of orphans and retired versions). Refuses a version
        that was ever published or that a live run is staging.
        """
        version = schema.check_version(version or new_version())
        token = secrets.token_hex(8)
        collections = {name: schema.versioned_name(name, version) for name in schema.VERSIONED}
        with self._lock():
            self._cleanup_locked()
            pointer = self.current()
            if pointer is not None and version in _pointer_versions(pointer):
                raise ValueError(f"version {version!r} is published; use a new version")
            existing = self._models.find_one({"_id": version})
            if existing is not None:
                if existing.get("published_at") is not None:
                    raise ValueError(f"version {version!r} was published before; use a new one")
                if existing.get("status") == "staging" and self._staging_alive(existing):
                    raise ValueError(f"version {version!r} is being staged by another run")
            for cname in collections.values():
                self._drop(cname)  # leftovers of an earlier failed attempt
            now = _now()
            self._models.replace_one(
                {"_id": version},
                {
                    "_id": version,
                    "created_at": now,
                    "status": "staging",
                    "owner": _owner(token),
                    "lease_until": now + timedelta(seconds=self.config.lease_s),
                    "collections": collections,
                },
                upsert=True,
            )
        staging = Staging(self, version, collections, token)
        try:
            # Indexes first, data second: SecantusDB with --sync-on-commit builds an index
            # over existing documents ~20x slower than it maintains one during inserts.
            staging.ensure_indexes()
            self._models.create_indexes(schema.index_models(schema.MODELS))
        except BaseException as exc:
            staging.abort(f"{type(exc).__name__}: {exc}")
            raise
        return staging

    def cleanup(self) -> list[str]:
        """Drop retired versions and orphaned staging sets; returns the dropped names."""
        with self._lock():
            return self._cleanup_locked()

    def rollback(self) -> dict:
        """Serve the previous version again (the current one becomes ``previous``)."""
        with self._lock():
            pointer = self.current()
            if pointer is None or not pointer.get("previous"):
                raise NotPublishedError("no previous version to roll back to")
            target = pointer["previous"]
            present = set(self.db.list_collection_names())
            missing = [c for c in target["collections"].values() if c not in present]
            if missing:
                raise NotPublishedError(f"previous version lost collections {missing}")
            now = _now()
            new = self._flip(target["version"], target["collections"], now)
            self._models.update_one(
                {"_id": target["version"]},
                {"$set": {"status": "serving"}, "$unset": {"superseded_at": ""}},
            )
            self._models.update_many(
                {"status": "serving", "_id": {"$ne": target["version"]}},
                {"$set": {"status": "superseded", "superseded_at": now}},
            )
            return new

    # --- a staging's lifecycle (called by Staging) ---------------------------------------------

    def staging_collection(self, cname: str) -> Collection:
        """Staging collection ``cname``, with an encoder for numpy scalars and arrays."""
        return self.db.get_collection(cname, codec_options=self._codec)

    def renew_lease(self, version: str, token: str) -> bool:
        """Extend the lease of ``version``'s staging if ``token`` still owns it; False when a
        cleanup has declared it orphaned and dropped it."""
        result = self._models.update_one(
            {"_id": version, "status": "staging", "owner.token": token},
            {"$set": {"lease_until": _now() + timedelta(seconds=self.config.lease_s)}},
        )
        return result.matched_count == 1

    def publish_staged(
        self,
        version: str,
        collections: Mapping[str, str],
        token: str,
        fields: Mapping[str, Any],
        counts: Mapping[str, int],
    ) -> dict | None:
        """Under the publish lock: if ``token`` still owns ``version``'s staging, record its
        model document, flip the pointer to it and mark every other serving version
        superseded. Returns the new pointer, or None when the staging was taken away."""
        with self._lock():
            if not self.renew_lease(version, token):  # under the lock: cleanup cannot take it now
                return None
            now = _now()
            self._models.update_one(
                {"_id": version},
                {"$set": {**fields, "collections": dict(collections), "counts": dict(counts)}},
            )
            pointer = self._flip(version, dict(collections), now)
            self._models.update_one(
                {"_id": version},
                {
                    "$set": {"status": "serving", "published_at": now},
                    "$unset": {"owner": "", "lease_until": ""},
                },
            )
            self._models.update_many(
                {"status": "serving", "_id": {"$ne": version}},
                {"$set": {"status": "superseded", "superseded_at": now}},
            )
        return pointer

    def drop_staging(
        self, version: str, collections: Mapping[str, str], token: str, error: str
    ) -> None:
        """Drop ``version``'s staging collections and mark its model failed (if ``token`` still
        owns it), within ``ABORT_TIMEOUT_S``: a run that fails because the store stopped
        answering must not then wait for it once per collection."""
        with pymongo.timeout(ABORT_TIMEOUT_S):
            for cname in collections.values():
                self._drop(cname)
            now = _now()
            self._models.update_one(
                {"_id": version, "owner.token": token},
                {
                    "$set": {
                        "status": "failed",
                        "failed_at": now,
                        "dropped_at": now,
                        "error": error,
                    },
                    "$unset": {"owner": "", "lease_until": ""},
                },
            )

    # --- internals -----------------------------------------------------------------------------

    def _flip(self, version: str, collections: dict[str, str], now: datetime) -> dict:
        """Replace the pointer: one single-document compare-and-set write."""
        for _ in range(10):
            old = self.current()
            new = {
                "_id": schema.POINTER_ID,
                "version": version,
                "collections": dict(collections),
                "published_at": now,
                "previous": None,
                "serial": 1,
            }
            if old is None:
                try:
                    self._serving.insert_one(new)
                    return self.current()  # as stored (naive or aware datetimes per client)
                except DuplicateKeyError:
                    continue
            new["previous"] = {
                "version": old["version"],
                "collections": old["collections"],
                "published_at": old["published_at"],
            }
            new["serial"] = int(old.get("serial", 0)) + 1
            result = self._serving.replace_one(
                {"_id": schema.POINTER_ID, "serial": old.get("serial")}, new
            )
            if result.matched_count == 1:
                return self.current()
        raise PublishError("the serving pointer kept changing under the publish lock")

    def _cleanup_locked(self) -> list[str]:
        now = _now()
        by_version: dict[str, list[str]] = {}
        for cname in self.db.list_collection_names():
            parsed = schema.parse_versioned(cname)
            if parsed is not None:
                by_version.setdefault(parsed[1], []).append(cname)
        if not by_version:
            return []
        pointer = self.current()
        protected_names: set[str] = set()
        retained: list[str] = []
        if pointer is not None:
            retained = list(_pointer_versions(pointer))
            for target in (pointer, pointer.get("previous")):
                if target:
                    protected_names.update(target["collections"].values())
        docs = {d["_id"]: d for d in self._models.find({"_id": {"$in": list(by_version)}})}
        published = sorted(
            (v for v in by_version if docs.get(v, {}).get("published_at") is not None),
            key=lambda v: _utc(docs[v]["published_at"]),
            reverse=True,
        )
        for version in published:
            if len(retained) >= self.config.keep_versions:
                break
            if version not in retained:
                retained.append(version)

        dropped: list[str] = []
        for version, names in sorted(by_version.items()):
            if version in retained:
                continue
            doc = docs.get(version)
            update: dict[str, Any] = {"dropped_at": now}
            if doc is not None:
                status = doc.get("status")
                if status == "staging":
                    if self._staging_alive(doc, now):
                        continue
                    update.update(status="failed", failed_at=now, error="orphaned: run died")
                elif status == "serving":
                    # not in the pointer but still marked serving: a publish died between the
                    # flip and its bookkeeping. Retire it now, drop it after the grace period.
                    self._models.update_one(
                        {"_id": version, "status": "serving"},
                        {"$set": {"status": "superseded", "superseded_at": now}},
                    )
                    continue
                elif status == "superseded":
                    since = doc.get("superseded_at")
                    grace = timedelta(seconds=self.config.retire_grace_s)
                    if since is not None and now - _utc(since) < grace:
                        continue
            for cname in sorted(names):
                if cname in protected_names:
                    continue
                self._renew_lock()
                self._drop(cname)
                dropped.append(cname)
            if doc is not None:
                self._models.update_one(
                    {"_id": version}, {"$set": update, "$unset": {"owner": "", "lease_until": ""}}
                )
        return dropped

    def _drop(self, cname: str) -> None:
        """Drop a collection. On SecantusDB empty it first: with --sync-on-commit its drop
        removes documents one commit (fsync) at a time (15 s for 2,000 documents), while one
        delete_many is a single commit. A real mongod drops in O(1), so it just drops."""
        if self._is_secantus is None:
            self._is_secantus = "secantusVersion" in self.db.client.admin.command("buildInfo")
        if self._is_secantus:
            self.db.get_collection(cname).delete_many({})
        self.db.drop_collection(cname)

    def _staging_alive(self, doc: Mapping, now: datetime | None = None) -> bool:
        """Is the run that owns this staging doc still (possibly) writing?"""
        alive = _owner_alive(doc.get("owner"))
        if alive is not None:
            return alive  # same host: the process itself tells
        lease = doc.get("lease_until")
        return lease is not None and _utc(lease) > (now or _now())

    @contextmanager
    def _lock(self) -> Iterator[None]:
        token = secrets.token_hex(8)
        owner = _owner(token)
        deadline = time.monotonic() + self.config.lock_wait_s
        while True:
            now = _now()
            try:
                self._serving.find_one_and_update(
                    {"_id": schema.LOCK_ID, "expires_at": {"$lt": now}},
                    {
                        "$set": {
                            "owner": owner,
                            "acquired_at": now,
                            "expires_at": now + timedelta(seconds=self.config.lock_ttl_s),
                        }
                    },
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
                break
            except DuplicateKeyError:  # held, and not expired
                holder = self._serving.find_one({"_id": schema.LOCK_ID}) or {}
                holder_owner = holder.get("owner") or {}
                if _owner_alive(holder_owner) is False:
                    self._serving.delete_one(
                        {"_id": schema.LOCK_ID, "owner.token": holder_owner.get("token")}
                    )
                    continue
                if time.monotonic() > deadline:
                    raise LockTimeout(
                        f"store lock held by {holder_owner} since {holder.get('acquired_at')}"
                    ) from None
                time.sleep(0.05)
        self._lock_token = token
        try:
            yield
        finally:
            self._lock_token = None
            self._serving.delete_one({"_id": schema.LOCK_ID, "owner.token": token})

    def _renew_lock(self) -> None:
        """Push the held lock's expiry forward (between long drops)."""
        if self._lock_token is not None:
            self._serving.update_one(
                {"_id": schema.LOCK_ID, "owner.token": self._lock_token},
                {"$set": {"expires_at": _now() + timedelta(seconds=self.config.lock_ttl_s)}},
            )


class Staging:
    """One run's staging collections; created by :meth:`Store.stage`."""

    def __init__(self, store: Store, version: str, collections: dict[str, str], token: str):
        self.store = store
        self.version = version
        self.collections = dict(collections)  # versioned name -> staging collection name
        self.counts: dict[str, int] = {name: 0 for name in collections}  # inserted by insert()
        self.state = "open"  # -> "published" | "aborted"
        self._token = token
        self._last_beat = time.monotonic()

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.state == "open":
            self.abort(f"{exc_type.__name__}: {exc}" if exc_type else "closed without publish")

    def collection(self, name: str) -> Collection:
        """The staging collection of versioned ``name`` (numpy scalars/arrays are encodable)."""
        if name not in self.collections:
            raise ValueError(f"{name!r} is not a versioned collection ({schema.VERSIONED})")
        return self.store.staging_collection(self.collections[name])

    def added(self, name: str, n: int) -> None:
        """Count ``n`` documents that another process inserted into ``name``'s staging
        collection, and renew the lease when it is due (call it as their writes complete)."""
        self._check_open()
        self.counts[name] += n
        self._maybe_heartbeat()

    def insert(self, name: str, docs: Iterable[dict], batch_size: int | None = None) -> int:
        """Insert ``docs`` in batches (unordered ``insert_many``); returns how many."""
        self._check_open()
        coll = self.collection(name)
        size = batch_size or self.store.config.batch_size
        it = iter(docs)
        n = 0
        while batch := list(islice(it, size)):
            self._maybe_heartbeat()
            coll.insert_many(batch, ordered=False)
            n += len(batch)
        self.counts[name] += n
        return n

    def ensure_indexes(self) -> None:
        """Create every staging collection (empty ones too) and its indexes from the schema.

        Done by :meth:`Store.stage` before any data and again (a no-op) by :meth:`publish`.
        """
        self._check_open()
        present = set(self.store.db.list_collection_names())
        for name, cname in self.collections.items():
            if cname not in present:
                try:
                    self.store.db.create_collection(cname)
                except CollectionInvalid:
                    pass
            models = schema.index_models(name)
            if models:
                self.collection(name).create_indexes(models)
        self.heartbeat()

    def heartbeat(self) -> None:
        """Renew the staging lease; raises PublishError if cleanup took this staging away."""
        if not self.store.renew_lease(self.version, self._token):
            self.state = "aborted"
            raise PublishError(f"staging of {self.version!r} was declared orphaned and dropped")
        self._last_beat = time.monotonic()

    def publish(self, model_doc: Mapping[str, Any] | None = None, cleanup: bool = True) -> dict:
        """Validate, record the model, flip the pointer, retire the old version, clean up.

        ``model_doc`` holds the run's description (``dataset``, ``data_fingerprint``, ``params``,
        ``metrics``, ``artifacts``, ``timings``, ...). Returns the new pointer document.
        ``cleanup=False`` leaves dropping retired versions to a later :meth:`Store.cleanup` (or
        the next :meth:`Store.stage`): on SecantusDB, dropping takes ~0.3 ms per document.
        """
        self._check_open()
        fields = dict(model_doc or {})
        if fields.pop("_id", self.version) != self.version:
            raise ValueError("model_doc['_id'] differs from the staged version")
        reserved = _RESERVED_MODEL_FIELDS.intersection(fields)
        if reserved:
            raise ValueError(f"model_doc must not set store-maintained fields {sorted(reserved)}")

        self.ensure_indexes()
        # The collection's own count, not count_documents({}): that one is an aggregation which
        # SecantusDB answers by decoding every document (162k 25M-scale users took the server
        # past 17 GB and the OOM killer).
        counts = {
            name: self.collection(name).estimated_document_count() for name in self.collections
        }
        empty = [name for name in schema.REQUIRED_NONEMPTY if counts[name] == 0]
        if empty:
            raise PublishError(f"refusing to publish {self.version!r}: empty {empty}")
        for name in self.collections:
            have = set(self.collection(name).index_information())
            missing = {spec.name for spec in schema.INDEXES.get(name, ())} - have
            if missing:
                raise PublishError(f"{self.collections[name]} lacks indexes {sorted(missing)}")

        pointer = self.store.publish_staged(
            self.version, self.collections, self._token, fields, counts
        )
        if pointer is None:
            self.state = "aborted"
            raise PublishError(f"staging of {self.version!r} was declared orphaned and dropped")
        self._last_beat = time.monotonic()
        self.state = "published"
        if cleanup:
            # published all the same: a cleanup that fails here is retried by the next run
            try:
                self.store.cleanup()
            except (PyMongoError, LockTimeout) as exc:
                log.warning("cleanup after publishing %s failed: %s", self.version, exc)
        return pointer

    def abort(self, error: str | None = None) -> None:
        """Drop this version's staging collections and mark its model failed.

        A no-op once published, so it is safe in an ``except`` block around :meth:`publish`.
        """
        if self.state == "published":
            return
        self.state = "aborted"
        try:
            self.store.drop_staging(self.version, self.collections, self._token, error or "aborted")
        except PyMongoError as exc:
            log.warning(
                "could not drop the staging collections of %s (%s): the next run's cleanup will",
                self.version,
                str(exc)[:200],
            )

    def _check_open(self) -> None:
        if self.state != "open":
            raise RuntimeError(f"staging of {self.version!r} is {self.state}")

    def _maybe_heartbeat(self) -> None:
        if time.monotonic() - self._last_beat > self.store.config.lease_s / 10:
            self.heartbeat()


# --- helpers ---------------------------------------------------------------------------------


def _now() -> datetime:
    """UTC now, truncated to milliseconds (BSON datetime precision)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _pointer_versions(pointer: Mapping) -> tuple[str, ...]:
    previous = pointer.get("previous")
    return (pointer["version"],) + ((previous["version"],) if previous else ())


def _encode_numpy(value: Any) -> Any:
    """BSON fallback: numpy scalars and arrays (from pandas/numpy pipelines) as Python values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


@functools.cache
def _host_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
    except OSError:
        boot = str(psutil.boot_time())
    return f"{socket.gethostname()}/{boot}"


def _owner(token: str) -> dict:
    return {
        "host": _host_id(),
        "pid": os.getpid(),
        "started": psutil.Process().create_time(),
        "token": token,
    }


def _owner_alive(owner: Mapping | None) -> bool | None:
    """True/False when ``owner`` is a process on this host; None when that cannot be told."""
    if not owner or owner.get("host") != _host_id():
        return None
    try:
        proc = psutil.Process(int(owner["pid"]))
        if abs(proc.create_time() - float(owner["started"])) > 1.0:
            return False  # the pid was reused
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, KeyError, TypeError, ValueError):
        return False

"""The users' live state as one API process sees it: their profiles, cached at the rev the
live index gives, and the host's live index itself (``api.store.live_index``), opened once per
process, after the fork."""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, OperationFailure

from api.settings import Settings
from api.store.cache import put_bounded
from api.store.live_index import UNKNOWN, LiveIndex, default_directory
from contract import schema

log = logging.getLogger("api.store")
T = TypeVar("T")

LIVE_EPOCH_ID = "live_index"  # counters document holding the store's epoch (api.store.live_index)


class LiveProfiles:
    """Profiles and the live index of one ``ServingStore`` (its ``live``)."""

    def __init__(
        self,
        settings: Settings,
        db: Callable[[], Database],
        online: Callable[[str], Collection],
        long_read: Callable[[Callable[[], T]], T],
    ) -> None:
        self._settings = settings
        self._db, self._online, self._long_read = db, online, long_read
        self._lock = threading.Lock()
        self._profiles: OrderedDict[int, dict] = OrderedDict()  # userId -> profile (no events)
        self._live_index: LiveIndex | None = None
        # the process that opened it (None: not yet, or off; -pid: off in that process)
        self._live_index_pid: int | None = None
        self._live_index_lock = threading.Lock()

    def forget(self) -> None:
        """Drop the cached profiles (a new connection: after a fork)."""
        with self._lock:
            self._profiles.clear()

    def close(self) -> None:
        if self._live_index is not None and self._live_index_pid == os.getpid():
            self._live_index.close()
        self._live_index = self._live_index_pid = None

    def profile(self, user_id: int, with_events: bool = False) -> dict | None:
        """The user's live state (``profiles``), as new as the last acknowledged write, from
        whichever process it came (``api.store.live_index``): None without a store read when the user
        has none, the cached document when it is at the user's rev, else read from the store.
        Callers must not change the returned document."""
        user_id = int(user_id)
        index = self.index()
        rev = index.rev(user_id) if index is not None else UNKNOWN
        if rev is None:
            return None
        if with_events:
            return self._online(schema.PROFILES).find_one({"_id": user_id})
        if rev != UNKNOWN:
            with self._lock:
                cached = self._profiles.get(user_id)
            if cached is not None and cached.get("rev") == rev:
                return cached
        doc = self._online(schema.PROFILES).find_one({"_id": user_id}, {"events": 0, "keys": 0})
        if doc is not None and rev != UNKNOWN and doc.get("rev") == rev:
            with self._lock:
                put_bounded(
                    self._profiles, [(user_id, doc)], max(self._settings.response_cache_size, 1)
                )
        return doc

    def index(self) -> LiveIndex | None:
        """This host's table of users with live state for this database, opened (and built from
        the profiles, the first time on this host) on first use in each process; None when
        ``Settings.live_index`` is off, the table is full, or it cannot be opened here."""
        pid = os.getpid()
        if not self._settings.live_index or self._live_index_pid == -pid:
            return None
        if self._live_index is None or self._live_index_pid != pid:
            db = self._db()
            with self._live_index_lock:  # not self._lock: the open may take a long read
                if self._live_index is None or self._live_index_pid != pid:
                    # once per process (the first on the host also reads every profile's rev)
                    self._live_index = self._long_read(lambda: self._open_live_index(db))
                    self._live_index_pid = (
                        pid if self._live_index is not None else -pid
                    )  # -pid: off here
        index = self._live_index
        return None if index is None or index.full else index

    def _open_live_index(self, db: Database) -> LiveIndex | None:
        """The table for ``db`` (see ``index``); None, with a warning, when it cannot be had."""
        s = self._settings
        nodes = sorted(f"{h}:{p}" for h, p in db.client.topology_description.server_descriptions())
        directory = Path(s.live_index_dir) if s.live_index_dir else default_directory()
        profiles = db[schema.PROFILES]

        def scan():
            for d in profiles.find({}, {"rev": 1}):
                if isinstance(d["_id"], int) and d["_id"] > 0:
                    yield d["_id"], int(d.get("rev") or 0)

        try:
            return LiveIndex.open(
                directory,
                f"{','.join(nodes)}/{db.name}",
                s.live_index_capacity,
                scan,
                self._store_epoch(db),
            )
        except (OSError, OperationFailure) as exc:  # no folder here, or a read-only store user
            log.warning(
                "no live index in %s (%s): every recommendation request reads "
                "the user's profile from the store",
                directory,
                exc,
            )
            return None

    @staticmethod
    def _store_epoch(db: Database) -> str:
        """The database's epoch for the live index (made by the first process that asks): a table
        built for another store at this address is rebuilt."""
        counters = db[schema.COUNTERS]
        # read, else insert; never an upsert with findAndModify: when two workers started together,
        # SecantusDB answered one of them with no document (seen on a busy machine)
        for _ in range(100):
            doc = counters.find_one({"_id": LIVE_EPOCH_ID})
            if doc is not None:
                return str(doc["epoch"])
            epoch = uuid.uuid4().hex
            try:
                counters.insert_one({"_id": LIVE_EPOCH_ID, "epoch": epoch})
                return epoch
            except DuplicateKeyError:  # another process made it first: read theirs
                continue
        raise OperationFailure("the live index's epoch could not be read or made")

    def begin_write(self, user_id: int) -> None:
        """Before writing a user's profile (see ``api.store.live_index``)."""
        index = self.index()
        if index is not None:
            index.begin_write(int(user_id))

    def end_write(self, user_id: int, rev: int) -> None:
        """After the store acknowledged the user's profile at ``rev``."""
        index = self.index()
        if index is not None:
            index.end_write(int(user_id), int(rev))

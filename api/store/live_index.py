"""Which users have live state, and at which ``rev``: one table per database and host, shared by
every API process on the host through a memory-mapped file.

``GET /user/<id>/recommendation`` must show an acknowledged rating or feedback at once, whichever
worker answers. Reading the user's ``profiles`` document from the store on every request gives
that, at one store round trip per request (about half of a request's CPU with the embedded
store). The table gives it without the round trip: a reader looks the user up in shared memory
(a few microseconds) and goes to the store only when the user has live state it has not cached
at that ``rev``.

The protocol (``api.services.live`` writes, ``api.store.profiles.LiveProfiles.profile`` reads):

* a write first marks the user's entry dirty (readers read the store), then writes the store,
  then records the new ``rev`` and clears the mark. The recorded ``rev`` only grows (the largest
  wins), and the client's acknowledgement is sent after the record, so any request it sends next
  finds a ``rev`` at least as new as its write.
* a reader that finds no entry knows the user has no profile; one that finds a ``rev`` uses its
  cached profile only when the cached document has that ``rev``; a dirty entry always reads the
  store. A writer that dies between the mark and the record leaves the entry dirty (slower, not
  stale) until the user's next write; its event, never acknowledged, shows from then.
* the file is built once per database and host from the store's profiles (under a lock; the
  built file is renamed into place, so no process maps a half-built one) and then kept up to
  date by every write. It records the store's ``epoch`` (a random id the first builder leaves in
  the database's ``counters``): a process that finds another epoch in the store (a new store at the
  same address, or a database brought from elsewhere) builds the table again. Replacing the store
  under a running API needs a restart of the API.

It is correct when every write of live state goes through an API process of this host. Several
API hosts on one database must turn it off (``API_LIVE_INDEX=off``): every request then reads the
profile from the store. A full table (more than half its slots in use) turns itself off the same
way, with a warning.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import mmap
import os
import struct
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger("api")

UNKNOWN = -1  # a write is (or was) in flight: read the store
MAGIC = b"MTLIVE01"
HEADER = 64  # magic, capacity, used slots, full flag, epoch (32 bytes); then keys[capacity], values[capacity]
EPOCH_AT, EPOCH_SIZE = 32, 32
DIRTY = 1  # a value is rev << 1 | DIRTY (set from a write's start to its record)
_HASH = 0x9E3779B97F4A7C15  # Fibonacci hashing of the user id
_MASK64 = (1 << 64) - 1


def valid_capacity(capacity: int) -> bool:
    """A table's slot count: a power of two, at least 2."""
    return capacity >= 2 and not capacity & (capacity - 1)


def default_directory() -> Path:
    return Path(tempfile.gettempdir()) / f"movietime-live-{os.getuid()}"


def table_name(store_key: str) -> str:
    """The file name for one database of one store (``store_key``: its addresses and name)."""
    return hashlib.sha256(store_key.encode()).hexdigest()[:32] + ".live"


class LiveIndex:
    """The shared table, mapped into this process. Open it with ``LiveIndex.open``, in the
    process that uses it: a forked child shares the parent's file lock, so it must open its own."""

    def __init__(self, path: Path, fd: int, capacity: int):
        self.path, self._fd, self.capacity = path, fd, capacity
        self._thread_lock = threading.Lock()  # flock does not exclude threads sharing the fd
        self._map = mmap.mmap(fd, HEADER + 16 * capacity)
        view = memoryview(self._map)
        self._header = view[:HEADER].cast("q")
        self._keys = view[HEADER : HEADER + 8 * capacity].cast("q")
        self._values = view[HEADER + 8 * capacity :].cast("q")
        self._shift = 64 - (capacity.bit_length() - 1)

    @classmethod
    def open(
        cls,
        directory: Path,
        store_key: str,
        capacity: int,
        scan: Callable[[], Iterable[tuple[int, int]]],
        epoch: str = "",
    ) -> LiveIndex:
        """Map the table of ``store_key``, building it first from ``scan()`` (the store's
        ``(userId, rev)`` pairs) when this host has none for the store's ``epoch``."""
        tag = epoch.encode()
        if len(tag) > EPOCH_SIZE:
            raise ValueError(f"the epoch must be at most {EPOCH_SIZE} bytes")
        if not valid_capacity(capacity):
            raise ValueError("the live index capacity must be a power of two")
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = directory / table_name(store_key)
        with _locked(path.with_suffix(".lock")):
            existing = _capacity(path, tag)
            if existing is None:
                _build(path, capacity, scan, tag)
            elif (
                existing != capacity
            ):  # one table per database and host, whatever each process asks
                log.warning(
                    "the live index %s has %d slots, not %d: using it as it is",
                    path,
                    existing,
                    capacity,
                )
                capacity = existing
            fd = os.open(path, os.O_RDWR)
        return cls(path, fd, capacity)

    def close(self) -> None:
        self._header.release()
        self._keys.release()
        self._values.release()
        self._map.close()
        os.close(self._fd)

    @property
    def full(self) -> bool:
        return self._header[3] != 0

    def rev(self, user_id: int) -> int | None:
        """None: the user has no live state. ``UNKNOWN``: ask the store. Else the user's rev."""
        if self._header[3]:
            return UNKNOWN
        i, key = self._probe(user_id)
        if key == 0:
            return None
        value = self._values[i]
        return UNKNOWN if value & DIRTY else value >> 1

    def begin_write(self, user_id: int) -> None:
        """Before writing the user's live state: readers go to the store until ``end_write``."""
        with self._write_lock():
            i = self._slot(user_id)
            if i is not None:
                self._values[i] |= DIRTY

    def end_write(self, user_id: int, rev: int) -> None:
        """The store holds the user's state at ``rev`` (>= 0): record it (the largest wins) and
        clear the dirty mark."""
        with self._write_lock():
            i = self._slot(user_id)
            if i is not None:
                self._values[i] = max(int(rev), self._values[i] >> 1) << 1

    # --- internals -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write_lock(self):
        with self._thread_lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _probe(self, user_id: int) -> tuple[int, int]:
        """``(slot, key)``: the slot that holds ``user_id``, or the empty one (key 0) that ends its
        probe sequence. Linear probing, and slots are never freed, so a reader may probe without
        the lock; the key is returned as read, since a writer may claim an empty slot meanwhile."""
        keys, mask = self._keys, self.capacity - 1
        i = ((user_id * _HASH) & _MASK64) >> self._shift
        while (key := keys[i]) not in (0, user_id):
            i = (i + 1) & mask
        return i, key

    def _slot(self, user_id: int) -> int | None:
        """The user's slot, claimed (rev 0, dirty) if new; None once the table is full.
        Call with the write lock held."""
        if user_id <= 0:
            raise ValueError("user ids are positive")
        if self._header[3]:
            return None
        i, key = self._probe(user_id)
        if key == 0:
            if 2 * (self._header[2] + 1) > self.capacity:
                self._header[3] = 1
                log.warning(
                    "the live index %s is full (%d users): every recommendation request now "
                    "reads the user's profile from the store; raise API_LIVE_INDEX_CAPACITY",
                    self.path,
                    self._header[2],
                )
                return None
            # the value before the key: a reader never sees a key without one
            self._values[i] = DIRTY
            self._keys[i] = user_id
            self._header[2] += 1
        return i


@contextlib.contextmanager
def _locked(path: Path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _capacity(path: Path, epoch: bytes) -> int | None:
    """The capacity of the built table at ``path``; None when there is none, not a whole one, or
    one built for another epoch of the store."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER)
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        return None
    if (
        len(head) < HEADER
        or head[:8] != MAGIC
        or head[EPOCH_AT : EPOCH_AT + EPOCH_SIZE].rstrip(b"\0") != epoch
    ):
        return None
    capacity = struct.unpack("<q", head[8:16])[0]
    return capacity if valid_capacity(capacity) and size == HEADER + 16 * capacity else None


def _build(
    path: Path, capacity: int, scan: Callable[[], Iterable[tuple[int, int]]], epoch: bytes
) -> None:
    tmp = path.with_suffix(f".build-{os.getpid()}")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, HEADER + 16 * capacity)
        with mmap.mmap(fd, HEADER) as head:
            head[:24] = MAGIC + struct.pack("<qq", capacity, 0)
            head[EPOCH_AT : EPOCH_AT + EPOCH_SIZE] = epoch.ljust(EPOCH_SIZE, b"\0")
        table = LiveIndex(tmp, os.dup(fd), capacity)
        try:
            n = 0
            for user_id, rev in scan():
                table.end_write(int(user_id), int(rev))
                n += 1
        finally:
            table.close()
        os.fsync(fd)
        os.replace(tmp, path)
        log.info("built the live index %s from %d profiles", path, n)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)

"""The user x item rating matrix that the collaborative models share.

Built from a Dask DataFrame one partition at a time, so the ratings never sit in one
pandas frame: each partition becomes three numpy arrays (row, column, value), and
scipy assembles the sparse matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from contract.arrays import lookup
from contract.compiled import njit_lazily


@dataclass
class RatingMatrix:
    """Ratings as CSR (users x items), with the external ids of each row and column.

    ``user_ids`` and ``item_ids`` are sorted int64 arrays; row ``r`` is user
    ``user_ids[r]`` and column ``c`` is movie ``item_ids[c]``. ``csr`` holds float32
    ratings; an absent entry means "not rated". ``timestamps``, when the source had a
    ``timestamp`` column, is an int64 array aligned with ``csr.data``.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    csr: sp.csr_matrix
    timestamps: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.csr.shape

    @property
    def nnz(self) -> int:
        return int(self.csr.nnz)

    def user_index(self, ids) -> np.ndarray:
        """Row index of each external user id, -1 where the user is unknown."""
        return lookup(self.user_ids, ids)

    def item_index(self, ids) -> np.ndarray:
        """Column index of each external movie id, -1 where the movie is unknown."""
        return lookup(self.item_ids, ids)

    def binary(self, threshold: float | None = None) -> sp.csr_matrix:
        """1.0 where rated (and, with ``threshold``, rated at least that), as float32 CSR."""
        m = self.csr.copy()
        if threshold is not None:
            m.data = (m.data >= threshold).astype(np.float32)
            m.eliminate_zeros()
        else:
            m.data = np.ones_like(m.data, dtype=np.float32)
        return m

    @classmethod
    def from_frame(cls, ratings: pd.DataFrame, user_ids=None, item_ids=None) -> "RatingMatrix":
        """From a pandas frame with ``userId, movieId, rating`` (small data and tests)."""
        users = (
            np.unique(ratings["userId"].to_numpy(np.int64))
            if user_ids is None
            else np.asarray(user_ids, np.int64)
        )
        items = (
            np.unique(ratings["movieId"].to_numpy(np.int64))
            if item_ids is None
            else np.asarray(item_ids, np.int64)
        )
        return cls._assemble(users, items, [_triplets(ratings, users, items)])

    def rows(self, lo: int, hi: int) -> "RatingMatrix":
        """Rows ``lo .. hi - 1`` as a matrix of their own (same columns; copies of the slices)."""
        a, b = int(self.csr.indptr[lo]), int(self.csr.indptr[hi])
        csr = sp.csr_matrix(
            (
                self.csr.data[a:b].copy(),
                self.csr.indices[a:b].copy(),
                self.csr.indptr[lo : hi + 1] - a,
            ),
            shape=(hi - lo, self.csr.shape[1]),
        )
        ts = None if self.timestamps is None else self.timestamps[a:b].copy()
        return RatingMatrix(self.user_ids[lo:hi].copy(), self.item_ids, csr, ts)

    def timestamps_of(self, rows: np.ndarray) -> np.ndarray | None:
        """The timestamps of ``csr[rows]``'s ratings, aligned with its data (None without)."""
        if self.timestamps is None:
            return None
        starts = self.csr.indptr[rows]
        return self.timestamps[ranges(starts, self.csr.indptr[np.asarray(rows) + 1] - starts)]

    def newest_first(self, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """:meth:`row` ``r`` newest first (ties, or no timestamps: column order), as a served
        user's ratings are packed and read back."""
        cols, vals, ts = self.row(r)
        order = np.argsort(-ts, kind="stable") if ts is not None else np.arange(len(cols))
        return cols[order], vals[order], None if ts is None else ts[order]

    def row(self, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Column indices, ratings and timestamps (or None) of matrix row ``r``."""
        lo, hi = self.csr.indptr[r], self.csr.indptr[r + 1]
        ts = None if self.timestamps is None else self.timestamps[lo:hi]
        return self.csr.indices[lo:hi], self.csr.data[lo:hi], ts

    @classmethod
    def from_dask(cls, ratings, user_ids=None, item_ids=None) -> "RatingMatrix":
        """From a Dask DataFrame with ``userId, movieId, rating``, partition by partition."""
        import dask

        if user_ids is None or item_ids is None:
            u, i = dask.compute(ratings["userId"].unique(), ratings["movieId"].unique())
            user_ids = np.sort(np.asarray(u, np.int64)) if user_ids is None else user_ids
            item_ids = np.sort(np.asarray(i, np.int64)) if item_ids is None else item_ids
        users = np.asarray(user_ids, np.int64)
        items = np.asarray(item_ids, np.int64)
        columns = [c for c in ("userId", "movieId", "rating", "timestamp") if c in ratings.columns]
        parts = [dask.delayed(_triplets)(p, users, items) for p in ratings[columns].to_delayed()]
        return cls._assemble(users, items, dask.compute(*parts))

    @classmethod
    def _assemble(cls, users, items, triplets) -> "RatingMatrix":
        """CSR from (row, col, value, timestamp|None) parts; a repeated (user, movie) keeps its last row."""
        rows = np.concatenate([t[0] for t in triplets]) if triplets else np.empty(0, np.int32)
        cols = np.concatenate([t[1] for t in triplets]) if triplets else np.empty(0, np.int32)
        vals = np.concatenate([t[2] for t in triplets]) if triplets else np.empty(0, np.float32)
        has_ts = bool(triplets) and all(t[3] is not None for t in triplets)
        ts = np.concatenate([t[3] for t in triplets]) if has_ts else None
        # Sort by (row, col) ourselves so the timestamps stay aligned with csr.data.
        order = np.lexsort((cols, rows))
        rows, cols, vals = rows[order], cols[order], vals[order]
        last = np.ones(len(rows), bool)
        last[:-1] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
        rows, cols, vals, order = rows[last], cols[last], vals[last], order[last]
        indptr = np.zeros(len(users) + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=len(users)), out=indptr[1:])
        csr = sp.csr_matrix((vals, cols, indptr), shape=(len(users), len(items)))
        return cls(users, items, csr, ts[order] if has_ts else None)


def kept_per_row(indptr: np.ndarray, cap: int, priority: np.ndarray) -> np.ndarray:
    """Which entries of a CSR matrix with row pointers ``indptr`` to keep so that every row
    longer than ``cap`` keeps its ``cap`` entries of lowest ``priority`` (aligned with the
    entries; ties: column order), the other rows all of theirs: a boolean mask. Each long row's
    priorities are sorted on their own by a loop compiled with numba (a lexsort of every long
    row's entries at once took 11 s of the 25M kNN fit)."""
    return njit_lazily(_lowest_per_row)(indptr, np.asarray(priority, np.float64), cap)


def _lowest_per_row(indptr, priority, cap):
    # a stable sort per row: ties keep the stored (column) order
    kept = np.ones(len(priority), np.bool_)
    for r in range(len(indptr) - 1):
        lo, hi = indptr[r], indptr[r + 1]
        if hi - lo > cap:
            order = np.argsort(priority[lo:hi], kind="mergesort")
            kept[lo:hi] = False
            for i in range(cap):
                kept[lo + order[i]] = True
    return kept


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + l)`` for each start ``s`` and length ``l``."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    offset = np.repeat(np.asarray(starts, dtype=np.int64) - (ends - lengths), lengths)
    return np.arange(total, dtype=np.int64) + offset


def _triplets(frame: pd.DataFrame, users: np.ndarray, items: np.ndarray):
    r = lookup(users, frame["userId"].to_numpy(np.int64))
    c = lookup(items, frame["movieId"].to_numpy(np.int64))
    keep = (r >= 0) & (c >= 0)
    ts = frame["timestamp"].to_numpy(np.int64)[keep] if "timestamp" in frame.columns else None
    return (
        r[keep].astype(np.int32),
        c[keep].astype(np.int32),
        frame["rating"].to_numpy(np.float32)[keep],
        ts,
    )

"""Id lookups over sorted id arrays, the join every model and document builder makes, and the
row blocks of a sparse matrix's entries that keep a pass over every rating small."""

from __future__ import annotations

import numpy as np


def lookup(sorted_ids: np.ndarray, ids) -> np.ndarray:
    """Position of each of ``ids`` in ``sorted_ids`` (ascending, unique), -1 where absent."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(sorted_ids) == 0:
        return np.full(ids.shape, -1, np.int64)
    pos = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == ids, pos, -1).astype(np.int64)


def row_blocks(indptr: np.ndarray, size: int):
    """``(lo, hi)`` row ranges covering a CSR matrix with row pointers ``indptr``, in order, each
    holding about ``size`` entries (at least one row each, so a longer row makes its own block)."""
    lo, rows = 0, len(indptr) - 1
    while lo < rows:
        hi = max(int(np.searchsorted(indptr, indptr[lo] + size, side="right")) - 1, lo + 1)
        yield lo, hi
        lo = hi

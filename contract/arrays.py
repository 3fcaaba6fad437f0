"""Id lookups over sorted id arrays, the join every model and document builder makes."""

from __future__ import annotations

import numpy as np


def lookup(sorted_ids: np.ndarray, ids) -> np.ndarray:
    """Position of each of ``ids`` in ``sorted_ids`` (ascending, unique), -1 where absent."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(sorted_ids) == 0:
        return np.full(ids.shape, -1, np.int64)
    pos = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == ids, pos, -1).astype(np.int64)

"""Item-based kNN on baseline residuals: the rating model's neighbourhood estimate.

A movie's estimate for a user is the similarity-weighted mean of the user's residuals (rating
minus the damped baseline) on the movies most similar to it that the user rated; similarity is
the shrunk cosine of two movies' residual columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp
from numba import njit

from contract.arrays import row_blocks
from contract.topk import best_per_row, top_positions
from pipeline.features.matrix import kept_per_row
from pipeline.progress import progress

# a row of a similarity block with at least this many times ``m`` positives is ranked by
# ``contract.topk.top_positions``; a row with fewer, whose bound would be zero, by sorting them
_MANY_POSITIVES = 4


class UserResiduals(Protocol):
    """Users' training residuals, read as dense tables (``rating._UserHistory``)."""

    def dense(self, users: np.ndarray) -> np.ndarray:
        """users x items residuals, NaN where a user did not rate the item."""
        ...


@dataclass(frozen=True)
class ItemKNNConfig:
    """Item-based kNN on baseline residuals ``z = r - (mu + b_u + b_i)``.

    neighbors: at most this many of the user's rated items (the most similar ones) vote.
    candidates: neighbours kept per item; the voters are chosen among these (bounds memory to
        ``n_items * candidates`` pairs).
    min_support: items with fewer training ratings neither get nor serve as neighbours.
    shrinkage: similarity = cosine of the residual columns times ``(n - 1) / (n - 1 + shrinkage)``,
        ``n`` = number of users who rated both items.
    max_pairs: budget of the similarity computation, whose cost is the number of co-rated pairs
        (sum over users of n_u squared): when the ratings exceed it, users above a cap (the
        largest that fits the budget) contribute a random subset of that many ratings to the
        similarities. All of a user's ratings still vote in predictions. None = no budget.
    block_cells: a block of the similarity computation holds ``block_cells // n_items`` items
        against all items, as a few dense float32 tables of ``block_cells`` cells.
    seed: seed of those subsets.
    """

    neighbors: int = 40
    candidates: int = 100
    min_support: int = 5
    shrinkage: float = 100.0
    max_pairs: int | None = 2_000_000_000
    block_cells: int = 8_000_000
    seed: int = 0


class ItemKNN:
    """Neighbour lists of every item: ``neighbours_`` (items x candidates, column index or -1)
    and ``similarities_`` (same shape, descending per row), over the columns of a RatingMatrix."""

    def __init__(self, config: ItemKNNConfig = ItemKNNConfig()):
        self.config = config

    def fit(self, residuals: sp.csr_matrix) -> "ItemKNN":
        """``residuals``: users x items CSR of baseline residuals of the training ratings."""
        cfg = self.config
        n_items = residuals.shape[1]
        counts = np.bincount(residuals.indices, minlength=n_items)
        keep = np.flatnonzero(counts >= max(cfg.min_support, 2))
        m = int(min(cfg.candidates, max(len(keep) - 1, 0)))
        self.neighbours_ = np.full((n_items, m), -1, np.int32)
        self.similarities_ = np.zeros((n_items, m), np.float32)
        if m == 0:
            return self
        residuals = residuals.tocsr()
        self.user_cap_ = _pair_budget_cap(np.diff(residuals.indptr), cfg.max_pairs)
        z = _similarity_input(residuals, keep, self.user_cap_, cfg.seed)
        norm = np.sqrt(np.asarray(z.multiply(z).sum(axis=0), np.float64).ravel()).astype(np.float32)
        norm[norm == 0] = 1.0
        z_t = z.T.tocsr()
        block = max(1, cfg.block_cells // len(keep))
        with progress("item kNN similarities", len(keep), unit="items") as bar:
            for start in range(0, len(keep), block):
                self._fill_block(start, min(start + block, len(keep)), keep, m, z_t, z, norm)
                bar.update(min(start + block, len(keep)) - start)
        return self

    def _fill_block(self, start, stop, keep, m, z_t, z, norm) -> None:
        """The neighbour lists of the kept items ``start .. stop - 1``.

        Their similarities to every kept item form one dense block (``block_cells`` floats),
        summed over the co-rated pairs only (:func:`_co_rated_sums`), then cut to each row's
        ``m`` best (ties: the lower column) and to the positive ones."""
        shrinkage = self.config.shrinkage
        n_rows = stop - start
        block = z_t[start:stop]
        co = np.zeros((n_rows, z.shape[1]), np.float32)
        sim = np.zeros((n_rows, z.shape[1]), np.float32)
        _co_rated_sums(
            block.indptr, block.indices, block.data, z.indptr, z.indices, z.data, co, sim
        )
        co -= 1.0
        np.maximum(co, 0.0, out=co)
        if shrinkage > 0:
            co /= co + shrinkage
        else:
            co = (co > 0).astype(np.float32)
        sim /= norm[start:stop, None] * norm[None, :]
        sim *= co
        del co
        sim[np.arange(n_rows), np.arange(start, stop)] = 0.0  # never its own neighbour
        rows, rank, cols, values = _top_positive(sim, m)
        at = keep[start + rows]
        self.neighbours_[at, rank] = keep[cols]
        self.similarities_[at, rank] = values

    def estimate(
        self,
        history: UserResiduals,
        rows: np.ndarray,
        items: np.ndarray,
        dense_budget: int = 4_000_000,
        block: int = 8_192,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Similarity-weighted mean residual of the user's most similar rated items.

        Returns (offset, weight sum, neighbours used), 0 where the user or item is unknown or
        none of the item's neighbours was rated. Pairs are grouped by user; each group of users
        gets a dense users x items residual table (at most ``dense_budget`` floats) so that the
        neighbour look-ups are plain array reads.
        """
        k = self.config.neighbors
        out = np.zeros(len(rows), np.float64)
        weight = np.zeros(len(rows), np.float64)
        used = np.zeros(len(rows), np.float64)
        n_items = self.neighbours_.shape[0]
        valid = np.flatnonzero((rows >= 0) & (items >= 0) & (items < n_items))
        if self.neighbours_.shape[1] == 0 or len(valid) == 0:
            return out, weight, used
        valid = valid[np.argsort(rows[valid], kind="stable")]
        sorted_rows = rows[valid]
        users = np.unique(sorted_rows)
        per_block = max(1, dense_budget // max(n_items, 1))
        for us in range(0, len(users), per_block):
            group = users[us : us + per_block]
            table = history.dense(group)
            lo = int(np.searchsorted(sorted_rows, group[0], side="left"))
            hi = int(np.searchsorted(sorted_rows, group[-1], side="right"))
            for s in range(lo, hi, block):
                b = valid[s : min(s + block, hi)]
                local = np.searchsorted(group, rows[b])
                nb = self.neighbours_[items[b]]
                z = table[local[:, None], np.maximum(nb, 0)]
                hit = (nb >= 0) & ~np.isnan(z)
                hit &= np.cumsum(hit, axis=1) <= k
                w = np.where(hit, self.similarities_[items[b]], 0.0)
                ws = w.sum(axis=1)
                out[b] = np.where(
                    ws > 0, (w * np.where(hit, z, 0.0)).sum(axis=1) / np.maximum(ws, 1e-12), 0.0
                )
                weight[b] = ws
                used[b] = hit.sum(axis=1)
        return out, weight, used


def _pair_budget_cap(counts: np.ndarray, budget: int | None) -> int | None:
    """The largest per-user cap c with sum(min(n_u, c)^2) <= budget (None if no cap is needed)."""
    n = np.sort(np.asarray(counts, np.float64))
    if budget is None or float((n**2).sum()) <= budget:
        return None
    lo, hi = 1, int(n[-1])
    while lo < hi:  # largest c that fits
        mid = (lo + hi + 1) // 2
        if float((np.minimum(n, mid) ** 2).sum()) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _similarity_input(
    residuals: sp.csr_matrix, keep: np.ndarray, cap: int | None, seed: int, block: int = 1 << 22
) -> sp.csr_matrix:
    """The similarities' input: float32 ``residuals`` of the ``keep`` columns (renumbered ``0 ..
    len(keep) - 1``), every row longer than ``cap`` cut to a random subset of ``cap`` of its
    entries (the lowest of seeded uniform priorities drawn for all its entries). Made in one copy,
    the priorities drawn a few rows (``block`` entries) at a time: cutting the rows, selecting the
    columns and converting, one whole copy after the other, was the fit's largest transient at
    25M (README, "Time and memory by size")."""
    indptr = residuals.indptr
    column = np.full(residuals.shape[1], -1, np.int32)
    column[keep] = np.arange(len(keep), dtype=np.int32)
    indices = column[residuals.indices]
    taken = indices >= 0
    capped = cap is not None and np.diff(indptr).max(initial=0) > cap
    rng = np.random.default_rng(seed)
    sizes = np.zeros(len(indptr) - 1, np.int64)
    for lo, hi in row_blocks(indptr, block):
        a, b = indptr[lo], indptr[hi]
        local = indptr[lo : hi + 1] - a
        if capped:
            taken[a:b] &= kept_per_row(local, cap, rng.random(b - a))
        sizes[lo:hi] = np.diff(np.concatenate([[0], np.cumsum(taken[a:b])])[local])
    indices = indices[taken]
    data = residuals.data[taken].astype(np.float32)
    return sp.csr_matrix(
        (data, indices, np.concatenate([[0], np.cumsum(sizes)])),
        shape=(residuals.shape[0], len(keep)),
    )


def _top_positive(table: np.ndarray, m: int):
    """``(row, rank, column, value)`` of each row's ``m`` largest positive entries, best first
    (ties: the lower column). A row with many positives is ranked by ``top_positions``; a row
    with few (a rarely rated movie: most of a wide row is zero) by sorting its positives, as
    ``top_positions`` would sort such a row whole."""
    positive = table > 0
    many = np.count_nonzero(positive, axis=1) >= _MANY_POSITIVES * m
    out = []
    if many.any():
        sub = table if many.all() else table[many]
        top = top_positions(sub, m)
        values = np.take_along_axis(sub, top, axis=1)
        r, rank = np.nonzero(values > 0)  # best first: each row's positives lead it
        out.append((np.flatnonzero(many)[r], rank, top[r, rank], values[r, rank]))
    if not many.all():
        few = np.flatnonzero(~many)
        r, c = np.nonzero(positive[few])
        r, rank, c, v = best_per_row(r, c, table[few[r], c], m)
        out.append((few[r], rank, c, v))
    return tuple(np.concatenate(parts) for parts in zip(*out))


@njit(cache=True, nogil=True)
def _co_rated_sums(a_indptr, a_indices, a_data, b_indptr, b_indices, b_data, co, sim):
    """For items x users rows ``a`` (CSR) and users x items ``b`` (CSR, the same ratings):
    ``co += pattern(a) @ pattern(b)`` (the users who rated both) and ``sim += a @ b``, in one
    pass over the co-rated pairs. ``sim`` is added in scipy's order (csr_matmat: each row of
    ``a``, its entries in stored order, each times the matching row of ``b``), skipping stored
    zeros of ``a`` as ``contract.products.dense_product`` does, so its values are scipy's."""
    for r in range(len(a_indptr) - 1):
        co_row, sim_row = co[r], sim[r]
        for p in range(a_indptr[r], a_indptr[r + 1]):
            v = a_data[p]
            u = a_indices[p]
            if v == 0:
                for q in range(b_indptr[u], b_indptr[u + 1]):
                    co_row[b_indices[q]] += 1.0
            else:
                for q in range(b_indptr[u], b_indptr[u + 1]):
                    j = b_indices[q]
                    co_row[j] += 1.0
                    sim_row[j] += v * b_data[q]

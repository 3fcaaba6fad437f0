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

from pipeline.features.matrix import keep_per_row
from pipeline.progress import progress

# positives per cell of a kNN block above which the top neighbours are selected in a dense table
_DENSE_SELECT = 0.02


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
        against all items; its temporary memory grows with the block's co-rated pairs only.
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
        z = _cap_rows(residuals, self.user_cap_, cfg.seed)
        if len(keep) < n_items:
            z = z[:, keep]
        z = z.astype(np.float32, copy=False)
        z_t = z.T.tocsr()
        # the co-rating counts' matrices share the residuals' index arrays
        ones, ones_t = (
            sp.csr_matrix((np.ones(a.nnz, np.float32), a.indices, a.indptr), shape=a.shape)
            for a in (z, z_t)
        )
        norm = np.sqrt(np.asarray(z.multiply(z).sum(axis=0), np.float64).ravel()).astype(np.float32)
        norm[norm == 0] = 1.0
        block = max(1, cfg.block_cells // len(keep))
        with progress("item kNN similarities", len(keep), unit="items") as bar:
            for start in range(0, len(keep), block):
                self._fill_block(
                    start, min(start + block, len(keep)), keep, m, z_t, z, ones_t, ones, norm
                )
                bar.update(min(start + block, len(keep)) - start)
        return self

    def _fill_block(self, start, stop, keep, m, z_t, z, ones_t, ones, norm) -> None:
        """The neighbour lists of the kept items ``start .. stop - 1``."""
        rows, cols, values = self._similar_pairs(
            z_t[start:stop], z, ones_t[start:stop], ones, norm[start:stop], norm, start
        )
        n_rows, width = stop - start, len(keep)
        if len(values) > _DENSE_SELECT * n_rows * width:
            # many positives per row (a smaller catalogue): select in a dense block, the others -inf
            table = np.full((n_rows, width), -np.inf, np.float32)
            table[rows, cols] = values
            top = (
                np.argpartition(-table, m - 1, axis=1)[:, :m]
                if m < width
                else np.broadcast_to(np.arange(width), (n_rows, width)).copy()
            )
            rows = np.repeat(np.arange(n_rows), top.shape[1])
            cols = top.ravel()
            values = table[rows, cols]
            ok = values > 0
            rows, cols, values = rows[ok], cols[ok], values[ok]
        # best first, ties by column; each row's first m are its neighbours
        order = np.lexsort((cols, -values, rows))
        rows, cols, values = rows[order], cols[order], values[order]
        first = np.searchsorted(rows, np.arange(n_rows))
        rank = np.arange(len(rows)) - first[rows]
        top = rank < m
        at = keep[start + rows[top]]
        self.neighbours_[at, rank[top]] = keep[cols[top]]
        self.similarities_[at, rank[top]] = values[top]

    def _similar_pairs(self, z_block, z, ones_block, ones, norm_block, norm, start):
        """(row in block, column, similarity) of the positive similarities of a block of items.

        Only co-rated pairs are touched: the item x item products are sparse (a few hundred
        co-rated items per item against a catalogue of tens of thousands), so the cost is the
        number of co-rated pairs, not the block's width."""
        shrinkage = self.config.shrinkage
        co = (ones_block @ ones).tocsr()
        co.data -= 1.0
        np.maximum(co.data, 0.0, out=co.data)
        co.data = (
            co.data / (co.data + shrinkage) if shrinkage > 0 else (co.data > 0).astype(np.float32)
        )
        sim = (z_block @ z).tocsr()
        row = np.repeat(np.arange(sim.shape[0]), np.diff(sim.indptr))
        sim.data /= norm_block[row] * norm[sim.indices]
        sim = sim.multiply(co).tocoo()
        ok = (sim.data > 0) & (sim.col != sim.row + start)  # never its own neighbour
        return (
            sim.row[ok].astype(np.int64),
            sim.col[ok].astype(np.int64),
            sim.data[ok].astype(np.float32),
        )

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


def _cap_rows(csr: sp.csr_matrix, cap: int | None, seed: int) -> sp.csr_matrix:
    """``csr`` with every row longer than ``cap`` cut to a random subset of ``cap`` entries."""
    if cap is None:
        return csr
    return keep_per_row(csr, cap, np.random.default_rng(seed).random(csr.nnz))

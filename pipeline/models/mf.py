"""Biased matrix factorisation on a ``RatingMatrix``.

``BiasedMF`` adds a low-rank term to the baseline of ``biases.Biases``,
``mu + b_u + b_i + p_u . q_i``, fit by explicit alternating least squares: each half-step solves
every user's (item's) ridge system with a few conjugate-gradient steps, warm started from the
previous iterate, row by row in a loop compiled by numba, so that memory is a few vectors per
row whatever the number of ratings. A new user is folded in with one exact ridge solve against
the stored item factors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numba import njit

from contract.arrays import lookup
from contract.scoring import ItemFactors
from pipeline.features.matrix import RatingMatrix
from pipeline.progress import progress


@dataclass(frozen=True)
class BiasedMFConfig:
    """Biased matrix factorisation by explicit ALS.

    factors: rank of ``p_u . q_i``.
    iterations: ALS sweeps (user half-step then item half-step).
    regularization: weighted-lambda ridge penalty; a user (item) with ``n`` ratings has penalty
        ``regularization * n`` on its factors and bias (ALS-WR), so heavy and light users are
        regularised alike per rating.
    cg_steps: conjugate-gradient steps per half-step (warm started).
    init_scale: standard deviation of the random initial factors.
    seed: random seed of the initial factors.
    """

    factors: int = 50
    iterations: int = 10
    regularization: float = 0.1
    cg_steps: int = 3
    init_scale: float = 0.01
    seed: int = 0


class BiasedMF:
    """``mu + b_u + b_i + p_u . q_i``.

    Fitted attributes: ``global_mean_``, ``user_ids_``, ``item_ids_`` (external ids, sorted),
    ``user_factors_`` (n_users x factors, float32), ``user_bias_``, ``item_factors_``,
    ``item_bias_``.
    """

    def __init__(self, config: BiasedMFConfig = BiasedMFConfig()):
        self.config = config

    def fit(self, matrix: RatingMatrix, global_mean: float | None = None) -> "BiasedMF":
        cfg = self.config
        csr = matrix.csr.astype(np.float32)
        csr.sort_indices()
        mu = float(csr.data.mean(dtype=np.float64)) if global_mean is None else float(global_mean)
        centred = sp.csr_matrix(
            (csr.data - np.float32(mu), csr.indices, csr.indptr), shape=csr.shape
        )
        by_item = centred.T.tocsr()
        by_item.sort_indices()
        k = cfg.factors
        rng = np.random.default_rng(cfg.seed)
        # Row vectors are [factors..., own bias]; the other side is multiplied as [factors..., 1].
        users = (rng.standard_normal((csr.shape[0], k + 1)) * cfg.init_scale).astype(np.float32)
        items = (rng.standard_normal((csr.shape[1], k + 1)) * cfg.init_scale).astype(np.float32)
        users[:, k] = 0.0
        items[:, k] = 0.0
        with progress("matrix factorisation", 2 * cfg.iterations, unit="half-steps") as bar:
            for _ in range(cfg.iterations):
                users = self._half_step(centred, users, items)
                bar.update(1)
                items = self._half_step(by_item, items, users)
                bar.update(1)
        users[np.diff(centred.indptr) == 0] = 0.0  # no ratings: no evidence, so no factors or bias
        items[np.diff(by_item.indptr) == 0] = 0.0
        self.global_mean_ = mu
        self.user_ids_ = np.asarray(matrix.user_ids, np.int64)
        self.item_ids_ = np.asarray(matrix.item_ids, np.int64)
        self.user_factors_ = np.ascontiguousarray(users[:, :k])
        self.user_bias_ = users[:, k].copy()
        self.item_factors_ = np.ascontiguousarray(items[:, :k])
        self.item_bias_ = items[:, k].copy()
        return self

    def _half_step(self, mat: sp.csr_matrix, own: np.ndarray, other: np.ndarray) -> np.ndarray:
        """Solve every row's ridge system ``(D'D + lam n I) x = D'(y - other_bias)`` by CG."""
        cfg = self.config
        k = cfg.factors
        design = other.copy()
        other_bias = design[:, k].copy()
        design[:, k] = 1.0
        out = np.empty_like(own)
        _cg_rows(
            mat.indptr,
            mat.indices,
            mat.data,
            design,
            other_bias,
            own,
            np.float32(cfg.regularization),
            cfg.cg_steps,
            out,
        )
        return out

    def estimate(
        self, user_index: np.ndarray, item_index: np.ndarray, block: int = 500_000
    ) -> np.ndarray:
        """Predictions for internal indices; an unknown side (-1) contributes nothing."""
        out = np.full(len(user_index), self.global_mean_, np.float64)
        uk, ik = user_index >= 0, item_index >= 0
        out += np.where(uk, self.user_bias_[np.maximum(user_index, 0)], 0.0)
        out += np.where(ik, self.item_bias_[np.maximum(item_index, 0)], 0.0)
        both = np.flatnonzero(uk & ik)
        for s in range(0, len(both), block):
            b = both[s : s + block]
            out[b] += np.einsum(
                "ij,ij->i", self.user_factors_[user_index[b]], self.item_factors_[item_index[b]]
            )
        return out

    def predict(self, user_ids, item_ids) -> np.ndarray:
        """Unclipped predictions for external ids (unknown users/items fall back to biases)."""
        return self.estimate(lookup(self.user_ids_, user_ids), lookup(self.item_ids_, item_ids))

    def item_side(self) -> ItemFactors:
        """The fitted item side (shared arrays), as the live model publishes it."""
        return ItemFactors(
            float(self.global_mean_),
            self.item_ids_,
            self.item_factors_,
            self.item_bias_,
            self.config.regularization,
        )

    def fold_in(self, ratings: pd.DataFrame, min_weight: int = 0) -> tuple[np.ndarray, float]:
        """A new user's ``(factors, bias)`` from ``movieId, rating`` rows, items held fixed:
        ``contract.scoring.ItemFactors.fold_in``."""
        return self.item_side().fold_in(
            ratings["movieId"].to_numpy(np.int64),
            ratings["rating"].to_numpy(np.float64),
            min_weight,
        )

    def predict_folded(self, vector: np.ndarray, bias: float, item_ids) -> np.ndarray:
        """Unclipped predictions for a folded-in user (see ``fold_in``) on external movie ids."""
        return self.item_side().predict_folded(vector, bias, item_ids)


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _cg_rows(indptr, cols, values, design, other_bias, own, regularization, steps, out):
    """``steps`` conjugate-gradient steps on each row's system, from ``own``, into ``out``.

    Row ``r``'s design ``D`` is ``design`` at the row's columns: ``D'D v`` is taken entry by
    entry (one dot product and one update per rating), so no ratings x factors temporary is
    made. Dot products may be summed in any order (``fastmath`` reassociation, for SIMD)."""
    k1 = design.shape[1]
    x = np.empty(k1, np.float32)
    resid = np.empty(k1, np.float32)
    direction = np.empty(k1, np.float32)
    product = np.empty(k1, np.float32)
    for row in range(len(indptr) - 1):
        lo, hi = indptr[row], indptr[row + 1]
        lam = regularization * np.float32(hi - lo)
        x[:] = own[row]
        # resid = D'(y - other_bias) - (D'D + lam) x
        for j in range(k1):
            resid[j] = -lam * x[j]
        for e in range(lo, hi):
            c = cols[e]
            dot = np.float32(0.0)
            for j in range(k1):
                dot += design[c, j] * x[j]
            t = values[e] - other_bias[c] - dot
            for j in range(k1):
                resid[j] += t * design[c, j]
        direction[:] = resid
        rs = np.float32(0.0)
        for j in range(k1):
            rs += resid[j] * resid[j]
        for _ in range(steps):
            for j in range(k1):
                product[j] = lam * direction[j]
            for e in range(lo, hi):
                c = cols[e]
                dot = np.float32(0.0)
                for j in range(k1):
                    dot += design[c, j] * direction[j]
                for j in range(k1):
                    product[j] += dot * design[c, j]
            curvature = np.float32(0.0)
            for j in range(k1):
                curvature += direction[j] * product[j]
            alpha = rs / max(curvature, np.float32(1e-20))
            rs_new = np.float32(0.0)
            for j in range(k1):
                x[j] += alpha * direction[j]
                resid[j] -= alpha * product[j]
                rs_new += resid[j] * resid[j]
            beta = rs_new / max(rs, np.float32(1e-20))
            for j in range(k1):
                direction[j] = resid[j] + beta * direction[j]
            rs = rs_new
        out[row] = x

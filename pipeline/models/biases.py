"""Damped biases: the baseline ``mu + b_u + b_i`` that the rating model's other parts refine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from pipeline.features.matrix import RatingMatrix


@dataclass(frozen=True)
class BiasConfig:
    """Damped biases.

    user_damping / item_damping: pseudo-counts pulling each bias toward 0
        (``b = sum(residual) / (n + damping)``).
    iterations: alternations between item and user biases.
    """

    user_damping: float = 15.0
    item_damping: float = 10.0
    iterations: int = 10


class Biases:
    """``mu + b_u + b_i``; fitted attributes ``global_mean_``, ``user_bias_``, ``item_bias_``
    (float32, aligned with ``matrix.user_ids`` / ``matrix.item_ids``)."""

    def __init__(self, config: BiasConfig = BiasConfig()):
        self.config = config

    def fit(self, matrix: RatingMatrix, global_mean: float | None = None) -> "Biases":
        csr = matrix.csr
        self.user_ids_ = np.asarray(matrix.user_ids, np.int64)
        self.item_ids_ = np.asarray(matrix.item_ids, np.int64)
        r = csr.data.astype(np.float64)
        mu = float(r.mean()) if global_mean is None else float(global_mean)
        rows = _row_of_entries(csr)
        cols = csr.indices
        n_u, n_i = csr.shape
        cu = np.bincount(rows, minlength=n_u)
        ci = np.bincount(cols, minlength=n_i)
        bu = np.zeros(n_u)
        bi = np.zeros(n_i)
        for _ in range(self.config.iterations):
            bi = np.bincount(cols, r - mu - bu[rows], n_i) / (ci + self.config.item_damping)
            bu = np.bincount(rows, r - mu - bi[cols], n_u) / (cu + self.config.user_damping)
        self.global_mean_ = mu
        self.user_bias_ = bu.astype(np.float32)
        self.item_bias_ = bi.astype(np.float32)
        return self

    def user_bias_for(self, item_index: np.ndarray, ratings: np.ndarray) -> float:
        """A new user's bias from their ratings (the same update as the last fitting step)."""
        known = item_index >= 0
        resid = ratings[known] - self.global_mean_ - self.item_bias_[item_index[known]]
        return float(resid.sum() / (known.sum() + self.config.user_damping))

    def estimate(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        """Baseline for internal indices; -1 (unknown) contributes a zero bias."""
        out = np.full(len(user_index), self.global_mean_, np.float64)
        out += np.where(user_index >= 0, self.user_bias_[np.maximum(user_index, 0)], 0.0)
        out += np.where(item_index >= 0, self.item_bias_[np.maximum(item_index, 0)], 0.0)
        return out


def _row_of_entries(csr: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))

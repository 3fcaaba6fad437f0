"""The rating predictor: gradient boosting stacked on collaborative models.

Three collaborative models are fit on the training ratings: damped biases (``biases.Biases``), a
biased matrix factorisation (``mf.BiasedMF``) and an item-based kNN on baseline residuals
(``item_knn.ItemKNN``). A scikit-learn ``HistGradientBoostingRegressor`` then predicts the rating from
their estimates together with the leakage-free row features of ``features.rating_rows`` and two
"same day" features (the user's other training ratings within a time window of the rating).

Honest stacking: the gradient-boosting model is trained on out-of-fold rows. A sample of the
training ratings (at most ``max_gbm_rows``) is dealt into ``stack_folds`` folds by a hash of
(userId, movieId); for each fold every collaborative model *and* every statistic of
``features`` is refit on the training ratings minus that fold, and the fold's rows are described
with those models. So no feature of a stacking row has seen its own rating. Predictions use the
models refit on all training ratings. With one fold (blending), the sample is held out whole:
one refit on the other ratings instead of ``stack_folds``.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from contract.arrays import lookup
from pipeline.features.matrix import RatingMatrix, ranges
from pipeline.features.tables import (
    TrainingFeatures,
    rating_rows,
    refit_features,
    single_user_features,
)
from pipeline.models.biases import BiasConfig, Biases
from pipeline.models.item_knn import ItemKNN, ItemKNNConfig
from pipeline.models.mf import BiasedMF, BiasedMFConfig
from pipeline.progress import progress
from pipeline.runtime import current_client, to_cluster

log = logging.getLogger(__name__)

MIN_RATING, MAX_RATING = 0.5, 5.0
TIME_COLUMNS = ("u_since_first", "movie_age", "weekday", "day_n", "day_res")
_TS_BITS = 32
_GOLDEN = 0x9E3779B97F4A7C15


@dataclass(frozen=True)
class RatingModelConfig:
    """The stacked rating model.

    bias, mf, knn: configs of the collaborative models (``knn.neighbors = 0`` drops the kNN).
    stack_folds: folds of the out-of-fold stacking rows (>= 1); each fold refits every
        collaborative model and feature statistic, so fitting costs ``stack_folds + 1`` fits.
        1 holds the whole sample out at once (blending): its refit sees the ratings outside
        the sample, which is then at most ``blend_share`` of them.
    max_gbm_rows: cap on the stacking rows (a hash-chosen sample of the training ratings).
    blend_share: with one fold, the largest share of the training ratings held out as the sample.
    time_features: use the rating's timestamp (weekday, days since the user's first rating,
        movie age, same-day features). Without it, only timestamp-free features are used.
        Off by default: the served predictions ("how would you rate it now?") have no rating
        timestamp, so evaluation uses the same timestamp-free model that serving uses (the
        README's "Measured results" gives the RMSE with and without them).
    timestamp_dropout: share of stacking rows whose timestamp is hidden, so the model also
        predicts well for pairs without a timestamp (e.g. "would they like it now?").
    day_window_days: half-width of the "same day" window around the rating's timestamp.
    day_damping: pseudo-count of the same-day mean MF residual.
    gbm_*: HistGradientBoostingRegressor parameters (squared error loss). 300 trees of 63
        leaves at rate 0.05 were chosen on validation carves of the peer benchmark's random90
        training part (README, "Measured results"); the large-data profile keeps 150 trees of
        31 leaves at 0.1 (``PipelineConfig.for_size``).
    gbm_threads: OpenMP threads of the boosting's predictions; None = all cores. 1 by default:
        predictions run in Dask tasks beside each other, and with 2 cores shared, OpenMP's
        spin-waiting made 2-thread work up to 10x slower than 1-thread work.
    gbm_fit_threads: OpenMP threads of the boosting's fit; None = all cores. The fit runs
        alone (after the folds and the final collaborative fit), so it uses every core by
        default.
    predict_block: pairs per block in ``predict``.
    seed: seed of the fold hash, the MF initialisation, the dropout and the boosting.
    """

    bias: BiasConfig = field(default_factory=BiasConfig)
    mf: BiasedMFConfig = field(default_factory=lambda: BiasedMFConfig(iterations=6))
    knn: ItemKNNConfig = field(default_factory=ItemKNNConfig)
    stack_folds: int = 5
    max_gbm_rows: int = 1_000_000
    blend_share: float = 0.2
    time_features: bool = False
    timestamp_dropout: float = 0.2
    day_window_days: float = 1.0
    day_damping: float = 3.0
    gbm_max_iter: int = 300
    gbm_learning_rate: float = 0.05
    gbm_max_leaf_nodes: int = 63
    gbm_min_samples_leaf: int = 50
    gbm_l2_regularization: float = 0.0
    gbm_threads: int | None = 1
    gbm_fit_threads: int | None = None
    predict_block: int = 200_000
    seed: int = 0


@dataclass
class _UserHistory:
    """Training ratings of a set of users in two layouts.

    CSR (``indptr``, ``cols``, ``residual``): each user's items with their baseline residual
    (for the kNN). ``time_keys`` = row << 32 | (timestamp - t0), sorted, with ``time_cumsum``,
    the cumulative MF residual in that order (for the same-day window sums); both empty when
    built without timestamps (``ts`` None: the model has no time features).
    """

    n_items: int
    indptr: np.ndarray
    cols: np.ndarray
    residual: np.ndarray
    time_keys: np.ndarray
    time_cumsum: np.ndarray
    t0: int

    @classmethod
    def build(
        cls, n_rows, rows, items, n_items, base_residual, ts, mf_residual, t0
    ) -> "_UserHistory":
        """From entries (row, item, residuals[, timestamp]); entries already sorted by (row, item),
        as a CSR matrix's are, are used as they are (no copy)."""
        rows, items = np.asarray(rows), np.asarray(items)
        residual = np.asarray(base_residual, np.float32)
        ordered = len(rows) < 2 or bool(
            np.all((rows[1:] > rows[:-1]) | ((rows[1:] == rows[:-1]) & (items[1:] > items[:-1])))
        )
        cols = np.asarray(items, np.int32)
        if not ordered:
            order = np.lexsort((items, rows))
            cols, residual = cols[order], residual[order]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_rows))]).astype(
            np.int64
        )
        time_keys, cumsum = np.empty(0, np.int64), np.zeros(1)
        if ts is not None:
            ts = np.asarray(ts, np.float64)
            has_ts = ~np.isnan(ts)
            offset = np.clip(np.nan_to_num(ts[has_ts]) - t0, 0, (1 << _TS_BITS) - 1).astype(
                np.int64
            )
            time_keys = (np.asarray(rows, np.int64)[has_ts] << _TS_BITS) | offset
            t_order = np.argsort(time_keys, kind="stable")
            time_keys = time_keys[t_order]
            cumsum = np.concatenate(
                [[0.0], np.cumsum(np.asarray(mf_residual, np.float64)[has_ts][t_order])]
            )
        return cls(n_items, indptr, cols, residual, time_keys, cumsum, int(t0))

    def take(self, rows: np.ndarray) -> "_UserHistory":
        """The histories of ``rows`` (in that order) as their own rows ``0 .. len(rows) - 1``."""
        rows = np.asarray(rows, np.int64)
        starts, counts = self.indptr[rows], self.indptr[rows + 1] - self.indptr[rows]
        entry = ranges(starts, counts)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        # the time-ordered entries of each row are one run of time_keys (the row is the high bits)
        t_lo = np.searchsorted(self.time_keys, rows << _TS_BITS, side="left")
        t_hi = np.searchsorted(self.time_keys, (rows + 1) << _TS_BITS, side="left")
        t_entry = ranges(t_lo, t_hi - t_lo)
        local = np.repeat(np.arange(len(rows), dtype=np.int64), t_hi - t_lo)
        offset = self.time_keys[t_entry] & ((1 << _TS_BITS) - 1)
        steps = self.time_cumsum[t_entry + 1] - self.time_cumsum[t_entry]
        return _UserHistory(
            self.n_items,
            indptr,
            self.cols[entry],
            self.residual[entry],
            (local << _TS_BITS) | offset,
            np.concatenate([[0.0], np.cumsum(steps)]),
            self.t0,
        )

    def dense(self, rows: np.ndarray) -> np.ndarray:
        """len(rows) x n_items float32 table of residuals, NaN where the user did not rate
        (``item_knn.UserResiduals``)."""
        table = np.full((len(rows), self.n_items), np.nan, np.float32)
        starts, stops = self.indptr[rows], self.indptr[rows + 1]
        counts = stops - starts
        local = np.repeat(np.arange(len(rows)), counts)
        entry = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts - starts, counts)
        table[local, self.cols[entry]] = self.residual[entry]
        return table

    def window(self, rows: np.ndarray, ts: np.ndarray, half_width: float, damping: float):
        """(count, damped mean MF residual) of the user's ratings within ``ts +- half_width``."""
        n = np.full(len(rows), np.nan)
        mean = np.full(len(rows), np.nan)
        ok = (rows >= 0) & ~np.isnan(ts)
        if not ok.any():
            return n, mean
        r = rows[ok].astype(np.int64) << _TS_BITS
        lo_t = np.clip(ts[ok] - half_width - self.t0, 0, (1 << _TS_BITS) - 1).astype(np.int64)
        hi_t = np.clip(ts[ok] + half_width - self.t0, 0, (1 << _TS_BITS) - 1).astype(np.int64)
        lo = np.searchsorted(self.time_keys, r | lo_t, side="left")
        hi = np.searchsorted(self.time_keys, r | hi_t, side="right")
        count = (hi - lo).astype(np.float64)
        n[ok] = count
        mean[ok] = (self.time_cumsum[hi] - self.time_cumsum[lo]) / (count + damping)
        return n, mean


@dataclass
class _UserState:
    """Per-user parameters the collaborative features need (rows of a matrix, or one folded user)."""

    base_bias: np.ndarray
    mf_bias: np.ndarray
    mf_factors: np.ndarray
    history: _UserHistory

    def take(self, rows: np.ndarray) -> "_UserState":
        """The state of ``rows`` (in that order) as rows ``0 .. len(rows) - 1``."""
        return _UserState(
            self.base_bias[rows], self.mf_bias[rows], self.mf_factors[rows], self.history.take(rows)
        )


@dataclass
class KnownUsers:
    """Some training users of a fitted ``RatingModel`` with their state (``RatingModel.users``):
    what ``predict(pairs, users=...)`` needs of them, so a copy of the model without any user
    (``RatingModel.without_users``) can predict for a block of users shipped on its own."""

    user_ids: np.ndarray
    state: _UserState

    def index(self, ids) -> np.ndarray:
        return lookup(self.user_ids, ids)


@dataclass
class FoldedUser:
    """A user folded into a fitted ``RatingModel`` from their ratings (see ``RatingModel.fold_in``).

    ``vector`` and ``bias`` are the user's MF factors and bias against the stored item model.
    """

    vector: np.ndarray
    bias: float
    features: TrainingFeatures
    state: _UserState
    n_ratings: int


class _Collaborative:
    """Biases + MF + kNN fit on one set of ratings, with the users' histories.

    Fitted attributes: ``user_ids_``, ``item_ids_``, ``bias_``, ``mf_``, ``knn_`` (None without
    neighbours) and ``state_`` (the training users' biases, factors and histories; None once
    dropped by ``RatingModel.without_users``)."""

    def __init__(self, config: RatingModelConfig):
        self.config = config

    def fit(
        self, matrix: RatingMatrix, ts: np.ndarray, t0: int, global_mean: float
    ) -> "_Collaborative":
        cfg = self.config
        started = time.perf_counter()
        log.info(
            "collaborative models on %s ratings: biases and matrix factorisation ...",
            f"{matrix.nnz:,}",
        )
        self.user_ids_, self.item_ids_ = (
            matrix.user_ids,
            matrix.item_ids,
        )  # the ratings themselves are not kept
        self.bias_ = Biases(cfg.bias).fit(matrix, global_mean)
        self.mf_ = BiasedMF(cfg.mf).fit(matrix, global_mean)
        mf_done = time.perf_counter()
        csr = matrix.csr
        rows = _entry_rows(csr)
        base_res = _residuals(csr, rows, self.bias_.estimate)
        # the same-day window needs the MF residuals in time order; without time features, neither
        mf_res = _residuals(csr, rows, self.mf_.estimate) if cfg.time_features else None
        del rows  # made again for the histories: not held beside the kNN fit's transients
        self.knn_ = None
        log.info(
            "collaborative models on %s ratings: biases and matrix factorisation fitted in %.1f s; item kNN ...",
            f"{matrix.nnz:,}",
            mf_done - started,
        )
        if cfg.knn.neighbors > 0:
            z = sp.csr_matrix((base_res, csr.indices, csr.indptr), shape=csr.shape)
            self.knn_ = ItemKNN(cfg.knn).fit(z)
            del z
        history = _UserHistory.build(
            csr.shape[0],
            _entry_rows(csr),
            csr.indices,
            csr.shape[1],
            base_res,
            ts if cfg.time_features else None,
            mf_res,
            t0,
        )
        del base_res, mf_res
        self.state_ = _UserState(
            self.bias_.user_bias_, self.mf_.user_bias_, self.mf_.user_factors_, history
        )
        log.info(
            "collaborative models on %s ratings: item kNN and histories fitted in %.1f s",
            f"{matrix.nnz:,}",
            time.perf_counter() - mf_done,
        )
        return self

    def columns(
        self, state: _UserState, rows: np.ndarray, items: np.ndarray, ts: np.ndarray
    ) -> dict:
        """The collaborative features of pairs given as (row in ``state``, item column, timestamp)."""
        cfg = self.config
        uk, ik = rows >= 0, items >= 0
        u, i = np.maximum(rows, 0), np.maximum(items, 0)
        mu = self.bias_.global_mean_
        item_base = np.where(ik, self.bias_.item_bias_[i], 0.0)
        base = mu + np.where(uk, state.base_bias[u], 0.0) + item_base
        mf_ub = np.where(uk, state.mf_bias[u], np.nan)
        mf_ib = np.where(ik, self.mf_.item_bias_[i], np.nan)
        mf = self.mf_.global_mean_ + np.nan_to_num(mf_ub) + np.nan_to_num(mf_ib)
        both = np.flatnonzero(uk & ik)
        mf[both] += np.einsum(
            "ij,ij->i", state.mf_factors[rows[both]], self.mf_.item_factors_[items[both]]
        )
        out = {"base": base, "mf": mf, "mf_user_bias": mf_ub, "mf_item_bias": mf_ib}
        if self.knn_ is not None:
            offset, weight, used = self.knn_.estimate(state.history, rows, items)
            out.update(knn=base + offset, knn_weight=weight, knn_n=used)
        if cfg.time_features:
            out["day_n"], out["day_res"] = state.history.window(
                rows, ts, cfg.day_window_days * 86_400.0, cfg.day_damping
            )
        return out

    def user_index(self, ids) -> np.ndarray:
        return lookup(self.user_ids_, ids)

    def item_index(self, ids) -> np.ndarray:
        return lookup(self.item_ids_, ids)


class RatingModel:
    """Predicts a user's rating of a movie (see the module docstring).

    Fitted attributes: ``collaborative_`` (biases, MF and kNN on all training ratings),
    ``mf_`` (the ``BiasedMF``; also ``user_factors_``, ``user_bias_``, ``item_factors_``,
    ``item_bias_``), ``gbm_`` (the HistGradientBoostingRegressor), ``columns_`` (its feature
    names), ``features_``, ``n_stack_rows_``.
    """

    def __init__(self, config: RatingModelConfig = RatingModelConfig()):
        self.config = config

    # fitted MF parameters, for folding in users elsewhere
    @property
    def mf_(self) -> BiasedMF:
        return self.collaborative_.mf_

    @property
    def user_factors_(self) -> np.ndarray:
        return self.mf_.user_factors_

    @property
    def user_bias_(self) -> np.ndarray:
        return self.mf_.user_bias_

    @property
    def item_factors_(self) -> np.ndarray:
        return self.mf_.item_factors_

    @property
    def item_bias_(self) -> np.ndarray:
        return self.mf_.item_bias_

    def fit(
        self, train, features: TrainingFeatures, matrix: RatingMatrix | None = None
    ) -> "RatingModel":
        """Fit on ``train`` (Dask or pandas: userId, movieId, rating, timestamp) and the
        ``features`` built from the same ratings. ``matrix`` (optional) holds the same ratings
        with their timestamps (``RatingMatrix.from_dask(train)``): the model then takes its
        arrays from it, sharing their memory, instead of reading ``train`` again."""
        from sklearn.ensemble import HistGradientBoostingRegressor

        cfg = self.config
        entries, user_ids, item_ids = self._collect(train, features, matrix)

        def final_fit() -> _Collaborative:  # the collaborative models on every training rating
            return _Collaborative(cfg).fit(
                entries.matrix(user_ids, item_ids),
                entries.ts,
                int(entries.ts.min()) - 1,
                features.global_mean,
            )

        # on a Dask cluster the fold fits run on the workers while this process makes the final
        # fit; in-process, one after the other
        x, y, _, collaborative = self._stack(
            entries, user_ids, item_ids, features, _cluster_of(train), final_fit
        )
        # a column that is never observed (e.g. no release years at all) carries nothing
        self.columns_ = [c for c in x.columns if x[c].notna().any()]
        x = x[self.columns_]
        gbm = HistGradientBoostingRegressor(
            max_iter=cfg.gbm_max_iter,
            learning_rate=cfg.gbm_learning_rate,
            max_leaf_nodes=cfg.gbm_max_leaf_nodes,
            min_samples_leaf=cfg.gbm_min_samples_leaf,
            l2_regularization=cfg.gbm_l2_regularization,
            early_stopping=False,
            random_state=cfg.seed,
        )
        started = time.perf_counter()
        log.info(
            "rating model: gradient boosting on %s rows x %d features (%d trees) ...",
            f"{len(y):,}",
            len(self.columns_),
            cfg.gbm_max_iter,
        )
        with self._threads(cfg.gbm_fit_threads):
            self.gbm_ = gbm.fit(x.to_numpy(np.float32), y)
        log.info("rating model: gradient boosting done in %.1f s", time.perf_counter() - started)
        self.n_stack_rows_ = len(y)
        del x, y
        self.features_ = features
        self.collaborative_ = collaborative
        return self

    @staticmethod
    def _threads(limit: int | None):
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=limit, user_api="openmp")

    def stacking_rows(
        self, train, features: TrainingFeatures
    ) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
        """The out-of-fold rows the gradient-boosting model is trained on: (X, y, pairs).

        ``pairs`` has userId, movieId, timestamp (NaN where hidden) and fold of each row; each
        row's features come from models and statistics refit without the row's fold.
        """
        return self._stack(*self._collect(train, features), features, _cluster_of(train))[:3]

    def _collect(self, train, features: TrainingFeatures, matrix: RatingMatrix | None = None):
        if self.config.stack_folds < 1:
            raise ValueError("stack_folds must be at least 1")
        user_ids = features.users.index.to_numpy(np.int64)
        item_ids = features.movies.index[features.movies["n_ratings"].to_numpy() > 0].to_numpy(
            np.int64
        )
        if matrix is None:
            entries = _Entries.collect(train, user_ids, item_ids)
        elif (
            matrix.timestamps is not None
            and np.array_equal(matrix.user_ids, user_ids)
            and np.array_equal(matrix.item_ids, item_ids)
        ):
            entries = _Entries.from_matrix(matrix)
        else:
            raise ValueError(
                "the rating matrix must hold the features' users and rated movies, with timestamps"
            )
        if entries.size == 0:
            raise ValueError("no training ratings")
        return entries, user_ids, item_ids

    def _stack(
        self,
        entries: "_Entries",
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        features: TrainingFeatures,
        client=None,
        meanwhile=None,
    ):
        """``(X, y, pairs, meanwhile())``: the stacking rows, their targets and pairs (with each
        row's fold), and the result of ``meanwhile`` (None when not given), which runs in this
        process while the fold fits run on the Dask cluster of ``client`` (or after them, in
        this process, when ``client`` is None)."""
        cfg = self.config
        h = _pair_hash(user_ids[entries.rows], item_ids[entries.cols], cfg.seed)
        rate = min(1.0 if cfg.stack_folds > 1 else cfg.blend_share, cfg.max_gbm_rows / entries.size)
        chosen = (h >> np.uint64(11)).astype(np.float64) * 2.0**-53 < rate
        fold = np.where(chosen, (h % np.uint64(cfg.stack_folds)).astype(np.int8), np.int8(-1))
        del h, chosen
        present = [f for f in range(cfg.stack_folds) if (fold == f).any()]
        # each fold's rows and the rows of no fold apart: a fold's fit reads the others as they are
        job = _FoldJob(
            self,
            {int(g): entries.subset(fold == g) for g in np.unique(fold)},
            user_ids,
            item_ids,
            features,
            int(entries.ts.min()) - 1,
        )
        del fold
        with progress("rating model: stacking folds", len(present), unit="folds") as bar:
            if client is None:
                parts = []
                for f in present:
                    parts.append(job.rows(f))
                    bar.update(1)
                other = meanwhile() if meanwhile is not None else None
            else:
                from distributed import as_completed

                # this process keeps no copy of the job's parts
                shared = to_cluster(client, job)
                del job
                futures = [client.submit(_FoldJob.rows, shared, f, pure=False) for f in present]
                other = meanwhile() if meanwhile is not None else None
                for _ in as_completed(futures):
                    bar.update(1)
                parts = client.gather(futures)
                del shared, futures
        frames, targets, folds = zip(*parts)
        return (
            pd.concat(frames, ignore_index=True),
            np.concatenate(targets),
            pd.concat(folds, ignore_index=True),
            other,
        )

    def _design(
        self,
        collab: _Collaborative,
        state: _UserState,
        features: TrainingFeatures,
        pairs: pd.DataFrame,
        rows: np.ndarray,
        items: np.ndarray,
    ) -> pd.DataFrame:
        """GBM input rows: ``rating_rows`` features plus the collaborative columns."""
        frame = rating_rows(pairs, features)
        if not self.config.time_features:
            frame = frame.drop(columns=[c for c in TIME_COLUMNS if c in frame.columns])
        ts = (
            pd.to_numeric(pairs["timestamp"], errors="coerce").to_numpy(np.float64)
            if "timestamp" in pairs
            else np.full(len(pairs), np.nan)
        )
        for name, values in collab.columns(state, rows, items, ts).items():
            frame[name] = np.asarray(values, np.float32)
        return frame

    def predict(self, pairs: pd.DataFrame, users: KnownUsers | None = None) -> np.ndarray:
        """Predicted ratings of ``pairs`` (userId, movieId[, timestamp]), in [0.5, 5].

        Users without training ratings get the baseline ``mu + b_i`` (``mu`` for an unknown
        movie too); known users with an unknown movie go through the model, which learned that
        case from movies absent from a fold. ``users`` (from :meth:`users`): take the training
        users from there instead of from the model; users not in it count as unknown.
        """
        collab = self.collaborative_
        if users is None and collab.state_ is None:
            raise ValueError("this copy of the model holds no users: pass users=model.users(ids)")
        state, index = (
            (collab.state_, collab.user_index) if users is None else (users.state, users.index)
        )
        out = np.empty(len(pairs), np.float64)
        block = self.config.predict_block
        for s in range(0, len(pairs), block):
            part = pairs.iloc[s : s + block]
            rows = index(part["userId"].to_numpy(np.int64))
            items = collab.item_index(part["movieId"].to_numpy(np.int64))
            out[s : s + block] = self._predict_rows(state, self.features_, part, rows, items)
        return out

    def users(self, user_ids) -> KnownUsers:
        """The training users among ``user_ids`` with their state, for ``predict(..., users=)``."""
        collab = self.collaborative_
        ids = np.unique(np.asarray(user_ids, np.int64))
        rows = collab.user_index(ids)
        known = rows >= 0
        return KnownUsers(ids[known], collab.state_.take(rows[known]))

    def without_users(self) -> "RatingModel":
        """A copy that shares every item-side part and holds no user's state (``predict`` then
        needs ``users=``): what a worker needs when each task brings its own users."""
        out = copy.copy(self)
        out.collaborative_ = copy.copy(self.collaborative_)
        out.collaborative_.state_ = None
        return out

    def _predict_rows(self, state, features, pairs, rows, items) -> np.ndarray:
        collab = self.collaborative_
        pred = collab.bias_.estimate(np.full(len(rows), -1), items)
        known = np.flatnonzero(rows >= 0)
        if len(known):
            x = self._design(
                collab,
                state,
                features,
                pairs.iloc[known].reset_index(drop=True),
                rows[known],
                items[known],
            )
            with self._threads(self.config.gbm_threads):
                pred[known] = self.gbm_.predict(x[self.columns_].to_numpy(np.float32))
        return np.clip(np.nan_to_num(pred, nan=collab.bias_.global_mean_), MIN_RATING, MAX_RATING)

    def fold_in(self, ratings: pd.DataFrame) -> FoldedUser:
        """Fold a new user in from their ``movieId, rating[, timestamp]`` rows.

        Nothing fitted changes: the user's MF factors and bias solve the same ridge system as
        in training against the stored item factors (``mf_.fold_in``), their baseline bias and
        statistics use the training definitions, and their ratings become their kNN/same-day
        history. Predict with ``predict_folded``.
        """
        collab = self.collaborative_
        items = collab.item_index(ratings["movieId"].to_numpy(np.int64))
        r = ratings["rating"].to_numpy(np.float64)
        vector, bias = collab.mf_.fold_in(ratings)
        base_bias = collab.bias_.user_bias_for(items, r)
        ts = (
            pd.to_numeric(ratings["timestamp"], errors="coerce").to_numpy(np.float64)
            if "timestamp" in ratings
            else np.full(len(ratings), np.nan)
        )
        known = items >= 0
        i = np.maximum(items, 0)
        base_res = r - (collab.bias_.global_mean_ + base_bias + collab.bias_.item_bias_[i])
        mf_res = r - (
            collab.mf_.global_mean_
            + bias
            + collab.mf_.item_bias_[i]
            + collab.mf_.item_factors_[i] @ vector
        )
        history = _UserHistory.build(
            1,
            np.zeros(known.sum(), np.int64),
            items[known],
            len(collab.item_ids_),
            base_res[known],
            ts[known],
            mf_res[known],
            collab.state_.history.t0,
        )
        state = _UserState(
            np.array([base_bias], np.float32),
            np.array([bias], np.float32),
            vector[None, :].astype(np.float32),
            history,
        )
        return FoldedUser(
            vector, bias, single_user_features(self.features_, ratings), state, len(ratings)
        )

    def predict_folded(
        self, user: FoldedUser, movie_ids, timestamp: float | None = None
    ) -> np.ndarray:
        """Predicted ratings of a folded-in user for ``movie_ids``, in [0.5, 5]."""
        movie_ids = np.asarray(movie_ids, np.int64)
        if user.n_ratings == 0:
            items = self.collaborative_.item_index(movie_ids)
            pred = self.collaborative_.bias_.estimate(np.full(len(items), -1), items)
            return np.clip(pred, MIN_RATING, MAX_RATING)
        pairs = pd.DataFrame(
            {
                "userId": np.full(len(movie_ids), -1, np.int64),
                "movieId": movie_ids,
                "timestamp": np.full(len(movie_ids), np.nan if timestamp is None else timestamp),
            }
        )
        rows = np.zeros(len(movie_ids), np.int64)
        items = self.collaborative_.item_index(movie_ids)
        return self._predict_rows(user.state, user.features, pairs, rows, items)


@dataclass
class _FoldJob:
    """The stacking folds' fits, shipped once to the Dask workers that run them: ``rows(f)``
    refits the feature statistics and every collaborative model without fold ``f`` and describes
    fold ``f``'s rows with them."""

    model: RatingModel
    parts: dict[int, "_Entries"]  # the training ratings by fold (-1: in no fold), each in CSR order
    user_ids: np.ndarray
    item_ids: np.ndarray
    features: TrainingFeatures
    t0: int

    def rows(self, f: int) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
        """(X, y, pairs with their fold) of fold ``f``."""
        cfg = self.model.config
        user_ids, item_ids = self.user_ids, self.item_ids
        held = self.parts[f]
        sub = _Entries.union([p for g, p in self.parts.items() if g != f])
        fold_features = refit_features(sub.frames(user_ids, item_ids), self.features)
        collab = _Collaborative(cfg).fit(
            sub.matrix(user_ids, item_ids), sub.ts, self.t0, fold_features.global_mean
        )
        del sub
        ts = held.ts.astype(np.float64)
        if cfg.time_features:  # each fold its own stream, so the folds may run in any order
            ts[np.random.default_rng([cfg.seed, f]).random(len(ts)) < cfg.timestamp_dropout] = (
                np.nan
            )
        else:
            ts[:] = np.nan
        rows, cols = held.rows.astype(np.int64), held.cols.astype(np.int64)
        pairs = pd.DataFrame({"userId": user_ids[rows], "movieId": item_ids[cols], "timestamp": ts})
        frame = self.model._design(collab, collab.state_, fold_features, pairs, rows, cols)
        log.debug("stacking fold %d: %d rows", f, len(rows))
        return frame, held.vals, pairs.assign(fold=np.int8(f))


def _cluster_of(train):
    """The distributed client to run the fold fits on: the active one when ``train`` is a Dask
    collection, else None (pandas input fits in this process)."""
    return None if isinstance(train, pd.DataFrame) else current_client()


@dataclass
class _Entries:
    """Training ratings as parallel arrays sorted by (row, column): the CSR order."""

    rows: np.ndarray
    cols: np.ndarray
    vals: np.ndarray
    ts: np.ndarray
    n_users: int
    n_items: int

    @property
    def size(self) -> int:
        return len(self.vals)

    @classmethod
    def collect(cls, train, user_ids: np.ndarray, item_ids: np.ndarray) -> "_Entries":
        """Read ``train`` partition by partition into arrays (no pandas frame of all ratings)."""
        if isinstance(train, pd.DataFrame):
            parts = [_arrays(train, user_ids, item_ids)]
        else:
            import dask

            cols = train[["userId", "movieId", "rating", "timestamp"]]
            parts = dask.compute(
                *[dask.delayed(_arrays)(p, user_ids, item_ids) for p in cols.to_delayed()]
            )
        rows = np.concatenate([p[0] for p in parts])
        cols_ = np.concatenate([p[1] for p in parts])
        vals = np.concatenate([p[2] for p in parts])
        ts = np.concatenate([p[3] for p in parts])
        order = np.lexsort((cols_, rows))
        return cls(rows[order], cols_[order], vals[order], ts[order], len(user_ids), len(item_ids))

    @classmethod
    def from_matrix(cls, matrix: RatingMatrix) -> "_Entries":
        """The entries of ``matrix`` (with timestamps), sharing its arrays (CSR order already)."""
        csr = matrix.csr
        return cls(
            _entry_rows(csr),
            csr.indices.astype(np.int32, copy=False),
            csr.data.astype(np.float32, copy=False),
            matrix.timestamps,
            csr.shape[0],
            csr.shape[1],
        )

    @classmethod
    def union(cls, parts: list["_Entries"]) -> "_Entries":
        """The entries of disjoint ``parts`` in CSR order: the one part itself (no copy), or
        merged and sorted."""
        if len(parts) == 1:
            return parts[0]
        rows, cols = (
            np.concatenate([p.rows for p in parts]),
            np.concatenate([p.cols for p in parts]),
        )
        order = np.lexsort((cols, rows))
        return cls(
            rows[order],
            cols[order],
            np.concatenate([p.vals for p in parts])[order],
            np.concatenate([p.ts for p in parts])[order],
            parts[0].n_users,
            parts[0].n_items,
        )

    def subset(self, mask: np.ndarray) -> "_Entries":
        return _Entries(
            self.rows[mask],
            self.cols[mask],
            self.vals[mask],
            self.ts[mask],
            self.n_users,
            self.n_items,
        )

    def matrix(self, user_ids: np.ndarray, item_ids: np.ndarray) -> RatingMatrix:
        indptr = np.concatenate([[0], np.cumsum(np.bincount(self.rows, minlength=self.n_users))])
        csr = sp.csr_matrix((self.vals, self.cols, indptr), shape=(self.n_users, self.n_items))
        return RatingMatrix(user_ids, item_ids, csr)

    def frames(self, user_ids: np.ndarray, item_ids: np.ndarray, chunk: int = 1_000_000):
        """The ratings as pandas chunks (for ``refit_features``)."""
        for s in range(0, self.size, chunk):
            e = s + chunk
            yield pd.DataFrame(
                {
                    "userId": user_ids[self.rows[s:e]],
                    "movieId": item_ids[self.cols[s:e]],
                    "rating": self.vals[s:e].astype(np.float64),
                    "timestamp": self.ts[s:e],
                }
            )


def _entry_rows(csr: sp.csr_matrix) -> np.ndarray:
    """The row (int32) of each stored entry of ``csr``."""
    return np.repeat(np.arange(csr.shape[0], dtype=np.int32), np.diff(csr.indptr))


def _residuals(
    csr: sp.csr_matrix, rows: np.ndarray, estimate, block: int = 4_000_000
) -> np.ndarray:
    """``rating - estimate(row, column)`` of every stored rating, as float32, a block of entries
    at a time (the estimates' float64 temporaries stay small)."""
    out = np.empty(csr.nnz, np.float32)
    for s in range(0, csr.nnz, block):
        e = min(s + block, csr.nnz)
        out[s:e] = csr.data[s:e] - estimate(rows[s:e], csr.indices[s:e])
    return out


def _arrays(part: pd.DataFrame, user_ids: np.ndarray, item_ids: np.ndarray):
    users = part["userId"].to_numpy(np.int64)
    items = part["movieId"].to_numpy(np.int64)
    rows = np.minimum(np.searchsorted(user_ids, users), max(len(user_ids) - 1, 0))
    cols = np.minimum(np.searchsorted(item_ids, items), max(len(item_ids) - 1, 0))
    if len(part) and not ((user_ids[rows] == users).all() and (item_ids[cols] == items).all()):
        raise ValueError(
            "a rating's user or movie is missing from the features: build them from the same ratings"
        )
    return (
        rows.astype(np.int32),
        cols.astype(np.int32),
        part["rating"].to_numpy(np.float32),
        part["timestamp"].to_numpy(np.int64),
    )


def _pair_hash(user_ids: np.ndarray, item_ids: np.ndarray, seed: int) -> np.ndarray:
    """SplitMix64 of (userId, movieId, seed): a fixed pseudo-random number per rating."""
    x = (user_ids.astype(np.uint64) << np.uint64(32)) ^ item_ids.astype(np.uint64)
    x ^= np.uint64((seed * _GOLDEN) & 0xFFFFFFFFFFFFFFFF)
    x = x + np.uint64(_GOLDEN)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))

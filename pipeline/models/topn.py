"""Top-N recommendations: two EASE item models blended, then a calibrated head/tail list.

Scoring model
    EASE (Steck 2019, "Embarrassingly Shallow Autoencoders"): an item x item weight
    matrix ``B`` with a zero diagonal, fitted in closed form,
    ``P = (X'WX + l2 I)^-1``, ``B = I - P diag(1/diag P)``; a user's affinity for item
    ``j`` is ``sum_i x_ui B_ij`` over the items the user rated. Two such models are
    blended:

    * the *rating* model, input ``x_ui = rating / rating_scale`` (a 5-star rating
      counts more than a 2-star one), with heavy raters down-weighted in the Gram
      matrix (``W = diag(n_u ** (-2 * user_weight_power))``) so that a few users with
      thousands of ratings do not dominate the co-occurrences;
    * the *positive* model, input 1 where ``rating >= positive_threshold``
      (``positive_l2``, no user weighting), with weight ``positive_weight``.

    The rating model also reads what the movies are (Jeunen et al. 2020, "Closed-form models
    for collaborative filtering with side-information"): each content term (a genre, a TMDB
    keyword, collection or production company) is one more input row, ``content_weight`` for
    each movie that has it, so the Gram matrix gains ``content_weight^2 F'F`` (``F`` terms x
    items). Movies that share terms then count as seen together, which most helps those with few
    ratings and so spreads the lists.

    Each model's scores are divided by the mean of the user's ten largest scores
    before blending, so both count on the same scale for every user.

    When the user's list is scored (not when ``B`` is fitted), each of their ratings enters
    both inputs with a weight that favours the newest: ``1 + recency_boost *
    exp(-(1 - p) / recency_scale)``, ``p`` = the rating's recency among the user's (1 for the
    newest). What a user rated last says most about what they will rate next.

Taste
    Fitted with the rating model's matrix factorisation (``mu + b_u + b_i + p_u . q_i``, on the
    same ratings), each blended affinity is multiplied by ``exp(taste_weight * p_u . q_i)``
    (divided, where negative) before the list is ranked: the EASE models estimate which movies
    the user will rate, the factors how they will like them. A live user's ``p_u`` is their
    fold-in. The tail's calibration quantiles are those of the affinity without it.

Item set
    Only items with at least ``min_item_ratings`` training ratings enter the model,
    and at most the ``max_items`` most-rated of them: the inversion is cubic in the
    number of items, and items with a handful of ratings are neither reliably scored
    nor often relevant. Other items are never recommended.

List (re-ranking)
    Ranking by raw affinity piles every list onto the same blockbusters. The first
    ``head_size`` positions take the best ``affinity / count ** head_popularity_power``
    (``count`` = the item's number of training ratings). The remaining positions take
    the best ``affinity / q_j ** tail_calibration_power``, where ``q_j`` is the
    ``calibration_quantile`` of item ``j``'s affinity among training users who have not
    rated it (estimated at fit time on up to ``calibration_users`` users): an item
    comes up in the tail when this user's affinity is high *for that item*, which
    spreads the lists over much more of the catalogue while keeping them personal.

"Because" items
    For each recommended item ``j`` the seed is the user's rated item ``i`` (rating
    >= ``because_min_rating``) whose contribution to the blended affinity is the
    largest positive one; -1 when no such item contributes positively.

Memory and time
    The Gram matrix is accumulated in row blocks of sparse products and inverted in
    place by LAPACK (Cholesky), so a fit needs about one ``n_items^2`` matrix in
    ``solve_dtype`` plus the ``B`` matrices in float32 (two with the positive model).
    Users are scored in blocks of ``user_block`` rows. The fitted object is read-only
    while recommending and numpy/scipy release the GIL, so callers may score
    disjoint row blocks from several threads.

Choices were measured on validation splits carved from the training part of the
peer benchmark's ml-latest-small user-holdout split (never its test part); the README's
"Measured results" gives what the defaults reach on its test part, against EASE alone.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

from contract.products import dense_product
from contract.scoring import (
    ListRules,
    TopNScorer,
    model_rows,
    positive_input,
    rating_input,
    recency,
)
from pipeline.features.matrix import RatingMatrix
from pipeline.progress import progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopNConfig:
    """Settings of :class:`TopNRecommender` (see the module docstring)."""

    l2: float = 20.0
    """Ridge penalty of the rating model; larger = smoother, more popular lists."""
    rating_scale: float = 5.0
    """Rating model input is ``rating / rating_scale``."""
    user_weight_power: float = 0.25
    """Rating model: each user's row is scaled by ``n_u ** -user_weight_power`` in the Gram matrix."""
    positive_weight: float = 0.2
    """Weight of the positive (binary ``rating >= positive_threshold``) model; 0 = not fitted."""
    positive_threshold: float = 4.0
    """Ratings at least this high are positives for the positive model."""
    positive_l2: float = 250.0
    """Ridge penalty of the positive model."""
    content_weight: float = 0.4
    """Input value of a content term's row in the rating model (see the module docstring); 0,
    or a fit without terms, leaves the content out."""
    min_item_ratings: int = 5
    """Items with fewer training ratings are left out (never recommended)."""
    max_items: int = 20_000
    """At most this many items (the most rated) enter the model: time is cubic, memory square in it."""
    head_size: int = 6
    """Leading list positions ranked by popularity-discounted affinity."""
    head_popularity_power: float = 0.2
    """Head positions rank by ``affinity / count ** head_popularity_power``."""
    tail_calibration_power: float = 0.8
    """Tail positions rank by ``affinity / item_quantile ** tail_calibration_power``."""
    calibration_quantile: float = 0.99
    """Quantile of an item's affinity among non-raters that calibrates the tail."""
    calibration_users: int = 4096
    """Training users (a seeded random sample when there are more) used for the calibration."""
    because_min_rating: float = 3.5
    """Only items the user rated at least this high can be the "because" seed."""
    recency_boost: float = 1.0
    """A user's newest ratings count up to ``1 + recency_boost`` times as much in both models'
    inputs when their list is scored: weight ``1 + recency_boost * exp(-(1 - p) /
    recency_scale)``, ``p`` the rating's recency among the user's (1 = newest; ``(n - k) / n``
    for the ``k``-th newest of ``n``). 0 weights every rating alike; so does a matrix without
    timestamps. The weights ``B`` are fitted without it (``benchmarks.recency``)."""
    recency_scale: float = 0.05
    """See ``recency_boost``: the share of the history, newest first, the boost decays over."""
    taste_weight: float = 0.25
    """When the model is fitted with the rating model's factorisation (``fit(..., taste=)``), a
    user's affinity for an item is multiplied by ``exp(taste_weight * p_u . q_i)`` (divided, where
    negative) before the list is ranked: the EASE models say what the user will rate, the
    factors how they will like it (``benchmarks.taste_factor``). 0 leaves it out; the tail's
    calibration reads the affinity without it."""
    score_neighbors: int | None = None
    """Keep only this many largest-magnitude weights of each item's ``B`` row (sparse, as the
    live model does); None keeps every weight. Scoring then costs ``nnz x score_neighbors``
    instead of ``nnz x n_items``, and the weights ``n_items x score_neighbors`` instead of
    ``n_items^2`` (the large-data profile, ``PipelineConfig.for_size``)."""
    positive_neighbors: int | None = None
    """As ``score_neighbors``, for the positive model (weighted ``positive_weight`` in the
    blend, it needs fewer); None: ``score_neighbors``."""
    user_block: int = 1024
    """Users scored per block (two dense ``user_block x n_items`` float32 arrays at a time; the
    lists do not depend on it). The blocks' tables were the largest transient of a per-user task
    at 2,048 (README, "Time and memory by size")."""
    gram_block: int = 512
    """Gram matrix rows per sparse product (each written straight into the Gram matrix)."""
    gram_threads: int | None = None
    """Threads computing the Gram matrix's row blocks (``contract.products.dense_product``
    releases the GIL); None = one per core."""
    solve_dtype: str = "float32"
    """Precision of the Cholesky inverse ("float64" or "float32"); ``B`` is kept in float32."""
    seed: int = 0
    """Seed of the calibration sample."""

    @property
    def positive_keep(self) -> int | None:
        """Weights kept per item of the positive model: ``positive_neighbors``, else
        ``score_neighbors`` (None: all)."""
        return self.positive_neighbors or self.score_neighbors


class TopNRecommender:
    """Blended EASE with a calibrated head/tail list and "because" seeds.

    Fitted attributes: ``items_`` (matrix column of each model item, ascending),
    ``col_to_model_`` (model position of each matrix column, -1 if absent),
    ``counts_`` (training ratings per matrix column), ``user_ratings_`` (training
    users x model items, raw ratings, CSR), ``user_history_`` (the training ``RatingMatrix``, a
    reference, for the recency weights; None without timestamps or weights), ``weights_`` (list of ``B`` matrices,
    float32), ``blend_`` (their weights), ``tail_quantile_`` (each item's calibration
    quantile ``q_j``), ``head_discount_`` and ``tail_discount_`` (per model item),
    ``fallback_`` (affinity of a user with no rated model item: popularity scaled to [0, 1]).
    """

    def __init__(self, config: TopNConfig = TopNConfig()):
        self.config = config

    # ------------------------------------------------------------------ fit
    def fit(
        self, matrix: RatingMatrix, content: sp.spmatrix | None = None, taste=None
    ) -> "TopNRecommender":
        """Fit on the training ratings (explicit ratings in ``matrix.csr``) and, when given, the
        movies' content terms: ``content`` is matrix columns x terms, 1 where the movie has the
        term (``pipeline.features.tables.term_matrix``), and the rating model's factorisation
        fitted on the same matrix (``taste``: a ``pipeline.models.mf.BiasedMF``; see
        ``TopNConfig.taste_weight``)."""
        cfg, rules = self.config, ListRules.from_config(self.config)
        t0 = time.perf_counter()
        csr = matrix.csr.tocsr()
        n_cols = csr.shape[1]
        counts = np.bincount(csr.indices, minlength=n_cols).astype(np.int64)
        eligible = np.flatnonzero(counts >= max(cfg.min_item_ratings, 1))
        if len(eligible) > cfg.max_items:
            order = np.lexsort((eligible, -counts[eligible]))  # most rated first, ties by column
            eligible = np.sort(eligible[order[: cfg.max_items]])
        if len(eligible) == 0:
            raise ValueError("no item has enough ratings for the top-N model")
        self.items_ = eligible.astype(np.int64)
        self.col_to_model_ = np.full(n_cols, -1, dtype=np.int64)
        self.col_to_model_[self.items_] = np.arange(len(self.items_))
        self.counts_ = counts
        self.user_ratings_ = model_rows(csr, self.col_to_model_, len(self.items_))
        self.taste_users_ = self.taste_items_ = None
        if taste is not None and cfg.taste_weight > 0:
            if (
                taste.user_factors_.shape[0] != csr.shape[0]
                or taste.item_factors_.shape[0] != n_cols
            ):
                raise ValueError("taste: the factorisation is not of this rating matrix")
            self.taste_users_ = np.asarray(taste.user_factors_, np.float32)
            self.taste_items_ = np.ascontiguousarray(taste.item_factors_[self.items_], np.float32)
        # the training matrix itself (a reference, not a copy), for the recency of the rows
        # recommend() and the calibration score
        self.user_history_ = None
        if matrix.timestamps is not None and cfg.recency_boost > 0:
            self.user_history_ = matrix

        # each input is made by its fit, which scales it in place and drops it once the Gram
        # matrix is summed: one copy of the ratings at a time, none beside the inverse
        side = None
        if content is not None and cfg.content_weight > 0:
            if content.shape[0] != n_cols:
                raise ValueError(f"content has {content.shape[0]} rows for {n_cols} movies")
            side = sp.csr_matrix(content[self.items_].T * cfg.content_weight)
        self.weights_ = [
            self._weights(
                lambda: rating_input(self.user_ratings_, rules),
                cfg.l2,
                cfg.user_weight_power,
                cfg.score_neighbors,
                side,
            )
        ]
        self.blend_ = [1.0]
        if cfg.positive_weight > 0:
            self.weights_.append(
                self._weights(
                    lambda: positive_input(self.user_ratings_, rules),
                    cfg.positive_l2,
                    0.0,
                    cfg.positive_keep,
                )
            )
            self.blend_.append(float(cfg.positive_weight))

        c = counts[self.items_].astype(np.float64)
        self.fallback_ = (c / c.max()).astype(np.float32)
        self.head_discount_ = self.tail_discount_ = np.ones(len(self.items_), np.float32)
        self.tail_quantile_ = self._calibrate()  # affinities: they read neither discount
        self._discounts()
        log.info("top-N: fitted %d items in %.1f s", len(self.items_), time.perf_counter() - t0)
        return self

    def _weights(
        self,
        make_input: Callable[[], sp.csr_matrix],
        l2: float,
        user_weight_power: float,
        keep: int | None,
        side: sp.csr_matrix | None = None,
    ):
        """One EASE model's ``B`` for the input rows ``make_input()`` (and the ``side`` rows):
        dense, or cut to ``keep`` weights per item."""
        b = _ease(make_input(), l2, user_weight_power, self.config, side)
        return b if keep is None else sparsify_weights(b, keep)

    def _discounts(self) -> None:
        cfg = self.config
        c = self.counts_[self.items_].astype(np.float64)
        self.head_discount_ = (c**-cfg.head_popularity_power).astype(np.float32)
        self.tail_discount_ = (self.tail_quantile_**-cfg.tail_calibration_power).astype(np.float32)

    def with_list(
        self, head_size: int, head_popularity_power: float, tail_calibration_power: float
    ) -> "TopNRecommender":
        """A copy that shares the fitted weights and ranks its lists with another head and
        tail (the re-rank's operating point: ``benchmarks.operating_point``)."""
        out = copy.copy(self)
        out.config = replace(
            self.config,
            head_size=head_size,
            head_popularity_power=head_popularity_power,
            tail_calibration_power=tail_calibration_power,
        )
        out._discounts()
        return out

    def with_weights(self, weights: list) -> "TopNRecommender":
        """A copy that scores with other ``B`` matrices (e.g. cut ones) and its tail calibrated
        on them."""
        out = copy.copy(self)
        out.weights_ = weights
        out.tail_quantile_ = out._calibrate()
        out._discounts()
        return out

    def cut(self, keep: int) -> "TopNRecommender":
        """A copy that keeps each movie's ``keep`` largest-magnitude weights of every ``B``
        (:func:`sparsify_weights`) and calibrates its tail on them (:meth:`with_weights`): what
        the live model scores with. Needs the training users (not :meth:`without_users`)."""
        return self.with_weights([sparsify_weights(b, keep) for b in self.weights_])

    def _calibrate(self) -> np.ndarray:
        """Per-item calibration quantile ``q_j`` (float64) from a user sample: the tail
        discount is ``q_j ** -tail_calibration_power``."""
        cfg = self.config
        if self.user_ratings_ is None:
            raise ValueError("calibrating the tail needs the training users' ratings")
        n_users = self.user_ratings_.shape[0]
        rows = np.arange(n_users)
        if n_users > cfg.calibration_users:
            rows = np.sort(
                np.random.default_rng(cfg.seed).choice(
                    n_users, cfg.calibration_users, replace=False
                )
            )
        rows = rows[np.diff(self.user_ratings_.indptr)[rows] > 0]
        if len(rows) == 0:
            return np.ones(len(self.items_), dtype=np.float32)
        parts, scorer = [], self.scorer
        for start in range(0, len(rows), cfg.user_block):
            block = rows[start : start + cfg.user_block]
            xb = self.user_ratings_[block]
            s, _ = scorer.affinity(xb, self._recency_of(block, xb))
            s[np.repeat(np.arange(xb.shape[0]), np.diff(xb.indptr)), xb.indices] = np.nan
            parts.append(s)
        sample = np.concatenate(parts)
        q = np.empty(sample.shape[1], dtype=np.float64)
        step = 4096
        for start in range(0, sample.shape[1], step):
            blk = sample[:, start : start + step]
            n_valid = (~np.isnan(blk)).sum(axis=0)
            srt = np.sort(np.where(np.isnan(blk), -np.inf, blk), axis=0)  # raters (-inf) first
            at = (
                blk.shape[0]
                - n_valid
                + np.floor(cfg.calibration_quantile * np.maximum(n_valid - 1, 0)).astype(int)
            )
            q[start : start + step] = np.where(
                n_valid > 0, srt[np.minimum(at, blk.shape[0] - 1), np.arange(blk.shape[1])], np.nan
            )
        pos = q[np.isfinite(q) & (q > 0)]
        floor = float(np.median(pos)) * 1e-3 if len(pos) else 1.0
        # items no one likes: no boost beyond the floor
        return np.where(np.isfinite(q) & (q > floor), q, floor)

    # ------------------------------------------------------------ recommend
    def recommend(
        self, user_rows: np.ndarray, n: int = 50, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-``n`` lists for training users (matrix row indices).

        Returns ``(items, scores, because)``, each of shape ``(len(user_rows), n)``:
        matrix column indices in list order (-1 pads a list when fewer than ``n``
        items are available), the blended affinity of each item (float32, about 1 for
        the user's strongest items; the order comes from the head/tail re-rank, so
        scores need not decrease; -inf for padding) and the "because" seed column
        (-1 when none).
        """
        rows = np.asarray(user_rows, dtype=np.int64).reshape(-1)

        def rows_of(sel):
            x = self.user_ratings_[rows[sel]]
            taste = None if self.taste_users_ is None else self.taste_users_[rows[sel]]
            return x, self._recency_of(rows[sel], x), taste

        return self._block_lists(rows_of, len(rows), n, exclude_seen)

    def _recency_of(self, rows: np.ndarray, x: sp.csr_matrix) -> sp.csr_matrix | None:
        """The recency of ``x = user_ratings_[rows]``'s ratings (its pattern), or None: computed
        from the training users' whole rows, as :meth:`recommend_matrix` does for a block."""
        if self.user_history_ is None:
            return None
        m = self.user_history_
        # the pattern of x by construction (contract.scoring.inputs checks it)
        return self._model_recency(m.csr[rows], m.timestamps_of(rows))

    def _model_recency(self, ratings: sp.csr_matrix, timestamps: np.ndarray) -> sp.csr_matrix:
        """The recency of rows of raw ratings over the matrix columns, over the model items (the
        pattern ``model_rows`` gives the ratings)."""
        return model_rows(recency(ratings, timestamps), self.col_to_model_, len(self.items_))

    def recommend_matrix(
        self,
        ratings: sp.csr_matrix,
        n: int = 50,
        exclude_seen: bool = True,
        because: bool = True,
        timestamps: np.ndarray | None = None,
        taste: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`recommend` for users given by their rows of raw ratings over the matrix
        columns (a block of the training matrix: ``RatingMatrix.rows(lo, hi).csr``, with its
        ``timestamps`` for the recency weights, or None, and the users' factors in the rating
        model, ``taste``, or None), so a copy without ``user_ratings_`` (:meth:`without_users`)
        can serve them. ``because=False`` leaves the "because" seeds out (all -1): an
        evaluation needs only the lists."""
        ratings = ratings.tocsr()
        rows = model_rows(ratings, self.col_to_model_, len(self.items_))
        p = None
        if timestamps is not None and self.config.recency_boost > 0:
            p = self._model_recency(ratings, timestamps)

        def rows_of(sel):
            return rows[sel], None if p is None else p[sel], None if taste is None else taste[sel]

        return self._block_lists(rows_of, rows.shape[0], n, exclude_seen, because)

    def without_users(self) -> "TopNRecommender":
        """A copy that shares the item model and holds no user's ratings (``user_ratings_`` is
        None; use :meth:`recommend_matrix` or :meth:`recommend_for_ratings`)."""
        out = copy.copy(self)
        out.user_ratings_ = out.user_history_ = out.taste_users_ = None
        return out

    def _block_lists(self, rows_of, n_rows: int, n: int, exclude_seen: bool, because: bool = True):
        out_items = np.full((n_rows, n), -1, dtype=np.int64)
        out_scores = np.full((n_rows, n), -np.inf, dtype=np.float32)
        out_because = np.full((n_rows, n), -1, dtype=np.int64)
        scorer = self.scorer
        for start in range(0, n_rows, self.config.user_block):
            sel = slice(start, start + self.config.user_block)
            x, p, taste = rows_of(sel)
            out_items[sel], out_scores[sel], out_because[sel] = scorer.lists(
                x, n, exclude_seen, None, because=because, recency=p, taste=taste
            )
        return out_items, out_scores, out_because

    def recommend_for_ratings(
        self,
        item_cols: np.ndarray,
        ratings: np.ndarray,
        n: int = 50,
        exclude: np.ndarray | None = None,
        adjust=None,
        recency: np.ndarray | None = None,
        taste: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-``n`` list for one user known only by ratings on matrix columns (a new
        user, or live feedback folded in at request time; use
        ``matrix.item_index(movie_ids)`` to get columns). Unknown columns (-1) are
        ignored. The rated columns are excluded, and so are those in ``exclude``.
        ``adjust(affinity)`` (optional) may change the user's blended affinity over the
        model items (``items_`` order, about 1 for the user's strongest items) in place
        before the list is ranked: live feedback boosts and genre preferences. ``recency``:
        each rating's (``contract.scoring.recency``), or None to weight them alike. ``taste``:
        the user's factors in the rating model (e.g. ``BiasedMF.fold_in``), or None.
        Returns the triple of :meth:`recommend`, each of shape ``(1, n)``.
        """
        return self.scorer.for_ratings(
            item_cols, ratings, n, exclude, adjust, recency=recency, taste=taste
        )

    @property
    def scorer(self) -> TopNScorer:
        """The fitted arrays as the scorer that ranks every list, batch and live (shared, not
        copied): ``contract.scoring.TopNScorer``."""
        return TopNScorer(
            ListRules.from_config(self.config),
            self.items_,
            self.col_to_model_,
            self.weights_,
            self.blend_,
            self.head_discount_,
            self.tail_discount_,
            self.fallback_,
            self.taste_items_,
        )


def _ease(
    x: sp.csr_matrix,
    l2: float,
    user_weight_power: float,
    cfg: TopNConfig,
    side: sp.csr_matrix | None = None,
) -> np.ndarray:
    """EASE weights ``B`` (float32, zero diagonal) for input rows ``x`` (users x items, CSR)
    and ``side`` rows (more rows over the same items, not weighted by their count: the content
    terms); ``x`` is weighted in place when it is in ``solve_dtype`` already and dropped once
    the Gram matrix is summed (pass a matrix made for the call, as its only reference), so the
    fit holds one copy of it besides its transpose, and none beside the inverse."""
    k = x.shape[1]
    dtype = np.dtype(cfg.solve_dtype)
    t0 = time.perf_counter()
    n_u = np.diff(x.indptr)
    row_w = np.where(n_u > 0, np.maximum(n_u, 1.0) ** -user_weight_power, 0.0).astype(dtype)
    xw = x.astype(dtype, copy=False)
    del x  # xw may be x itself: the only reference left, so the stacking below drops it
    xw.data *= np.repeat(row_w, n_u)
    xw.eliminate_zeros()
    if side is not None:
        xw = sp.vstack([xw, side.astype(dtype)], format="csr")
    xt = xw.T.tocsr()  # items x users
    gram = np.empty((k, k), dtype=dtype)

    def fill(start: int) -> int:
        stop = min(start + cfg.gram_block, k)
        dense_product(xt[start:stop], xw, out=gram[start:stop])  # noqa: F821 (deleted after the pool)
        return start

    with (
        ThreadPoolExecutor(cfg.gram_threads or os.cpu_count() or 1) as pool,
        progress(f"top-N: EASE Gram matrix (l2={l2:g})", k, unit="items") as bar,
    ):
        for start in pool.map(fill, range(0, k, cfg.gram_block)):
            bar.update(min(start + cfg.gram_block, k) - start)
    del xw, xt
    gram[np.diag_indices(k)] += l2
    t1 = time.perf_counter()
    potrf, potri = (
        (lapack.dpotrf, lapack.dpotri) if dtype == np.float64 else (lapack.spotrf, lapack.spotri)
    )
    # gram is symmetric and C-ordered: its transpose is the same matrix in Fortran order,
    # which LAPACK factorises and inverts in place (no second k x k copy)
    chol, info = potrf(gram.T, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"Cholesky factorisation failed (info={info})")
    del gram
    inv, info = potri(chol, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"inverse from Cholesky failed (info={info})")
    del chol
    _symmetrize_upper(inv)  # potri fills the upper triangle only
    diag = np.diag(inv).copy()
    # B = -P diag(1/diag P), written over P when it is float32 already: one k x k matrix at most
    b = inv if inv.dtype == np.float32 else np.empty((k, k), dtype=np.float32)
    step = 2048
    for start in range(0, k, step):
        np.divide(
            inv[start : start + step], -diag[None, :], out=b[start : start + step], casting="unsafe"
        )
    del inv
    b[np.diag_indices(k)] = 0.0
    log.info(
        "top-N: EASE %d items (l2=%g): Gram %.1f s, inverse %.1f s",
        k,
        l2,
        t1 - t0,
        time.perf_counter() - t1,
    )
    return b


def sparsify_weights(b, keep: int) -> sp.csr_matrix:
    """``B`` (dense, or sparse) with only the ``keep`` largest-magnitude entries of each row
    (input item -> candidates), as float32 CSR: the form the API loads to re-score users at
    request time, and the top-N model's own with ``score_neighbors``). A sparse ``B`` is cut
    block by dense block of rows, as a dense one."""
    if sp.issparse(b):
        b = b.tocsr()
    k = min(keep, b.shape[1])
    indptr = np.arange(b.shape[0] + 1, dtype=np.int64) * k
    cols = np.empty(b.shape[0] * k, dtype=np.int32)
    vals = np.empty(b.shape[0] * k, dtype=np.float32)
    step = 256  # rows per block: its temporaries (|B|, the argpartition) stay small
    for start in range(0, b.shape[0], step):
        blk = b[start : start + step]
        blk = blk.toarray() if sp.issparse(blk) else blk
        top = (
            np.argpartition(-np.abs(blk), k - 1, axis=1)[:, :k]
            if k < b.shape[1]
            else np.broadcast_to(np.arange(b.shape[1]), blk.shape)
        )
        at = slice(start * k, (start + blk.shape[0]) * k)
        cols[at] = top.ravel()
        vals[at] = np.take_along_axis(blk, top, axis=1).ravel()
    out = sp.csr_matrix((vals, cols, indptr), shape=b.shape, dtype=np.float32)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def _symmetrize_upper(a: np.ndarray, step: int = 2048) -> None:
    """Copy the upper triangle of square ``a`` into its lower triangle, in place, in blocks."""
    k = a.shape[0]
    for i in range(0, k, step):
        for j in range(0, i + 1, step):
            blk = a[j : j + step, i : i + step]  # upper block (j <= i)
            if i == j:
                iu = np.triu_indices(blk.shape[0], 1)
                a[i : i + step, j : j + step][iu[1], iu[0]] = blk[iu]
            else:
                a[i : i + step, j : j + step] = blk.T

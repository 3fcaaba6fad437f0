"""The request-time maths of the two published models, over their arrays only.

* :class:`TopNScorer`: a user's blended EASE affinity, the head/tail re-rank and the "because"
  seeds (the top-N model of ``pipeline.models.topn``; its module docstring gives the maths). The
  batch lists (``TopNRecommender.recommend*``) and the live path (``contract.live_model``) both
  rank through it, so their lists agree by construction.
* :class:`ItemFactors`: the rating model's item side (``pipeline.models.mf.BiasedMF``) and the exact
  fold-in of a user who was not in training.

Plain numpy and scipy.sparse: the API imports this without scikit-learn, Dask or the training
code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import scipy.sparse as sp

from contract.arrays import lookup, row_blocks
from contract.products import SCIPY_ROWS, dense_product, dense_rows
from contract.topk import top_positions

_NORM_TOP = 10  # per-user score scale: mean of this many largest scores


@dataclass(frozen=True)
class ListRules:
    """The settings of ``pipeline.models.topn.TopNConfig`` that scoring reads (same names)."""

    rating_scale: float
    positive_threshold: float
    head_size: int
    because_min_rating: float
    recency_boost: float = 0.0  # (0 in versions published before it)
    recency_scale: float = 0.05
    taste_weight: float = 0.0  # (0 in versions published before it)

    @classmethod
    def from_config(cls, config: Any) -> "ListRules":
        """From a ``TopNConfig``, or the dict of one (as the live model stores it); a setting
        the dict lacks keeps its default."""
        if isinstance(config, Mapping):
            given = {f.name: config[f.name] for f in fields(cls) if f.name in config}
        else:
            given = {f.name: getattr(config, f.name) for f in fields(cls)}
        return cls(**given)

    def recency_weights(self, recency: np.ndarray) -> np.ndarray | None:
        """Each rating's weight in the scoring input from its recency (1 = the user's newest,
        ``recency``: see :func:`recency`): ``1 + recency_boost * exp(-(1 - p) / recency_scale)``;
        None when the rules weight every rating alike."""
        if self.recency_boost <= 0:
            return None
        p = np.minimum(np.asarray(recency, np.float32), 1.0)
        return (1.0 + self.recency_boost * np.exp((p - 1.0) / self.recency_scale)).astype(
            np.float32
        )


@dataclass
class TopNScorer:
    """A fitted top-N model's arrays (see ``TopNRecommender``'s fitted attributes), and the
    maths that turn a user's ratings into a ranked list."""

    rules: ListRules
    items: np.ndarray  # int64: matrix column of each model item, ascending
    col_to_model: np.ndarray  # int64: model position of each matrix column, -1 if absent
    weights: Sequence[Any]  # the ``B`` matrices (dense or sparse float32), model items square
    blend: Sequence[float]
    head_discount: np.ndarray  # float32 per model item
    tail_discount: np.ndarray  # float32 per model item
    fallback: np.ndarray  # float32 per model item: a user with no rated model item
    # float32 model items x factors: the rating model's item factors ``q_i`` that the user's
    # taste ``p_u`` multiplies (``rules.taste_weight``), or None
    taste_items: np.ndarray | None = None

    def for_ratings(
        self,
        item_cols: np.ndarray,
        ratings: np.ndarray,
        n: int = 50,
        exclude: np.ndarray | None = None,
        adjust: Callable[[np.ndarray], None] | None = None,
        because: bool = True,
        recency: np.ndarray | None = None,
        taste: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-``n`` list for one user known only by ratings on matrix columns; see
        ``TopNRecommender.recommend_for_ratings``. ``because=False``: no "because" seeds (all
        -1), which are most of the time of a one-user list. ``recency``: each rating's (see
        :func:`recency`), or None to weight them alike. ``taste``: the user's factors in the
        rating model (``p_u``; see :meth:`lists`), or None."""
        return self.for_rows(
            [(item_cols, ratings)], n, [exclude], [adjust], because, [recency], [taste]
        )

    def for_rows(
        self,
        rows: Sequence[tuple[np.ndarray, np.ndarray]],
        n: int = 50,
        excludes: Sequence[np.ndarray | None] | None = None,
        adjusts: Sequence[Callable[[np.ndarray], None] | None] | None = None,
        because: bool = True,
        recencies: Sequence[np.ndarray | None] | None = None,
        tastes: Sequence[np.ndarray | None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`for_ratings` of several users at once: row ``r`` of each result is the list of
        ``rows[r]`` (``(item_cols, ratings)``, each rating's recency ``recencies[r]`` or None,
        the user's taste ``tastes[r]`` or None)
        with ``excludes[r]`` left out and ``adjusts[r]`` applied to its affinity (a 1-D row),
        the same numbers as one user at a time. A few users cost little more than one: most of
        a one-user list's time is per call, not per row."""
        m = len(self.items)
        at, where, values, extras, recent = [], [], [], [], []
        recencies = recencies or [None] * len(rows)
        for r, (item_cols, ratings) in enumerate(rows):
            cols = np.asarray(item_cols, dtype=np.int64).reshape(-1)
            vals = np.asarray(ratings, dtype=np.float32).reshape(-1)
            if cols.shape != vals.shape:
                raise ValueError("item_cols and ratings must have the same length")
            ok = (cols >= 0) & (cols < len(self.col_to_model))
            pos = self.col_to_model[cols[ok]]
            known = pos >= 0
            at.append(np.full(int(known.sum()), r, dtype=np.int64))
            where.append(pos[known])
            values.append(vals[ok][known])
            p = recencies[r]
            p = np.ones(len(cols), np.float32) if p is None else np.asarray(p, np.float32)
            if p.shape != cols.shape:
                raise ValueError("a recency must have one value per rating")
            recent.append(p[ok][known])
            exclude = (excludes or [None] * len(rows))[r]
            if exclude is not None:
                ex = np.asarray(exclude, dtype=np.int64).reshape(-1)
                ex = self.col_to_model[ex[(ex >= 0) & (ex < len(self.col_to_model))]]
                exclude = ex[ex >= 0]
            extras.append(exclude)
        x = sp.csr_matrix(
            (np.concatenate(values), (np.concatenate(at), np.concatenate(where))),
            shape=(len(rows), m),
            dtype=np.float32,
        )
        x.sum_duplicates()  # a column given twice counts once, with the later rating
        x.sort_indices()
        recency = None
        if any(p is not None for p in recencies):  # the same pattern as x, built the same way
            recency = sp.csr_matrix(
                (np.concatenate(recent), (np.concatenate(at), np.concatenate(where))),
                shape=(len(rows), m),
                dtype=np.float32,
            )
            recency.sum_duplicates()
            recency.sort_indices()
        adjusts = adjusts or [None] * len(rows)

        def adjust(table: np.ndarray) -> None:
            table = table.reshape(len(rows), m)  # a view: ``lists`` gives one row as 1-D
            for r, (fn, extra) in enumerate(zip(adjusts, extras)):
                if fn is not None:
                    fn(table[r])
                if extra is not None and len(extra):
                    table[r, extra] = -np.inf

        taste = None
        if self.taste_items is not None and any(t is not None for t in tastes or ()):
            taste = np.zeros((len(rows), self.taste_items.shape[1]), np.float32)
            for r, t in enumerate(tastes):
                if t is not None:
                    taste[r] = t
        return self.lists(x, n, True, None, adjust, because, recency, taste)

    def affinity(self, ratings: sp.csr_matrix, recency: sp.csr_matrix | None = None):
        """Blended, per-user normalised affinity for rows of raw ratings (users x model
        items, float32), and per model ``(input rows, B, weight / user scale)``. ``recency``:
        each rating's (the pattern of ``ratings``; :func:`recency`), or None."""
        total, parts = None, []
        for x, b, w in zip(inputs(ratings, self.rules, recency), self.weights, self.blend):
            raw = dense_product(x, b).astype(np.float32, copy=False)
            scale = np.take_along_axis(raw, top_positions(raw, _NORM_TOP), axis=1).mean(axis=1)
            # a model with no positive evidence for a user (e.g. no rating >= the positive
            # threshold) does not take part in that user's blend
            factor = np.where(scale > 1e-9, w / np.maximum(scale, 1e-9), 0.0).astype(np.float32)
            raw *= factor[:, None]
            if total is None:
                total = raw
            else:  # in place: a block's tables are users x items floats each
                total += raw
            del raw
            parts.append((x, b, factor))
        empty = np.diff(ratings.indptr) == 0
        if empty.any():
            total[empty] = self.fallback
        return total, parts

    def lists(
        self,
        ratings: sp.csr_matrix,
        n: int,
        exclude_seen: bool,
        extra_exclude,
        adjust=None,
        because: bool = True,
        recency: sp.csr_matrix | None = None,
        taste: np.ndarray | None = None,
    ):
        """``(items, scores, because)`` of rows of raw ratings over the model items (and each
        rating's recency, or None); see ``TopNRecommender.recommend``. ``taste``: the users'
        factors in the rating model (users x factors), or None: each positive affinity is
        multiplied, each negative one divided, by ``exp(taste_weight * p_u . q_i)``."""
        m = len(self.items)
        # modified in place: excluded items become -inf
        ranked, parts = self.affinity(ratings, recency)
        if taste is not None and self.taste_items is not None and self.rules.taste_weight > 0:
            _times_taste(ranked, taste, self.taste_items, self.rules.taste_weight)
        if adjust is not None:
            adjust(ranked[0] if ranked.shape[0] == 1 else ranked)
        if exclude_seen:
            ranked[
                np.repeat(np.arange(ratings.shape[0]), np.diff(ratings.indptr)), ratings.indices
            ] = -np.inf
        if extra_exclude is not None and len(extra_exclude):
            ranked[:, extra_exclude] = -np.inf

        h = min(self.rules.head_size, n, m)
        head_scores = _discount(ranked, self.head_discount, out=np.empty_like(ranked))
        head = top_positions(head_scores, h)
        head_ok = np.isfinite(np.take_along_axis(head_scores, head, axis=1))
        tail_scores = _discount(ranked, self.tail_discount, out=head_scores)  # the same table
        del head_scores
        np.put_along_axis(tail_scores, head, -np.inf, axis=1)
        tail = top_positions(tail_scores, min(n - h, m - h))
        tail_ok = np.isfinite(np.take_along_axis(tail_scores, tail, axis=1))
        del tail_scores
        pos = np.concatenate([head, tail], axis=1)
        valid = np.concatenate([head_ok, tail_ok], axis=1)
        raw = np.take_along_axis(ranked, pos, axis=1)

        rows = ratings.shape[0]
        items = np.full((rows, n), -1, dtype=np.int64)
        scores = np.full((rows, n), -np.inf, dtype=np.float32)
        seeds = np.full((rows, n), -1, dtype=np.int64)
        items[:, : pos.shape[1]] = np.where(valid, self.items[pos], -1)
        scores[:, : pos.shape[1]] = np.where(valid, raw, -np.inf)
        if because:
            seeds[:, : pos.shape[1]] = self.because(ratings, parts, pos, valid)
        return items, scores, seeds

    def because(
        self,
        ratings: sp.csr_matrix,
        parts,
        pos: np.ndarray,
        valid: np.ndarray,
        seed_block: int = 1024,
    ) -> np.ndarray:
        """Column of the liked seed item with the largest positive contribution, per list entry
        (ties: the lower column).

        Vectorised over the block: the seeds are taken ``seed_block`` model items at a time, with
        those items' weights towards the listed items only (a dense ``seed_block x listed``
        table per model), so a sparse ``B`` is read once per block instead of once per user's
        seed rows."""
        out = np.full(pos.shape, -1, dtype=np.int64)
        n_rows, width = pos.shape
        listed = np.unique(pos[valid])
        liked = np.flatnonzero(ratings.data >= self.rules.because_min_rating)
        if len(listed) == 0 or len(liked) == 0:
            return out
        column = np.full(len(self.items), -1, dtype=np.int64)
        column[listed] = np.arange(len(listed))
        targets = column[np.where(valid, pos, listed[0])]  # (rows, width) into ``listed``
        user = np.repeat(np.arange(n_rows), np.diff(ratings.indptr))[liked]  # sorted, then by seed
        seed = ratings.indices[liked].astype(np.int64)
        weight = [(b, (factor[user] * x.data[liked]).astype(np.float32)) for x, b, factor in parts]
        compiled = n_rows > SCIPY_ROWS  # a few users' lists (the API's) without numba
        best = np.full(pos.shape, -np.inf, dtype=np.float32)
        best_seed = np.full(pos.shape, -1, dtype=np.int64)
        chunk_of = seed // seed_block
        for c in np.unique(chunk_of):
            e = np.flatnonzero(chunk_of == c)  # still sorted by (user, seed)
            lo = int(c) * seed_block
            local = seed[e] - lo
            contrib = np.zeros((len(e), width), dtype=np.float32)
            for b, w in weight:
                table = _columns(b, lo, min(lo + seed_block, b.shape[0]), listed, column, compiled)
                contrib += w[e][:, None] * table[local[:, None], targets[user[e]]]
            starts = np.flatnonzero(np.r_[True, user[e][1:] != user[e][:-1]])
            top = np.maximum.reduceat(contrib, starts, axis=0)  # per user of the chunk
            group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(e)]))
            at = np.where(contrib == top[group], np.arange(len(e))[:, None], len(e))
            first = np.minimum.reduceat(at, starts, axis=0)  # first (lowest) seed reaching it
            rows = user[e][starts]
            better = top > best[rows]  # earlier chunks hold lower seeds
            best[rows] = np.where(better, top, best[rows])
            best_seed[rows] = np.where(better, seed[e][first], best_seed[rows])
        ok = (best > 0) & valid
        out[ok] = self.items[best_seed[ok]]
        return out


def model_rows(csr: sp.csr_matrix, col_to_model: np.ndarray, n_items: int) -> sp.csr_matrix:
    """Users x model items with the raw ratings (float32 CSR, sorted indices)."""
    keep = col_to_model[csr.indices] >= 0
    row_of = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
    out = sp.csr_matrix(
        (
            csr.data[keep].astype(np.float32),
            (row_of[keep], col_to_model[csr.indices[keep]]),
        ),
        shape=(csr.shape[0], n_items),
        dtype=np.float32,
    )
    out.sum_duplicates()
    out.sort_indices()
    return out


def inputs(
    ratings: sp.csr_matrix, rules: ListRules, recency: sp.csr_matrix | None = None
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(rating model input, positive model input) for rows of raw ratings, same sparsity; each
    entry times its rating's recency weight (``ListRules.recency_weights``) when ``recency``
    (the same pattern) is given."""
    out = rating_input(ratings, rules), positive_input(ratings, rules)
    weight = None if recency is None else rules.recency_weights(recency.data)
    if weight is not None:
        if recency.nnz != ratings.nnz:
            raise ValueError("recency must have the pattern of the ratings")
        for part in out:
            part.data *= weight
    return out


def recency(ratings: sp.csr_matrix, timestamps: np.ndarray) -> sp.csr_matrix:
    """Each rating's recency among its row's: ``(n - k) / n`` for the ``k``-th newest of ``n``
    (the newest 1), newest first by ``timestamps`` (aligned with ``ratings.data``), ties by
    column: the order of a served user's packed ratings (:func:`newest_first_recency`).
    Float32 CSR with the pattern of ``ratings``."""
    ratings = ratings.tocsr()
    return sp.csr_matrix(
        (recency_data(ratings, timestamps), ratings.indices.copy(), ratings.indptr.copy()),
        shape=ratings.shape,
    )


def recency_data(ratings: sp.csr_matrix, timestamps: np.ndarray, block: int = 1 << 20):
    """:func:`recency`'s values alone (float32, aligned with ``ratings.data``), computed a few
    rows at a time (about ``block`` ratings): the sort's temporaries stay small at any size."""
    indptr = ratings.indptr
    out = np.empty(len(ratings.data), np.float32)
    for lo, hi in row_blocks(indptr, block):
        a, b = indptr[lo], indptr[hi]
        n = np.diff(indptr[lo : hi + 1])
        row = np.repeat(np.arange(hi - lo, dtype=np.int32), n)
        order = np.lexsort((ratings.indices[a:b], -np.asarray(timestamps[a:b], np.int64), row))
        k = np.empty(b - a, np.int64)
        k[order] = np.arange(b - a) - (indptr[lo:hi] - a)[row[order]]
        out[a:b] = _half((n[row] - k) / np.maximum(n[row], 1))
    return out


def newest_first_recency(n: int) -> np.ndarray:
    """:func:`recency` of ``n`` ratings listed newest first."""
    return _half((n - np.arange(n)) / max(n, 1))


def _half(p: np.ndarray) -> np.ndarray:
    """Recencies to float16 precision, as float32 (every path rounds alike; the README's figures
    were measured with this rounding, kept when the training users' recencies were stored as
    float16)."""
    return np.asarray(p).astype(np.float16).astype(np.float32)


def rating_input(ratings: sp.csr_matrix, rules: ListRules) -> sp.csr_matrix:
    return _with_data(ratings, ratings.data / rules.rating_scale)


def positive_input(ratings: sp.csr_matrix, rules: ListRules) -> sp.csr_matrix:
    # explicit zeros kept: the input shares the rating's pattern (for the "because" seeds)
    return _with_data(ratings, ratings.data >= rules.positive_threshold)


def _with_data(ratings: sp.csr_matrix, data: np.ndarray) -> sp.csr_matrix:
    """A float32 CSR matrix with the pattern of ``ratings`` and ``data`` (copied indices)."""
    return sp.csr_matrix(
        (data.astype(np.float32), ratings.indices.copy(), ratings.indptr.copy()),
        shape=ratings.shape,
    )


def _columns(
    b, lo: int, hi: int, listed: np.ndarray, column: np.ndarray, compiled: bool
) -> np.ndarray:
    """Rows ``lo .. hi - 1`` of ``B`` at the columns ``listed`` (``column`` maps a model item
    to its place in ``listed``, -1 elsewhere), as a dense float32 table."""
    if not sp.issparse(b):
        return np.asarray(b[lo:hi][:, listed], dtype=np.float32)
    return dense_rows(b, lo, hi, column, len(listed), compiled)


def _times_taste(
    scores: np.ndarray, users: np.ndarray, items: np.ndarray, weight: float, rows: int = 256
) -> None:
    """``scores`` (users x items) times ``exp(weight * p_u . q_i)`` where positive, divided by it
    where negative (as :func:`_discount`), in place, ``rows`` users at a time: its transients
    are two tables of ``rows`` x items (the factors and the signs), a quarter of a scoring
    block's table."""
    users = np.asarray(users, np.float32)
    items_t = np.asarray(items, np.float32).T
    for start in range(0, scores.shape[0], rows):
        part = scores[start : start + rows]  # a view
        exponent = users[start : start + rows] @ items_t
        exponent *= np.float32(weight)
        exponent *= np.sign(part)  # a division where negative (a third faster than a masked one)
        part *= np.exp(exponent, out=exponent)


def _discount(
    scores: np.ndarray, discount: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Apply a per-item discount (<= 1 for popular items) keeping the order of negatives
    sensible: positives are multiplied by it, negatives divided by it. Written into ``out``
    (a table of the same shape) when given."""
    out = np.multiply(scores, discount, out=out)
    np.divide(scores, discount, out=out, where=scores <= 0)
    return out


@dataclass
class ItemFactors:
    """The item side of ``mu + b_u + b_i + p_u . q_i`` (``pipeline.models.mf.BiasedMF``)."""

    global_mean: float
    item_ids: np.ndarray  # int64 external ids, sorted
    item_factors: np.ndarray  # (items, factors) float32
    item_bias: np.ndarray  # float32
    regularization: float  # weighted-lambda ridge penalty per rating

    def fold_in(
        self, movie_ids: np.ndarray, ratings: np.ndarray, min_weight: int = 0
    ) -> tuple[np.ndarray, float]:
        """A new user's ``(factors, bias)`` from their ratings, items held fixed.

        Solves the same weighted-lambda ridge system as a user half-step, exactly, with the
        penalty weighted by ``max(n, min_weight)`` ratings: ``min_weight`` > 0 keeps a user with
        only a handful of ratings near the average (at ``n`` = 1 or 2 the exact half-step fits
        them almost perfectly and predicts extremes for everything else). Movies unknown to the
        model are ignored; no known movie gives the zero vector and zero bias.
        """
        k = self.item_factors.shape[1]
        idx = lookup(self.item_ids, np.asarray(movie_ids, np.int64))
        known = idx >= 0
        if not known.any():
            return np.zeros(k, np.float32), 0.0
        d = np.hstack(
            [self.item_factors[idx[known]], np.ones((known.sum(), 1), np.float32)]
        ).astype(np.float64)
        y = np.asarray(ratings, np.float64)[known] - self.global_mean - self.item_bias[idx[known]]
        a = d.T @ d + self.regularization * max(int(known.sum()), min_weight) * np.eye(k + 1)
        x = np.linalg.solve(a, d.T @ y)
        return x[:k].astype(np.float32), float(x[k])

    def predict_folded(self, vector: np.ndarray, bias: float, item_ids) -> np.ndarray:
        """Unclipped predictions for a folded-in user (see ``fold_in``) on external movie ids."""
        idx = lookup(self.item_ids, item_ids)
        known = idx >= 0
        out = np.full(len(idx), self.global_mean + bias, np.float64)
        out[known] += self.item_bias[idx[known]] + self.item_factors[idx[known]] @ np.asarray(
            vector, np.float32
        )
        return out

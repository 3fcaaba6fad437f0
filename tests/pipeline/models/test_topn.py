"""Tests of the top-N recommender (pipeline/models/topn.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pipeline.features.matrix import RatingMatrix
from pipeline.models.topn import TopNConfig, TopNRecommender, _symmetrize_upper, sparsify_weights
from tests.support.paths import BUNDLED as RESOURCES

# tiny worlds: every item needs >= min_item_ratings ratings to enter the model
TINY = TopNConfig(
    l2=1.0, positive_l2=2.0, min_item_ratings=1, head_size=2, user_block=3, gram_block=2
)


def _random_matrix(n_users=40, n_items=25, density=0.3, seed=0) -> RatingMatrix:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        items = np.flatnonzero(rng.random(n_items) < density)
        if len(items) == 0:
            items = np.array([u % n_items])
        for i in items:
            rows.append((100 + u, 1000 + i, float(rng.integers(1, 11)) / 2))
    return RatingMatrix.from_frame(pd.DataFrame(rows, columns=["userId", "movieId", "rating"]))


def _ease_reference(x: np.ndarray, l2: float, user_weight_power: float) -> np.ndarray:
    """Textbook EASE on a dense input, float64."""
    n_u = (x != 0).sum(axis=1)
    w = np.where(n_u > 0, np.maximum(n_u, 1) ** (-user_weight_power), 0.0)
    g = (x * w[:, None]).T @ (x * w[:, None]) + l2 * np.eye(x.shape[1])
    p = np.linalg.inv(g)
    b = p / (-np.diag(p))[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def _dense_inputs(m: RatingMatrix, cfg: TopNConfig):
    r = m.csr.toarray().astype(np.float64)
    return r / cfg.rating_scale, (r >= cfg.positive_threshold).astype(np.float64)


def test_weights_match_closed_form():
    m = _random_matrix()
    rec = TopNRecommender(replace(TINY, solve_dtype="float64")).fit(m)
    assert len(rec.items_) == m.shape[1]
    rating_x, positive_x = _dense_inputs(m, TINY)
    np.testing.assert_allclose(
        rec.weights_[0],
        _ease_reference(rating_x, TINY.l2, TINY.user_weight_power),
        rtol=1e-5,
        atol=1e-7,
    )
    np.testing.assert_allclose(
        rec.weights_[1], _ease_reference(positive_x, TINY.positive_l2, 0.0), rtol=1e-5, atol=1e-7
    )
    assert rec.blend_ == [1.0, TINY.positive_weight]
    assert all(np.all(np.diag(b) == 0) for b in rec.weights_)
    single = TopNRecommender(replace(TINY, positive_weight=0.0)).fit(m)
    assert len(single.weights_) == 1


def test_content_terms_are_more_input_rows_of_the_rating_model_only():
    m = _random_matrix()
    rng = np.random.default_rng(1)
    content = sp.csr_matrix((rng.random((m.shape[1], 6)) < 0.3).astype(np.float32))
    cfg = replace(TINY, solve_dtype="float64", content_weight=0.7)
    rec = TopNRecommender(cfg).fit(m, content)
    rating_x, positive_x = _dense_inputs(m, cfg)
    n_u = (rating_x != 0).sum(axis=1, keepdims=True)
    # the term rows join after the users' weighting: their weight is content_weight, not a count's
    stacked = np.vstack([rating_x * n_u**-cfg.user_weight_power, 0.7 * content.T.toarray()])
    np.testing.assert_allclose(
        rec.weights_[0], _ease_reference(stacked, cfg.l2, 0.0), rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(
        rec.weights_[1], _ease_reference(positive_x, cfg.positive_l2, 0.0), rtol=1e-5, atol=1e-7
    )
    plain = TopNRecommender(cfg).fit(m).weights_[0]
    assert not np.allclose(rec.weights_[0], plain)
    off = TopNRecommender(replace(cfg, content_weight=0.0)).fit(m, content).weights_[0]
    np.testing.assert_array_equal(off, plain)
    with pytest.raises(ValueError, match="rows"):
        TopNRecommender(cfg).fit(m, content[:-1])


def test_content_links_movies_no_one_rated_together():
    # movies 0 and 1 are never rated by the same user; a shared term raises their weight
    frame = pd.DataFrame(
        [(u, 1000 + (u % 2), 4.0) for u in range(10)] + [(u, 1002, 3.0) for u in range(10)],
        columns=["userId", "movieId", "rating"],
    )
    m = RatingMatrix.from_frame(frame)
    cfg = replace(TINY, positive_weight=0.0)
    alone = TopNRecommender(cfg).fit(m).weights_[0]
    shared = sp.csr_matrix(np.array([[1.0], [1.0], [0.0]], np.float32))
    linked = TopNRecommender(cfg).fit(m, shared).weights_[0]
    assert linked[0, 1] > alone[0, 1] and linked[1, 0] > alone[1, 0]


def test_float32_solve_close_to_float64():
    m = _random_matrix()
    b64 = TopNRecommender(replace(TINY, solve_dtype="float64")).fit(m).weights_
    b32 = TopNRecommender(replace(TINY, solve_dtype="float32")).fit(m).weights_
    for a, b in zip(b32, b64):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_sparsify_keeps_the_largest_weights_of_each_row_from_dense_or_sparse():
    b = np.random.default_rng(5).standard_normal((30, 30)).astype(np.float32)
    np.fill_diagonal(b, 0.0)
    cut = sparsify_weights(b, 7)
    assert (np.diff(cut.indptr) == 7).all()
    dense = cut.toarray()
    for row, kept in zip(b, dense):
        largest = np.sort(np.abs(row))[-7:]
        np.testing.assert_array_equal(np.sort(np.abs(kept[kept != 0])), largest)
        np.testing.assert_array_equal(kept[kept != 0], row[kept != 0])
    # cutting a sparse B again gives what cutting the dense one gives; a looser cut keeps it as is
    assert (sparsify_weights(sparsify_weights(b, 12), 7) != cut).nnz == 0
    assert (sparsify_weights(cut, 20) != cut).nnz == 0


@pytest.mark.parametrize("score_neighbors", [None, 6])
def test_because_is_the_liked_item_contributing_most(score_neighbors):
    """The block-wise "because" seed equals, entry by entry, the argmax over the user's liked
    items of their blended contribution, computed here user by user on dense weights."""
    m = _random_matrix(n_users=50, n_items=30, density=0.4, seed=3)
    model = TopNRecommender(
        replace(TINY, score_neighbors=score_neighbors, because_min_rating=3.0)
    ).fit(m)
    x = model.user_ratings_
    scorer = model.scorer
    _, parts = scorer.affinity(x)
    rng = np.random.default_rng(0)
    pos = rng.integers(0, len(model.items_), size=(x.shape[0], 8))
    valid = rng.random(pos.shape) < 0.9
    expected = np.full(pos.shape, -1)
    for r in range(x.shape[0]):
        lo, hi = x.indptr[r], x.indptr[r + 1]
        liked = np.flatnonzero(x.data[lo:hi] >= 3.0)
        if len(liked) == 0:
            continue
        seeds = x.indices[lo:hi][liked]
        contrib = np.zeros((len(seeds), pos.shape[1]), np.float32)
        for xi, b, factor in parts:
            dense = b.toarray() if hasattr(b, "toarray") else b
            contrib += (factor[r] * xi.data[lo:hi][liked])[:, None] * dense[np.ix_(seeds, pos[r])]
        best = np.argmax(contrib, axis=0)
        ok = (contrib[best, np.arange(pos.shape[1])] > 0) & valid[r]
        expected[r] = np.where(ok, model.items_[seeds[best]], -1)
    assert (expected >= 0).sum() > 100
    for seed_block in (4, 7, 1024):  # seeds taken a few items at a time, or all at once
        np.testing.assert_array_equal(
            scorer.because(x, parts, pos, valid, seed_block=seed_block), expected
        )


def test_score_neighbors_scores_with_the_cut_weights_as_cut_does():
    m = _random_matrix(n_users=60, n_items=30, density=0.4)
    full = TopNRecommender(TINY).fit(m)
    fitted = TopNRecommender(replace(TINY, score_neighbors=6)).fit(m)
    cut = full.cut(6)  # the live model's: its tail calibrated on the weights it keeps
    np.testing.assert_array_equal(cut.tail_quantile_, fitted.tail_quantile_)
    rows = np.arange(m.shape[0])
    for a, b in zip(fitted.recommend(rows, n=8), cut.recommend(rows, n=8)):
        np.testing.assert_array_equal(a, b)
    assert all((np.diff(w.indptr) <= 6).all() for w in fitted.weights_)
    with pytest.raises(ValueError, match="training users"):
        full.without_users().cut(6)


def test_positive_neighbors_cut_the_positive_model_alone():
    m = _random_matrix(n_users=60, n_items=30, density=0.4)
    full = TopNRecommender(TINY).fit(m)
    cut = TopNRecommender(replace(TINY, score_neighbors=8, positive_neighbors=4)).fit(m)
    by_hand = full.with_weights(
        [sparsify_weights(full.weights_[0], 8), sparsify_weights(full.weights_[1], 4)]
    )
    rows = np.arange(m.shape[0])
    for a, b in zip(cut.recommend(rows, n=8), by_hand.recommend(rows, n=8)):
        np.testing.assert_array_equal(a, b)
    assert [int(np.diff(w.indptr).max()) for w in cut.weights_] == [8, 4]


def test_symmetrize_upper_blocks():
    rng = np.random.default_rng(1)
    a = rng.random((7, 7))
    expected = np.triu(a) + np.triu(a, 1).T
    _symmetrize_upper(a, step=3)
    np.testing.assert_array_equal(a, expected)


def test_seen_items_excluded_and_shapes():
    m = _random_matrix()
    rec = TopNRecommender(TINY).fit(m)
    rows = np.arange(m.shape[0])
    items, scores, because = rec.recommend(rows, n=8)
    assert items.shape == scores.shape == because.shape == (len(rows), 8)
    assert scores.dtype == np.float32
    for r in rows:
        seen = set(m.csr[r].indices.tolist())
        got = [i for i in items[r] if i >= 0]
        assert not seen & set(got)
        assert len(got) == len(set(got))
        assert len(got) == min(8, m.shape[1] - len(seen))


def test_exclude_seen_false_allows_rated_items():
    m = _random_matrix()
    rec = TopNRecommender(TINY).fit(m)
    items, _, _ = rec.recommend(np.arange(m.shape[0]), n=m.shape[1], exclude_seen=False)
    assert (items >= 0).all()  # the whole catalogue is available
    assert any(set(m.csr[r].indices) & set(items[r]) for r in range(m.shape[0]))


def test_deterministic():
    m = _random_matrix(seed=3)
    a = TopNRecommender(TINY).fit(m).recommend(np.arange(m.shape[0]), n=10)
    b = TopNRecommender(TINY).fit(m).recommend(np.arange(m.shape[0]), n=10)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_because_is_a_liked_item_with_largest_contribution():
    m = _random_matrix(seed=5)
    rec = TopNRecommender(TINY).fit(m)
    rows = np.arange(m.shape[0])
    items, _, because = rec.recommend(rows, n=6)
    inputs = _dense_inputs(m, TINY)
    # per-user scale of each model: mean of the ten largest raw scores
    # (a model with no positive score for a user does not take part in the blend)
    scales = [np.sort(x @ b, axis=1)[:, -10:].mean(axis=1) for x, b in zip(inputs, rec.weights_)]
    factors = [np.where(s > 1e-9, w / np.maximum(s, 1e-9), 0.0) for s, w in zip(scales, rec.blend_)]
    checked = 0
    for r in rows:
        row = m.csr[r]
        liked = [int(c) for c, v in zip(row.indices, row.data) if v >= TINY.because_min_rating]
        for item, seed in zip(items[r], because[r]):
            if item < 0:
                assert seed == -1
                continue
            contrib = {
                c: sum(
                    f[r] * x[r, c] * b[c, item] for x, b, f in zip(inputs, rec.weights_, factors)
                )
                for c in liked
            }
            best = max(contrib.values(), default=0.0)
            if best > 0:
                assert seed in liked
                assert contrib[seed] == pytest.approx(best, rel=1e-4)
                checked += 1
            else:
                assert seed == -1
    assert checked > 50


def test_tail_calibration_is_the_item_quantile_among_non_raters():
    m = _random_matrix(n_users=50, seed=6)
    cfg = replace(TINY, calibration_quantile=0.9, tail_calibration_power=1.0)
    rec = TopNRecommender(cfg).fit(m)
    affinity, _ = rec.scorer.affinity(rec.user_ratings_)
    affinity = affinity.astype(np.float64)
    affinity[m.csr.toarray() > 0] = np.nan
    q = np.nanquantile(affinity, 0.9, axis=0, method="lower")
    np.testing.assert_allclose(rec.tail_discount_, 1.0 / q, rtol=1e-5)
    sampled = TopNRecommender(replace(cfg, calibration_users=20)).fit(m)
    again = TopNRecommender(replace(cfg, calibration_users=20)).fit(m)
    np.testing.assert_array_equal(sampled.tail_discount_, again.tail_discount_)
    assert not np.allclose(sampled.tail_discount_, rec.tail_discount_)


def test_with_list_reranks_the_same_weights_as_a_fit_at_that_point():
    m = _random_matrix(n_users=50, seed=8)
    rec = TopNRecommender(TINY).fit(m)
    moved = rec.with_list(head_size=1, head_popularity_power=0.5, tail_calibration_power=0.3)
    assert moved.weights_ is rec.weights_ and rec.config == TINY  # shared, original untouched
    fitted_there = TopNRecommender(
        replace(TINY, head_size=1, head_popularity_power=0.5, tail_calibration_power=0.3)
    ).fit(m)
    rows = np.arange(len(m.user_ids))
    for a, b in zip(moved.recommend(rows, 8), fitted_there.recommend(rows, 8)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(moved.recommend(rows, 8)[0], rec.recommend(rows, 8)[0])


def test_recommend_for_ratings_matches_recommend():
    m = _random_matrix(seed=7)
    rec = TopNRecommender(TINY).fit(m)
    items, scores, because = rec.recommend(np.arange(m.shape[0]), n=7)
    for r in range(m.shape[0]):
        row = m.csr[r]
        i1, s1, b1 = rec.recommend_for_ratings(row.indices, row.data, n=7)
        np.testing.assert_array_equal(i1[0], items[r])
        np.testing.assert_allclose(s1[0], scores[r], rtol=1e-5)
        np.testing.assert_array_equal(b1[0], because[r])


def test_recommend_for_ratings_extra_exclude_and_unknown_columns():
    m = _random_matrix(seed=8)
    rec = TopNRecommender(TINY).fit(m)
    row = m.csr[0]
    first, _, _ = rec.recommend_for_ratings(row.indices, row.data, n=5)
    banned = first[0][:2]
    again, _, _ = rec.recommend_for_ratings(
        np.append(row.indices, [-1, 10_000]), np.append(row.data, [5, 5]), n=5, exclude=banned
    )
    assert not set(banned) & set(again[0])
    assert not set(row.indices) & set(again[0])


def test_cold_user_gets_popular_items():
    m = _random_matrix(seed=9)
    rec = TopNRecommender(replace(TINY, head_popularity_power=0.0, head_size=5)).fit(m)
    items, _, because = rec.recommend_for_ratings(
        np.array([], np.int64), np.array([], np.float32), n=5
    )
    counts = np.bincount(m.csr.indices, minlength=m.shape[1])
    expected = np.lexsort((np.arange(m.shape[1]), -counts))[:5]
    np.testing.assert_array_equal(items[0], expected)
    assert (because == -1).all()


def test_pads_when_catalogue_is_short():
    m = _random_matrix(n_users=10, n_items=6, density=0.5, seed=2)
    rec = TopNRecommender(TINY).fit(m)
    items, scores, because = rec.recommend(np.arange(10), n=9)
    for r in range(10):
        n_free = m.shape[1] - m.csr[r].nnz
        assert (items[r, :n_free] >= 0).all() and (items[r, n_free:] == -1).all()
        assert np.isneginf(scores[r, n_free:]).all() and (because[r, n_free:] == -1).all()


def test_item_filters():
    m = _random_matrix(n_users=60, n_items=30, density=0.2, seed=4)
    counts = np.bincount(m.csr.indices, minlength=m.shape[1])
    rec = TopNRecommender(replace(TINY, min_item_ratings=12)).fit(m)
    np.testing.assert_array_equal(rec.items_, np.flatnonzero(counts >= 12))
    items, _, _ = rec.recommend(np.arange(m.shape[0]), n=5)
    assert set(items[items >= 0].tolist()) <= set(rec.items_.tolist())
    capped = TopNRecommender(replace(TINY, max_items=7)).fit(m)
    assert len(capped.items_) == 7
    assert counts[capped.items_].min() >= np.sort(counts)[-7]


def _holdout(ratings: pd.DataFrame, frac=0.2, seed=0):
    rng = np.random.default_rng(seed)
    test_mask = np.zeros(len(ratings), bool)
    for _, idx in ratings.groupby("userId").indices.items():
        k = int(len(idx) * frac)
        test_mask[rng.choice(idx, size=k, replace=False)] = True
    return ratings[~test_mask], ratings[test_mask]


def _ndcg10(recs: np.ndarray, m: RatingMatrix, test: pd.DataFrame) -> float:
    rel = test[test["rating"] >= 4]
    disc = 1 / np.log2(np.arange(2, 12))
    out = []
    for user, group in rel.groupby("userId"):
        r = m.user_index([user])[0]
        relevant = set(m.item_index(group["movieId"]).tolist()) - {-1}
        gains = np.array([1.0 if c in relevant else 0.0 for c in recs[r]])
        out.append(gains @ disc / disc[: min(len(group), 10)].sum())
    return float(np.mean(out))


def test_beats_popularity_on_bundled_data():
    ratings = pd.read_csv(RESOURCES / "ratings.csv")
    train, test = _holdout(ratings)
    m = RatingMatrix.from_frame(train)
    rec = TopNRecommender().fit(m)
    items, _, because = rec.recommend(np.arange(m.shape[0]), n=10)
    counts = np.bincount(m.csr.indices, minlength=m.shape[1]).astype(float)
    pop = np.tile(counts, (m.shape[0], 1))
    pop[m.csr.nonzero()] = -1
    pop_items = np.argsort(-pop, axis=1, kind="stable")[:, :10]
    model, baseline = _ndcg10(items, m, test), _ndcg10(pop_items, m, test)
    assert model > 1.5 * baseline, (model, baseline)
    coverage = len(np.unique(items)) / m.shape[1]
    assert coverage > 0.05
    assert (because >= 0).mean() > 0.9


def _timed_matrix(seed=7) -> RatingMatrix:
    """_random_matrix with timestamps, some of them tied."""
    m = _random_matrix(seed=seed)
    frame = pd.DataFrame(
        {
            "userId": np.repeat(m.user_ids, np.diff(m.csr.indptr)),
            "movieId": m.item_ids[m.csr.indices],
            "rating": m.csr.data,
            "timestamp": np.random.default_rng(seed).integers(0, 20, m.nnz),
        }
    )
    return RatingMatrix.from_frame(frame)


def test_recency_orders_each_row_newest_first_ties_by_column():
    from contract.scoring import newest_first_recency, recency, recency_data

    ratings = sp_csr([[5, 0, 3, 4], [0, 2, 0, 0], [1, 1, 1, 0]])
    timestamps = np.array([10, 30, 20, 7, 5, 5, 6])  # row 0: 10, 30, 20; row 1: 7; row 2: 5, 5, 6
    p = recency(ratings, timestamps)
    assert (p.indptr == ratings.indptr).all() and (p.indices == ratings.indices).all()
    # ties (row 2, time 5) by column: the lower one counts as the newer (a served user's order)
    expected = [1 / 3, 1.0, 2 / 3, 1.0, 2 / 3, 1 / 3, 1.0]
    assert p.data.tolist() == pytest.approx(expected, abs=1e-3)  # (float16 precision)
    assert newest_first_recency(3).tolist() == pytest.approx([1.0, 2 / 3, 1 / 3], abs=1e-3)
    # a few rows at a time (large matrices) gives the same values
    m = _timed_matrix(seed=3)
    whole = recency_data(m.csr, m.timestamps)
    for block in (1, 7, 50):
        np.testing.assert_array_equal(recency_data(m.csr, m.timestamps, block=block), whole)


def sp_csr(rows):
    import scipy.sparse as sp

    return sp.csr_matrix(np.array(rows, np.float32))


def test_the_newest_rating_pulls_its_neighbours_up_and_every_path_agrees():
    """With recency weights the lists follow the newest ratings more (an item's neighbours in B
    rise when its rating is the newest), and recommend, recommend_matrix with the rows'
    timestamps and recommend_for_ratings with their recency give the same lists."""
    from contract.scoring import recency

    m = _timed_matrix()
    flat = TopNRecommender(replace(TINY, recency_boost=0.0)).fit(m)
    rec = TopNRecommender(replace(TINY, recency_boost=2.0)).fit(m)
    rows = np.arange(m.shape[0])
    items, scores, because = rec.recommend(rows, n=7)
    assert not np.array_equal(items, flat.recommend(rows, n=7)[0])  # the weights change lists
    again = rec.recommend_matrix(m.csr, n=7, timestamps=m.timestamps)
    p = recency(m.csr, m.timestamps)
    for a, b in zip(again, (items, scores, because)):
        np.testing.assert_array_equal(a, b)
    for r in rows:
        row, pr = m.csr[r], p[r]
        i1, s1, b1 = rec.recommend_for_ratings(row.indices, row.data, n=7, recency=pr.data)
        np.testing.assert_array_equal(i1[0], items[r])
        np.testing.assert_allclose(s1[0], scores[r], rtol=1e-5)
    # one user's affinity with and without the weights: the newest rating's row of B counts more
    r = int(np.argmax(np.diff(m.csr.indptr)))
    row, pr = m.csr[r], p[r]
    newest = row.indices[np.argmax(pr.data)]
    b = rec.weights_[0][rec.col_to_model_[newest]]
    a_flat = rec.scorer.affinity(rec.user_ratings_[[r]])[0][0]
    a_recent = rec.scorer.affinity(rec.user_ratings_[[r]], recency(row, m.timestamps_of([r])))[0][0]
    top = np.argsort(-b)[:3]  # the newest rating's strongest neighbours
    assert (a_recent[top] - a_flat[top]).mean() > (a_recent - a_flat).mean()


def test_taste_multiplies_the_affinity_and_every_path_agrees():
    """Fitted with the rating model's factorisation, each affinity is multiplied by
    exp(taste_weight * p_u . q_i) (divided where negative) before the list is ranked; recommend,
    recommend_matrix with the rows' factors and recommend_for_ratings with one user's give the
    same lists, and a weight of 0 is the model without it."""
    from pipeline.models.mf import BiasedMF, BiasedMFConfig

    m = _random_matrix(seed=3)
    mf = BiasedMF(BiasedMFConfig(factors=4, iterations=4)).fit(m)
    plain = TopNRecommender(TINY).fit(m)
    cfg = replace(TINY, taste_weight=2.0)
    rec = TopNRecommender(cfg).fit(m, taste=mf)
    rows = np.arange(m.shape[0])
    items, scores, because = rec.recommend(rows, n=7)
    assert not np.array_equal(items, plain.recommend(rows, n=7)[0])
    off = TopNRecommender(replace(TINY, taste_weight=0.0)).fit(m, taste=mf)
    np.testing.assert_array_equal(off.recommend(rows, n=7)[0], plain.recommend(rows, n=7)[0])
    # the factor itself, on one user's affinity
    r = 5
    affinity = rec.scorer.affinity(rec.user_ratings_[[r]])[0][0]
    factor = np.exp(2.0 * mf.item_factors_[rec.items_] @ mf.user_factors_[r])
    expected = np.where(affinity > 0, affinity * factor, affinity / factor)
    listed = items[r][items[r] >= 0]
    np.testing.assert_allclose(
        scores[r][: len(listed)], expected[rec.col_to_model_[listed]], rtol=1e-4
    )
    again = rec.without_users().recommend_matrix(m.csr, n=7, taste=mf.user_factors_)
    for a, b in zip(again, (items, scores, because)):
        np.testing.assert_array_equal(a, b)
    for r in rows:
        row = m.csr[r]
        i1, s1, _ = rec.recommend_for_ratings(row.indices, row.data, n=7, taste=mf.user_factors_[r])
        np.testing.assert_array_equal(i1[0], items[r])
        np.testing.assert_allclose(s1[0], scores[r], rtol=1e-5)
    with pytest.raises(ValueError, match="not of this rating matrix"):
        TopNRecommender(cfg).fit(_random_matrix(n_users=30, seed=3), taste=mf)

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pipeline.features.matrix import RatingMatrix
from pipeline.models.biases import BiasConfig, Biases
from pipeline.models.mf import BiasedMF, BiasedMFConfig


def _low_rank(n_users=120, n_items=80, rank=3, density=0.3, seed=0):
    """Ratings = 3.5 + user bias + item bias + a rank-3 term + noise, as a frame."""
    rng = np.random.default_rng(seed)
    u = rng.normal(0, 0.8, (n_users, rank))
    v = rng.normal(0, 0.8, (n_items, rank))
    full = 3.5 + rng.normal(0, 0.3, (n_users, 1)) + rng.normal(0, 0.3, (1, n_items)) + u @ v.T
    full += rng.normal(0, 0.1, full.shape)
    mask = rng.random(full.shape) < density
    rows, cols = np.nonzero(mask)
    return pd.DataFrame({"userId": rows + 1, "movieId": cols + 100, "rating": full[rows, cols]})


def _split(frame, seed=1):
    test = np.random.default_rng(seed).random(len(frame)) < 0.2
    return frame[~test], frame[test]


def _rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def test_biases_by_hand():
    frame = pd.DataFrame({"userId": [1, 1, 2], "movieId": [10, 20, 10], "rating": [4.0, 2.0, 5.0]})
    m = RatingMatrix.from_frame(frame)
    b = Biases(BiasConfig(user_damping=1.0, item_damping=1.0, iterations=1)).fit(m)
    mu = 11 / 3
    bi = np.array([(4 - mu + 5 - mu) / 3, (2 - mu) / 2])
    bu = np.array([(4 - mu - bi[0] + 2 - mu - bi[1]) / 3, (5 - mu - bi[0]) / 2])
    np.testing.assert_allclose(b.item_bias_, bi, rtol=1e-6)
    np.testing.assert_allclose(b.user_bias_, bu, rtol=1e-6)
    np.testing.assert_allclose(
        b.estimate(np.array([0, -1]), np.array([1, -1])), [mu + bu[0] + bi[1], mu], rtol=1e-6
    )
    assert b.user_bias_for(np.array([1, -1]), np.array([2.0, 5.0])) == pytest.approx(
        (2 - mu - bi[1]) / 2
    )


def test_mf_recovers_low_rank_structure_better_than_biases():
    train, test = _split(_low_rank())
    m = RatingMatrix.from_frame(train)
    mf = BiasedMF(BiasedMFConfig(factors=5, iterations=15, regularization=0.02)).fit(m)
    bias = Biases().fit(m)
    mf_rmse = _rmse(mf.predict(test.userId, test.movieId), test.rating)
    bias_rmse = _rmse(
        bias.estimate(m.user_index(test.userId), m.item_index(test.movieId)), test.rating
    )
    assert mf_rmse < 0.6 * bias_rmse
    assert mf.user_factors_.shape == (m.shape[0], 5) and mf.item_factors_.dtype == np.float32


def test_half_step_reaches_each_rows_exact_ridge_solution():
    """With as many CG steps as unknowns, each row's solve is the exact ridge solution of
    ``(D'D + lam n I) x = D'(y - other_bias)``, rows of any length (and none) alike."""
    m = RatingMatrix.from_frame(_low_rank(25, 18, density=0.4), user_ids=np.arange(1, 27))
    k = 3
    mf = BiasedMF(BiasedMFConfig(factors=k, cg_steps=k + 1, regularization=0.05))
    rng = np.random.default_rng(3)
    own = rng.standard_normal((m.shape[0], k + 1)).astype(np.float32)
    other = rng.standard_normal((m.shape[1], k + 1)).astype(np.float32)
    csr = m.csr.astype(np.float32)
    out = mf._half_step(csr, own, other)
    design = np.hstack([other[:, :k], np.ones((len(other), 1), np.float32)]).astype(np.float64)
    for r in range(m.shape[0]):
        cols = csr.indices[csr.indptr[r] : csr.indptr[r + 1]]
        vals = csr.data[csr.indptr[r] : csr.indptr[r + 1]]
        d = design[cols]
        a = d.T @ d + 0.05 * len(cols) * np.eye(k + 1)
        exact = np.linalg.solve(a, d.T @ (vals - other[cols, k])) if len(cols) else own[r]
        np.testing.assert_allclose(out[r], exact, rtol=2e-3, atol=2e-3)


def test_rows_without_ratings_get_no_factors_and_unknown_ids_fall_back():
    frame = _low_rank(30, 20)
    users = np.append(np.unique(frame.userId), 999)  # a user with no ratings
    m = RatingMatrix.from_frame(frame, user_ids=users)
    mf = BiasedMF(BiasedMFConfig(factors=3, iterations=3)).fit(m)
    assert not mf.user_factors_[-1].any() and mf.user_bias_[-1] == 0
    p = mf.predict([999, 12345, 1], [100, 100, 55555])
    assert p[0] == pytest.approx(mf.global_mean_ + mf.item_bias_[0])
    assert p[1] == pytest.approx(mf.global_mean_ + mf.item_bias_[0])
    assert p[2] == pytest.approx(mf.global_mean_ + mf.user_bias_[0])


def test_fold_in_reproduces_a_training_user_and_ignores_unknown_movies():
    frame = _low_rank()
    m = RatingMatrix.from_frame(frame)
    mf = BiasedMF(BiasedMFConfig(factors=5, iterations=15, regularization=0.02, cg_steps=6)).fit(m)
    own = frame[frame.userId == 7][["movieId", "rating"]]
    vector, bias = mf.fold_in(pd.concat([own, pd.DataFrame({"movieId": [99999], "rating": [0.5]})]))
    items = m.item_ids
    folded = mf.predict_folded(vector, bias, items)
    stored = mf.predict(np.full(len(items), 7), items)
    assert _rmse(folded, stored) < 0.05
    # a different user's ratings give a clearly different vector
    other, _ = mf.fold_in(frame[frame.userId == 8][["movieId", "rating"]])
    assert np.linalg.norm(other - vector) > 10 * np.linalg.norm(vector - mf.user_factors_[6])
    zero, zero_bias = mf.fold_in(pd.DataFrame({"movieId": [99999], "rating": [4.0]}))
    assert not zero.any() and zero_bias == 0.0


def test_fit_accepts_float64_csr_and_keeps_float32():
    frame = _low_rank(20, 15)
    m = RatingMatrix.from_frame(frame)
    m64 = RatingMatrix(m.user_ids, m.item_ids, sp.csr_matrix(m.csr, dtype=np.float64))
    mf = BiasedMF(BiasedMFConfig(factors=2, iterations=2)).fit(m64)
    assert mf.user_factors_.dtype == np.float32

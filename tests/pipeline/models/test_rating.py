import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from pipeline.data.tmdb import load_metadata, movie_votes
from pipeline.features.matrix import RatingMatrix
from pipeline.features.tables import build_features
from pipeline.models.biases import Biases
from pipeline.models.item_knn import ItemKNN, ItemKNNConfig
from pipeline.models.mf import BiasedMFConfig
from pipeline.models.rating import RatingModel, RatingModelConfig
from tests.support.paths import BUNDLED as RESOURCES
from tests.support.paths import TMDB

FAST = RatingModelConfig(
    mf=BiasedMFConfig(factors=20, iterations=5),
    knn=ItemKNNConfig(candidates=50),
    stack_folds=3,
    gbm_max_iter=80,
    gbm_learning_rate=0.1,
    time_features=True,
)


def _rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2)))


@pytest.fixture(scope="module")
def sample():
    """~20k bundled ratings (users with id divisible by 5): 10 users held out whole (new users),
    the rest split 80/20 at random."""
    ratings = pd.read_csv(
        RESOURCES / "ratings.csv",
        dtype={"userId": "int32", "movieId": "int32", "rating": "float32", "timestamp": "int64"},
    )
    ratings = ratings[ratings.userId % 5 == 0].reset_index(drop=True)
    movies = pd.read_csv(RESOURCES / "movies.csv")
    movies["genres"] = movies["genres"].str.split("|")
    movies["year"] = pd.to_numeric(movies["title"].str.extract(r"\((\d{4})\)\s*$")[0]).astype(
        "Int64"
    )
    users = np.unique(ratings.userId)
    new_users = np.random.default_rng(0).choice(users, 10, replace=False)
    is_new = ratings.userId.isin(new_users).to_numpy()
    held = np.random.default_rng(1).random(len(ratings)) < 0.2
    train = ratings[~is_new & ~held].reset_index(drop=True)
    test = ratings[~is_new & held].reset_index(drop=True)
    newcomers = ratings[is_new].reset_index(drop=True)
    train_dd = dd.from_pandas(train, npartitions=3)
    votes = movie_votes(pd.read_csv(RESOURCES / "links.csv"), load_metadata(TMDB))
    features = build_features(train_dd, movies, votes=votes)
    model = RatingModel(FAST).fit(train_dd, features)
    return {"train": train, "test": test, "new": newcomers, "features": features, "model": model}


def _bias_only(model, pairs):
    c = model.collaborative_
    return np.clip(
        c.bias_.estimate(c.user_index(pairs.userId), c.item_index(pairs.movieId)), 0.5, 5
    )


def test_beats_global_mean_and_bias_baselines(sample):
    model, test = sample["model"], sample["test"]
    pred = model.predict(test)
    model_rmse = _rmse(pred, test.rating)
    mean_rmse = _rmse(np.full(len(test), sample["features"].global_mean), test.rating)
    bias_rmse = _rmse(_bias_only(model, test), test.rating)
    assert model_rmse < bias_rmse - 0.01 < mean_rmse - 0.05
    assert {"tmdb_vote", "tmdb_votes"} <= set(model.columns_)  # TMDB's vote, as the pipeline
    # without timestamps the model still beats the biases (it was trained with some hidden)
    assert _rmse(model.predict(test[["userId", "movieId"]]), test.rating) < bias_rmse - 0.005


def test_predictions_are_finite_in_range_and_in_order(sample):
    model, test = sample["model"], sample["test"]
    pred = model.predict(test)
    assert pred.shape == (len(test),) and np.isfinite(pred).all()
    assert pred.min() >= 0.5 and pred.max() <= 5.0
    shuffled = test.sample(frac=1.0, random_state=2)
    np.testing.assert_allclose(
        model.predict(shuffled), pd.Series(pred, index=test.index)[shuffled.index]
    )


def test_unknown_users_and_movies(sample):
    model, train = sample["model"], sample["train"]
    known_user, known_movie = int(train.userId.iloc[0]), int(train.movieId.iloc[0])
    pairs = pd.DataFrame(
        {
            "userId": [-5, -5, known_user, known_user],
            "movieId": [known_movie, -7, -7, known_movie],
            "timestamp": [np.nan, 0, 0, np.nan],
        }
    )
    pred = model.predict(pairs)
    assert np.isfinite(pred).all() and ((pred >= 0.5) & (pred <= 5)).all()
    c = model.collaborative_
    mu, bi = c.bias_.global_mean_, c.bias_.item_bias_[c.item_index([known_movie])[0]]
    assert pred[0] == pytest.approx(np.clip(mu + bi, 0.5, 5))  # unknown user: mu + b_i
    assert pred[1] == pytest.approx(np.clip(mu, 0.5, 5))  # nothing known: mu
    assert model.predict(pairs.iloc[:0]).shape == (0,)


def test_fold_in_new_users_beats_the_baseline(sample):
    model, new = sample["model"], sample["new"]
    folded_err, base_err = [], []
    for _, mine in new.groupby("userId"):
        mine = mine.sample(frac=1.0, random_state=3)
        cut = int(len(mine) * 0.7)
        given, hidden = mine.iloc[:cut], mine.iloc[cut:]
        user = model.fold_in(given[["movieId", "rating", "timestamp"]])
        assert user.vector.shape == (FAST.mf.factors,)
        pred = model.predict_folded(user, hidden.movieId)
        assert np.isfinite(pred).all() and ((pred >= 0.5) & (pred <= 5)).all()
        folded_err.append(pred - hidden.rating.to_numpy())
        base_err.append(_bias_only(model, hidden.assign(userId=-1)) - hidden.rating.to_numpy())
    folded, base = np.concatenate(folded_err), np.concatenate(base_err)
    assert np.sqrt(np.mean(folded**2)) < np.sqrt(np.mean(base**2)) - 0.03


def test_a_copy_without_users_predicts_a_slice_of_users_as_the_whole_model(sample):
    """``without_users`` + ``users(ids)``: what a worker holds and what a task brings give the
    predictions of the whole model, same-day features (timestamps) included."""
    model, test = sample["model"], sample["test"]
    some = np.unique(test.userId)[::3]
    pairs = test[test.userId.isin(some)].reset_index(drop=True)
    pairs = pd.concat([pairs, pairs.assign(userId=-7)], ignore_index=True)  # and an unknown user
    bare = model.without_users()
    assert bare.collaborative_.state_ is None and model.collaborative_.state_ is not None
    users = model.users(np.concatenate([some, [-7]]))
    assert users.user_ids.tolist() == sorted(some.tolist())
    np.testing.assert_array_equal(bare.predict(pairs, users=users), model.predict(pairs))
    with pytest.raises(ValueError, match="users="):
        bare.predict(pairs)


def test_folded_training_user_matches_the_fitted_user(sample):
    model, train = sample["model"], sample["train"]
    user = int(train.userId.value_counts().index[0])
    mine = train[train.userId == user]
    folded = model.fold_in(mine[["movieId", "rating", "timestamp"]])
    row = model.collaborative_.user_index([user])[0]
    cos = (
        folded.vector
        @ model.user_factors_[row]
        / (np.linalg.norm(folded.vector) * np.linalg.norm(model.user_factors_[row]))
    )
    assert cos > 0.95
    movies = train.movieId.unique()[:200]
    as_known = model.predict(pd.DataFrame({"userId": user, "movieId": movies}))
    np.testing.assert_allclose(model.predict_folded(folded, movies), as_known, atol=0.15)
    empty = model.fold_in(pd.DataFrame({"movieId": [], "rating": []}))
    assert np.isfinite(model.predict_folded(empty, movies)).all()


def test_stacking_rows_are_out_of_fold(sample):
    """Every stacking row is described by statistics that never saw its fold: the user's and
    the movie's training counts in the row are their totals minus their ratings in that fold."""
    train, features = sample["train"], sample["features"]
    x, y, pairs = RatingModel(FAST).stacking_rows(dd.from_pandas(train, npartitions=2), features)
    assert len(x) == len(y) == len(pairs) == len(train)
    assert sorted(pairs.fold.unique()) == list(range(FAST.stack_folds))
    for key, column in [("userId", "u_n"), ("movieId", "m_n")]:
        total = train[key].value_counts().reindex(pairs[key]).to_numpy()
        in_fold = pairs.groupby(["fold", key])[key].transform("size").to_numpy()
        np.testing.assert_array_equal(x[column].to_numpy(), total - in_fold)
    # the collaborative features too: fold 0's baseline equals biases refit without fold 0
    fold0 = pairs.fold.to_numpy() == 0
    rest = train.merge(pairs[fold0][["userId", "movieId"]], how="left", indicator=True)
    rest = rest[rest["_merge"] == "left_only"]
    m = RatingMatrix.from_frame(
        rest, user_ids=np.unique(train.userId), item_ids=np.unique(train.movieId)
    )
    b = Biases(FAST.bias).fit(m, global_mean=float(rest.rating.astype(np.float64).mean()))
    expected = b.estimate(m.user_index(pairs.userId[fold0]), m.item_index(pairs.movieId[fold0]))
    np.testing.assert_allclose(x["base"].to_numpy()[fold0], expected, rtol=1e-5)
    # the targets are the rows' own ratings
    merged = pairs[["userId", "movieId"]].merge(train, on=["userId", "movieId"], how="left")
    np.testing.assert_array_equal(y, merged.rating.to_numpy())
    # some timestamps are hidden (dropout), the rest are the rating's own
    hidden = pairs.timestamp.isna().mean()
    assert 0.1 < hidden < 0.3
    shown = pairs.timestamp.notna()
    np.testing.assert_array_equal(
        pairs.timestamp[shown].to_numpy(), merged.timestamp[shown].to_numpy()
    )


def test_row_cap_limits_the_stacking_sample(sample):
    train, features = sample["train"], sample["features"]
    cfg = RatingModelConfig(
        mf=BiasedMFConfig(factors=5, iterations=2),
        knn=ItemKNNConfig(neighbors=0),
        stack_folds=2,
        max_gbm_rows=3000,
        gbm_max_iter=10,
        time_features=False,
    )
    model = RatingModel(cfg).fit(train, features)
    assert 2500 < model.n_stack_rows_ < 3500
    assert "knn" not in model.columns_ and "weekday" not in model.columns_
    assert np.isfinite(model.predict(sample["test"])).all()


def test_one_fold_holds_out_a_share_of_the_ratings(sample):
    """Blending (one fold): the sample is at most ``blend_share`` of the ratings, and its rows
    are described by statistics fitted on the other ratings only."""
    train, features = sample["train"], sample["features"]
    cfg = RatingModelConfig(
        mf=BiasedMFConfig(factors=5, iterations=2),
        knn=ItemKNNConfig(candidates=20),
        stack_folds=1,
        blend_share=0.25,
        gbm_max_iter=10,
        time_features=False,
    )
    x, y, pairs = RatingModel(cfg).stacking_rows(train, features)
    assert 0.2 * len(train) < len(y) < 0.3 * len(train)
    assert (pairs.fold == 0).all()
    for key, column in [("userId", "u_n"), ("movieId", "m_n")]:
        total = train[key].value_counts().reindex(pairs[key]).to_numpy()
        held = pairs.groupby(key)[key].transform("size").to_numpy()
        np.testing.assert_array_equal(x[column].to_numpy(), total - held)
    model = RatingModel(cfg).fit(train, features)
    assert model.n_stack_rows_ == len(y)
    assert np.isfinite(model.predict(sample["test"])).all()


def test_item_knn_finds_the_item_rated_alike():
    # items 0 and 1 get the same residuals from every user; item 2 the opposite
    import scipy.sparse as sp

    z = np.array([[1.0, 1.0, -1.0], [-0.5, -0.5, 0.5], [2.0, 2.0, -2.0], [-1.0, -1.0, 1.0]])
    knn = ItemKNN(ItemKNNConfig(neighbors=1, candidates=2, min_support=2, shrinkage=0.0)).fit(
        sp.csr_matrix(z)
    )
    assert knn.neighbours_[0, 0] == 1 and knn.similarities_[0, 0] == pytest.approx(1.0)
    assert knn.neighbours_[0, 1] == -1  # negative similarity is not a neighbour


@pytest.mark.parametrize("shrinkage, block_cells", [(0.0, 1), (10.0, 7 * 40), (100.0, 10_000)])
@pytest.mark.parametrize("many_positives", [0, 1, 10**9])  # rows ranked by top_positions or sorted
def test_item_knn_matches_a_dense_oracle(shrinkage, block_cells, many_positives, monkeypatch):
    # the block-wise computation over co-rated pairs gives each item the same neighbours, in the
    # same order, as the dense cosine-with-shrinkage over every item pair; blocks of one item
    # up to all of them
    import scipy.sparse as sp

    import pipeline.models.item_knn

    monkeypatch.setattr(pipeline.models.item_knn, "_MANY_POSITIVES", many_positives)
    rng = np.random.default_rng(3)
    dense = np.where(rng.random((60, 40)) < 0.3, rng.standard_normal((60, 40)), 0.0).astype(
        np.float32
    )
    dense[:, 5] = 0.0  # an item nobody rated: no neighbours
    cfg = ItemKNNConfig(candidates=6, min_support=2, shrinkage=shrinkage, block_cells=block_cells)
    knn = ItemKNN(cfg).fit(sp.csr_matrix(dense))

    rated = (dense != 0).astype(np.float32)
    keep = rated.sum(axis=0) >= 2
    norm = np.sqrt((dense**2).sum(axis=0))
    norm[norm == 0] = 1.0
    co = np.maximum(rated.T @ rated - 1.0, 0.0)
    sim = (
        (dense.T @ dense) / np.outer(norm, norm) * (co / (co + shrinkage) if shrinkage else co > 0)
    )
    sim[~keep, :] = 0.0
    sim[:, ~keep] = 0.0
    np.fill_diagonal(sim, 0.0)
    for i in range(dense.shape[1]):
        order = np.lexsort((np.arange(len(sim)), -sim[i]))
        best = [j for j in order if sim[i, j] > 1e-6][:6]
        got = knn.neighbours_[i][knn.neighbours_[i] >= 0]
        np.testing.assert_array_equal(got, best)
        np.testing.assert_allclose(knn.similarities_[i][: len(best)], sim[i, best], rtol=1e-4)
    assert (knn.neighbours_[5] == -1).all()


def test_item_knn_pair_budget_samples_each_long_row_as_drawn():
    # with a budget, the similarities are those of the residuals in which each user above the cap
    # keeps the cap entries of lowest seeded random priority (a dense oracle of that cut), over the
    # items with enough ratings; the users' ratings below the cap all count
    import scipy.sparse as sp

    from pipeline.models.item_knn import _pair_budget_cap

    rng = np.random.default_rng(5)
    dense = np.where(rng.random((50, 30)) < 0.4, rng.standard_normal((50, 30)), 0.0)
    dense[:4] = np.where(dense[:4] == 0, 0.5, dense[:4])  # four users rated every item
    dense[:, 7] = np.where(np.arange(50) < 1, 1.0, 0.0)  # an item below min_support
    z = sp.csr_matrix(dense)
    cfg = ItemKNNConfig(candidates=5, min_support=2, shrinkage=0.0, max_pairs=3_000, seed=11)
    cap = _pair_budget_cap(np.diff(z.indptr), cfg.max_pairs)
    assert cap is not None and cap < 30
    priority = np.random.default_rng(cfg.seed).random(z.nnz)
    cut = z.copy()
    for r in range(z.shape[0]):
        lo, hi = z.indptr[r], z.indptr[r + 1]
        if hi - lo > cap:
            cut.data[lo + np.argsort(priority[lo:hi], kind="stable")[cap:]] = 0.0
    cut.eliminate_zeros()

    knn = ItemKNN(cfg).fit(z)
    assert knn.user_cap_ == cap
    oracle = ItemKNN(ItemKNNConfig(candidates=5, min_support=2, shrinkage=0.0, max_pairs=None))
    # the oracle's item set is the budgeted fit's: items by their ratings before the cut
    kept = np.bincount(z.indices, minlength=z.shape[1]) >= 2
    oracle.fit(sp.csr_matrix(cut.toarray() * kept[None, :]))
    np.testing.assert_array_equal(knn.neighbours_[kept], oracle.neighbours_[kept])
    np.testing.assert_allclose(knn.similarities_, oracle.similarities_, rtol=1e-5, atol=1e-7)
    assert (knn.neighbours_[7] == -1).all()
    # drawn a few rows at a time, the priorities and the cut are the same
    from pipeline.models.item_knn import _similarity_input

    keep = np.flatnonzero(kept)
    whole = _similarity_input(z, keep, cap, cfg.seed, block=10**9)
    np.testing.assert_array_equal(whole.toarray(), cut.toarray()[:, keep].astype(np.float32))
    for block in (1, 37):
        part = _similarity_input(z, keep, cap, cfg.seed, block=block)
        np.testing.assert_array_equal(part.indptr, whole.indptr)
        np.testing.assert_array_equal(part.indices, whole.indices)
        np.testing.assert_array_equal(part.data, whole.data)

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from pipeline.data.splitting import SplitConfig, split_frame, split_ratings


def _ratings(n_users=40, per_user=12, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        movies = rng.choice(500, size=per_user if u > 2 else 3, replace=False)
        for j, m in enumerate(movies):
            rows.append((u, int(m), float(rng.integers(1, 11)) / 2, 1_000_000 + 1000 * u + j))
    return pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"])


@pytest.mark.parametrize("strategy", ["random", "user", "temporal"])
def test_partitioning_does_not_change_the_split(strategy):
    r = _ratings()
    cfg = SplitConfig(strategy=strategy, seed=7)
    _, te_pd = split_frame(r, cfg)
    split = split_ratings(dd.from_pandas(r.sample(frac=1, random_state=1), npartitions=5), cfg)
    te_dd = split.test.compute()

    def key(f):
        return sorted(zip(f.userId, f.movieId))

    assert key(te_pd) == key(te_dd)
    assert len(split.train.compute()) + len(te_dd) == len(r)


def test_user_holdout_counts_and_small_users_stay_in_train():
    r = _ratings()
    tr, te = split_frame(r, SplitConfig(strategy="user", test_fraction=0.2, min_user_ratings=5))
    counts = te.groupby("userId").size()
    assert set(counts.index) == set(range(3, 41))  # users 1 and 2 have 3 ratings: all in train
    assert (counts == 2).all()  # floor(0.2 * 12) = 2
    assert set(tr.userId) == set(r.userId)  # nobody is cold in test


def test_temporal_holds_out_each_users_latest():
    r = _ratings()
    tr, te = split_frame(r, SplitConfig(strategy="temporal"))
    last_train = tr.groupby("userId").timestamp.max()
    first_test = te.groupby("userId").timestamp.min()
    assert (first_test > last_train.reindex(first_test.index)).all()


def test_seed_changes_the_split_and_fraction_is_respected():
    r = _ratings(n_users=200)
    _, a = split_frame(r, SplitConfig(strategy="random", seed=1))
    _, b = split_frame(r, SplitConfig(strategy="random", seed=2))
    assert key_set(a) != key_set(b)
    assert abs(len(a) / len(r) - 0.2) < 0.03


def key_set(f):
    return set(zip(f.userId, f.movieId))


def test_bad_config_is_rejected():
    with pytest.raises(ValueError):
        SplitConfig(strategy="sideways")
    with pytest.raises(ValueError):
        SplitConfig(test_fraction=1.5)

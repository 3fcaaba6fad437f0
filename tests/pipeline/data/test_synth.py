"""Synthetic MovieLens-shaped data: layout, distributions, learnability, determinism."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from pipeline.data.movielens import load_movielens
from pipeline.data.synth import ML_GENRES, RATING_VALUES, SynthConfig, generate

CONFIG = SynthConfig(
    n_users=300, n_movies=4000, n_ratings=30_000, seed=11
)  # ~ml-latest-small density


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = generate(CONFIG, out)
    ratings = pd.read_csv(out / "ratings.csv")
    movies = pd.read_csv(out / "movies.csv")
    return out, summary, ratings, movies


def test_layout_loads_as_movielens(synth):
    out, summary, ratings, movies = synth
    assert {p.name for p in out.iterdir()} == {
        "ratings.csv",
        "movies.csv",
        "tags.csv",
        "links.csv",
        "README.txt",
    }
    assert (out / "ratings.csv").read_text().startswith("userId,movieId,rating,timestamp\n1,")
    readme = (out / "README.txt").read_text()
    assert "SYNTHETIC" in readme and '"n_ratings": 30000' in readme
    data = load_movielens(out)
    assert data.ratings.shape[0].compute() == CONFIG.n_ratings == summary["n_ratings"]
    assert len(data.movies) == CONFIG.n_movies and len(data.links) == CONFIG.n_movies
    assert data.movies["title"].str.fullmatch(r"Synthetic Movie \d+ \(\d{4}\)").all()
    assert (
        (data.movies["name"] + " (" + data.movies["year"].astype(str) + ")")
        .eq(data.movies["title"])
        .all()
    )
    assert set(data.movies["genres"].explode().dropna()) <= set(ML_GENRES)
    assert data.links["imdbId"].is_unique and data.links["tmdbId"].is_unique
    assert len(data.tags) > 0


def test_ratings_shape_uniqueness_and_ranges(synth):
    _, summary, ratings, movies = synth
    assert not ratings.duplicated(["userId", "movieId"]).any()
    assert ratings["movieId"].isin(movies["movieId"]).all()
    assert set(ratings["userId"]) == set(range(1, CONFIG.n_users + 1))
    assert set(ratings["rating"]) <= set(RATING_VALUES)
    assert abs(ratings["rating"].mean() - 3.5) < 0.1
    assert summary["rating_mean"] == pytest.approx(ratings["rating"].mean())
    hist = ratings["rating"].value_counts(normalize=True)
    assert hist.idxmax() == 4.0  # the MovieLens mode
    assert hist[[1.0, 2.0, 3.0, 4.0, 5.0]].sum() > 0.6  # whole stars dominate
    assert hist.get(0.5, 0) > 0 and hist.get(4.5, 0) > 0.04
    assert hist[5.0] > hist[1.0] > hist[0.5]


def test_long_tail_and_activity(synth):
    _, _, ratings, _ = synth
    per_movie = ratings["movieId"].value_counts().to_numpy()
    top_share = per_movie[: CONFIG.n_movies // 10].sum() / len(ratings)
    assert top_share > 0.6, top_share
    per_user = ratings["userId"].value_counts()
    assert per_user.min() >= 20
    assert per_user.max() > 5 * per_user.median()  # heavy-tailed activity
    assert per_user.max() <= CONFIG.max_user_fraction * CONFIG.n_movies


def test_timestamps_follow_the_calendar(synth):
    out, _, ratings, movies = synth
    years = pd.to_datetime(ratings["timestamp"], unit="s").dt.year
    assert years.between(CONFIG.start_year, CONFIG.end_year).all()
    release = ratings["movieId"].map(
        movies.set_index("movieId")["title"].str.extract(r"\((\d{4})\)$")[0].astype(int)
    )
    assert (years >= release).all()
    tags = pd.read_csv(out / "tags.csv")
    rated = set(zip(ratings["userId"], ratings["movieId"]))
    assert all(pair in rated for pair in zip(tags["userId"], tags["movieId"]))


def test_a_bias_baseline_learns_something(synth):
    _, _, ratings, _ = synth
    test = np.random.default_rng(0).random(len(ratings)) < 0.2
    train, held = ratings[~test], ratings[test]
    mu = train["rating"].mean()
    item = (train["rating"] - mu).groupby(train["movieId"]).sum() / (
        train.groupby("movieId").size() + 5
    )
    resid = train["rating"] - mu - train["movieId"].map(item)
    user = resid.groupby(train["userId"]).sum() / (train.groupby("userId").size() + 5)
    pred = mu + held["movieId"].map(item).fillna(0) + held["userId"].map(user).fillna(0)
    rmse_mean = np.sqrt(((held["rating"] - mu) ** 2).mean())
    rmse_bias = np.sqrt(((held["rating"] - pred) ** 2).mean())
    assert rmse_bias < 0.93 * rmse_mean, (rmse_bias, rmse_mean)


def _genre_share_variance(ratings: pd.DataFrame, genres: pd.Series) -> float:
    flags = genres.str.get_dummies().drop(columns="(no genres listed)", errors="ignore")
    per_rating = flags.reindex(ratings["movieId"]).to_numpy(float)
    profiles = pd.DataFrame(per_rating).groupby(ratings["userId"].to_numpy()).mean()
    return float(profiles.var().sum())


def test_genre_profiles_carry_user_taste(synth):
    """Users' genre mix varies far more than it would if genres were unrelated to taste."""
    _, _, ratings, movies = synth
    genres = movies.set_index("movieId")["genres"]
    real = _genre_share_variance(ratings, genres)
    shuffled = genres.sample(frac=1, random_state=0)
    null = _genre_share_variance(ratings, pd.Series(shuffled.to_numpy(), index=genres.index))
    assert real > 1.5 * null, (real, null)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    small = SynthConfig(n_users=60, n_movies=300, n_ratings=3000, seed=5, chunk_users=16)
    generate(small, tmp_path / "a")
    generate(small, tmp_path / "b")
    generate(replace(small, seed=6), tmp_path / "c")
    for name in ("ratings.csv", "movies.csv", "tags.csv", "links.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "ratings.csv").read_bytes() != (
        tmp_path / "c" / "ratings.csv"
    ).read_bytes()
    ratings = pd.read_csv(tmp_path / "a" / "ratings.csv")
    assert len(ratings) == 3000 and not ratings.duplicated(["userId", "movieId"]).any()


def test_impossible_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="n_ratings"):
        generate(SynthConfig(n_users=100, n_movies=500, n_ratings=1000), tmp_path)  # < 20 per user
    with pytest.raises(ValueError, match="n_ratings"):
        generate(SynthConfig(n_users=10, n_movies=100, n_ratings=5000), tmp_path)  # > cap per user

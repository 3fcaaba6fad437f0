import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from pipeline.features.tables import (
    EVIDENCE_TERMS,
    FeatureConfig,
    build_features,
    genre_dummies,
    movie_genres,
    movie_terms,
    movie_text,
    profile_from_ratings,
    rating_rows,
    refit_features,
    single_user_features,
    term_matrix,
    weekday,
)


def _movies():
    return pd.DataFrame(
        {
            "movieId": [10, 20, 30, 40],
            "title": ["A (1990)", "B (2000)", "C (2010)", "D"],
            "name": ["A", "B", "C", "D"],
            "year": pd.array([1990, 2000, 2010, None], dtype="Int64"),
            "genres": [["Comedy", "Drama"], ["Drama"], ["Action", "Comedy"], []],
        }
    )


def _ratings():
    # timestamps 100..: user 1 rates 10, 20; user 2 rates 10, 30, 20; user 3 rates 30
    return pd.DataFrame(
        {
            "userId": np.array([1, 1, 2, 2, 2, 3], np.int32),
            "movieId": np.array([10, 20, 10, 30, 20, 30], np.int32),
            "rating": np.array([4.0, 2.0, 5.0, 3.0, 1.0, 4.5], np.float32),
            "timestamp": np.array([100, 200, 300, 400, 500, 600], np.int64),
        }
    )


def _dask(frame, parts=2):
    return dd.from_pandas(frame, npartitions=parts)


def test_counts_means_and_shrunk_means_by_hand():
    f = build_features(_dask(_ratings()), _movies(), FeatureConfig(damping=2.0))
    mu = 19.5 / 6
    assert f.global_mean == pytest.approx(mu)
    u = f.users
    assert u.index.tolist() == [1, 2, 3]
    assert u["n_ratings"].tolist() == [2, 3, 1]
    assert u.loc[2, "mean"] == pytest.approx(3.0)
    assert u.loc[2, "shrunk_mean"] == pytest.approx((9.0 + 2 * mu) / (3 + 2))
    assert u.loc[1, "std"] == pytest.approx(1.0)  # population std of 4 and 2
    assert u.loc[2, "first_ts"] == 300 and u.loc[2, "last_ts"] == 500
    m = f.movies
    assert m.index.tolist() == [10, 20, 30, 40]  # unrated movie 40 included
    assert m.loc[30, "n_ratings"] == 2 and m.loc[30, "mean"] == pytest.approx(3.75)
    assert m.loc[30, "shrunk_mean"] == pytest.approx((7.5 + 2 * mu) / 4)
    assert m.loc[40, "n_ratings"] == 0 and np.isnan(m.loc[40, "mean"])
    assert m.loc[40, "shrunk_mean"] == pytest.approx(mu)
    assert m.loc[10, "popularity"] == pytest.approx(1.0)  # the most rated movie (2) -> 1
    assert m.loc[40, "popularity"] == 0.0
    assert m.loc[20, "year"] == 2000 and np.isnan(m.loc[40, "year"])
    assert f.genres == ["Action", "Comedy", "Drama"]
    assert m.loc[10, ["g_Action", "g_Comedy", "g_Drama"]].tolist() == [0, 1, 1]


def test_genre_dummies_accepts_pipe_strings_and_drops_no_genre_marker():
    movies = pd.DataFrame({"movieId": [1, 2], "genres": ["Drama|Sci-Fi", "(no genres listed)"]})
    d = genre_dummies(movies)
    assert d.columns.tolist() == ["g_Drama", "g_Sci-Fi"]
    assert d.to_numpy().tolist() == [[1, 1], [0, 0]]


def test_weekday():
    monday = pd.Timestamp("2024-01-01", tz="UTC").timestamp()
    days = weekday([monday, monday + 86_400 * 5 + 3600, 0, np.nan])
    assert days[:3].tolist() == [0, 5, 3]  # Monday, Saturday, 1970-01-01 Thursday
    assert np.isnan(days[3])


def test_genre_profile_definition_by_hand():
    f = build_features(_ratings(), _movies())
    # genres: Action, Comedy, Drama. Each rating r adds r to each of its movie's genres.
    # user 1: movie 10 (Comedy, Drama) r=4, movie 20 (Drama) r=2 -> mass [0, 4, 6] / 10
    # all:   Action 3+4.5, Comedy 4+5+3+4.5, Drama 4+2+5+1 -> [7.5, 16.5, 12] / 36
    share = np.array([0.0, 4.0, 6.0]) / 10
    prior = np.array([7.5, 16.5, 12.0]) / 36
    expected = (share - prior) / np.linalg.norm(share - prior)
    np.testing.assert_allclose(f.genre_profile.loc[1].to_numpy(), expected)
    np.testing.assert_allclose(f.genre_prior.to_numpy(), prior)
    np.testing.assert_allclose(np.linalg.norm(f.genre_profile.to_numpy(), axis=1), 1.0)


def test_profile_from_ratings_matches_training_profile():
    ratings = _ratings()
    f = build_features(_dask(ratings), _movies())
    for user in (1, 2, 3):
        mine = ratings[ratings.userId == user][["movieId", "rating"]]
        np.testing.assert_allclose(
            profile_from_ratings(mine, f), f.genre_profile.loc[user].to_numpy()
        )
    # unknown movies are ignored; no genre information gives the zero vector
    assert not profile_from_ratings(
        pd.DataFrame({"movieId": [999, 40], "rating": [5.0, 4.0]}), f
    ).any()


def _spread_votes():
    """A vote for movies 10, 20 and 30 (40 has none)."""
    return pd.DataFrame(
        {"vote_average": [7.3, 5.9, 8.1], "vote_count": [900.0, 40.0, 20.0]},
        index=pd.Index([10, 20, 30], name="movieId"),
    )


def test_single_user_features_reproduce_a_training_user():
    ratings = _ratings()
    f = build_features(_dask(ratings), _movies(), votes=_spread_votes())
    one = single_user_features(
        f, ratings[ratings.userId == 2][["movieId", "rating", "timestamp"]], user_id=2
    )
    cols = ["n_ratings", "mean", "shrunk_mean", "std", "first_ts", "last_ts"]
    cols += ["vote_mean", "vote_slope"]
    np.testing.assert_allclose(
        one.users.loc[2, cols].to_numpy(float), f.users.loc[2, cols].to_numpy(float)
    )
    pairs = pd.DataFrame({"userId": [2, 2], "movieId": [40, 10], "timestamp": [700, np.nan]})
    pd.testing.assert_frame_equal(rating_rows(pairs, one), rating_rows(pairs, f))


def test_refit_features_on_the_same_ratings_is_identical():
    ratings = _ratings()
    f = build_features(_dask(ratings), _movies())
    g = refit_features([ratings.iloc[:4], ratings.iloc[4:]], f)
    for a, b in [(f.users, g.users), (f.movies, g.movies), (f.genre_profile, g.genre_profile)]:
        pd.testing.assert_frame_equal(a, b)
    assert f.global_mean == g.global_mean


def test_rating_rows_known_unknown_and_missing_timestamp():
    f = build_features(_dask(_ratings()), _movies())
    monday_noon = pd.Timestamp("2024-01-01 12:00", tz="UTC").timestamp()
    pairs = pd.DataFrame(
        {"userId": [1, 99, 1], "movieId": [30, 10, 999], "timestamp": [monday_noon, 100, np.nan]}
    )
    rows = rating_rows(pairs, f)
    assert len(rows) == 3 and rows.index.equals(pairs.index)
    assert rows["weekday"].iloc[0] == 0 and np.isnan(rows["weekday"].iloc[2])
    assert rows["u_n"].tolist() == [2, 0, 2]
    assert rows["u_shrunk"].iloc[1] == pytest.approx(f.global_mean)  # unknown user
    assert rows["m_shrunk"].iloc[2] == pytest.approx(f.global_mean)  # unknown movie
    assert rows["m_n"].iloc[0] == 2 and rows["year"].iloc[0] == 2010
    assert rows["g_Action"].tolist() == [1, 0, 0]
    # affinity = profile . genres / number of genres
    p = f.genre_profile.loc[1]
    assert rows["affinity"].iloc[0] == pytest.approx((p["Action"] + p["Comedy"]) / 2, rel=1e-5)
    assert rows["affinity"].iloc[1] == 0.0 and rows["affinity"].iloc[2] == 0.0
    # without a timestamp column at all
    assert rating_rows(pairs[["userId", "movieId"]], f)["weekday"].isna().all()


def _votes():
    return pd.DataFrame(
        {"vote_average": [7.0, np.nan, 5.5], "vote_count": [900.0, 0.0, 20.0]},
        index=pd.Index([10, 20, 50], name="movieId"),
    )


def test_vote_taste_by_hand():
    ratings = _ratings()
    f = build_features(_dask(ratings), _movies(), FeatureConfig(vote_damping=0.5), _spread_votes())
    # user 2 rated 10 (7.3) 5.0, 30 (8.1) 3.0, 20 (5.9) 1.0
    v, r = np.array([7.3, 8.1, 5.9]), np.array([5.0, 3.0, 1.0])
    slope = ((r - r.mean()) * (v - v.mean())).sum() / (((v - v.mean()) ** 2).sum() + 0.5)
    assert f.users.loc[2, "vote_mean"] == pytest.approx(v.mean())
    assert f.users.loc[2, "vote_slope"] == pytest.approx(slope)
    # user 3 rated one voted movie: a mean, no slope; a user with no voted movie has neither
    assert f.users.loc[3, "vote_mean"] == pytest.approx(8.1)
    assert np.isnan(f.users.loc[3, "vote_slope"])
    bare = build_features(_dask(ratings), _movies())
    assert bare.users[["vote_mean", "vote_slope"]].isna().all().all()
    rows = rating_rows(pd.DataFrame({"userId": [2, 99], "movieId": [10, 10]}), f)
    assert rows["u_vote_slope"].iloc[0] == pytest.approx(slope, rel=1e-6)
    assert rows[["u_vote_mean", "u_vote_slope"]].iloc[1].isna().all()


def test_tmdb_votes_are_catalogue_facts_carried_by_refits_into_the_rows():
    ratings = _ratings()
    f = build_features(_dask(ratings), _movies(), votes=_votes())
    # movie 50 is not in the catalogue: not added; 30 and 40 have no vote
    assert f.movies.index.tolist() == [10, 20, 30, 40]
    assert f.movies.loc[10, ["vote_average", "vote_count"]].tolist() == [7.0, 900.0]
    assert f.movies.loc[[30, 40], "vote_average"].isna().all()
    g = refit_features([ratings.iloc[:2]], f)  # a fold's refit keeps them
    pd.testing.assert_frame_equal(
        g.movies[["vote_average", "vote_count"]], f.movies[["vote_average", "vote_count"]]
    )
    pairs = pd.DataFrame({"userId": [1, 1, 1, 99], "movieId": [10, 20, 30, 10]})
    rows = rating_rows(pairs, f)
    assert rows["tmdb_vote"].iloc[[0, 3]].tolist() == [7.0, 7.0]
    assert rows["tmdb_votes"].iloc[0] == pytest.approx(np.log1p(900.0))
    assert np.isnan(rows["tmdb_vote"].iloc[1]) and rows["tmdb_votes"].iloc[1] == 0.0
    assert rows[["tmdb_vote", "tmdb_votes"]].iloc[2].isna().all()
    # without TMDB the columns are there and empty (the rating model drops all-NaN columns)
    bare = rating_rows(pairs, build_features(_dask(ratings), _movies()))
    assert list(bare.columns) == list(rows.columns)
    assert bare[["tmdb_vote", "tmdb_votes"]].isna().all().all()


def test_movie_text_joins_genres_tags_keywords_collection_and_companies():
    tags = pd.DataFrame(
        {
            "userId": [1, 2, 2],
            "movieId": [10, 10, 20],
            "tag": ["Funny", "funny ", "dark"],
            "timestamp": [1, 2, 3],
        }
    )
    links = pd.DataFrame(
        {"movieId": [10, 20], "imdbId": [1, 2], "tmdbId": pd.array([100, None], dtype="Int64")}
    )
    metadata = pd.DataFrame(
        {
            "tmdbId": [100],
            "keywords": [["time travel", "robot"]],
            "collection": ["Back Collection"],
            "companies": [["Studio A", "Robot"]],
        }
    )
    text = movie_text(_movies(), tags, links, metadata)
    assert text.loc[10] == "comedy drama funny time travel robot back collection studio a"
    assert text.loc[20] == "drama dark"
    assert text.loc[40] == ""
    # metadata with keywords only (a bundle built before the collection and companies)
    text = movie_text(_movies(), None, links, metadata[["tmdbId", "keywords"]])
    assert text.loc[10] == "comedy drama time travel robot"
    no_collection = metadata.assign(collection=[None])
    assert movie_terms(_movies(), None, links, no_collection)[10] == [
        *["comedy", "drama", "time travel", "robot", "studio a"]
    ]
    # a reason's evidence leaves the companies out
    evidence = movie_terms(_movies(), None, links, metadata, EVIDENCE_TERMS)
    assert evidence[10] == ["comedy", "drama", "time travel", "robot", "back collection"]


def test_term_matrix_one_row_per_movie_in_order():
    m = term_matrix(np.array([30, 99, 10]), movie_terms(_movies()))
    assert m.shape == (3, 3)  # action, comedy, drama; movie 99 is unknown: an empty row
    np.testing.assert_array_equal(m.toarray(), [[1, 1, 0], [0, 0, 0], [0, 1, 1]])
    assert term_matrix(np.array([40]), movie_terms(_movies())).shape == (1, 0)


# --- leakage -------------------------------------------------------------------------------

CUTOFF = 1_000  # the test's split: ratings at or after CUTOFF are held out


def _full_ratings():
    rng = np.random.default_rng(7)
    n = 400
    return pd.DataFrame(
        {
            "userId": rng.integers(1, 30, n).astype(np.int32),
            "movieId": rng.choice([10, 20, 30, 40], n).astype(np.int32),
            "rating": (rng.integers(1, 11, n) / 2).astype(np.float32),
            "timestamp": rng.integers(0, 2 * CUTOFF, n).astype(np.int64),
        }
    )


def _features_of(all_ratings: pd.DataFrame, parts: int):
    train = all_ratings[all_ratings.timestamp < CUTOFF]
    return build_features(
        dd.from_pandas(train.reset_index(drop=True), npartitions=parts),
        _movies(),
        votes=_spread_votes(),
    )


def _fingerprint(f):
    frames = [f.users, f.movies, f.genre_profile]
    return [
        pd.util.hash_pandas_object(x).to_numpy().tobytes() + x.to_numpy(np.float64).tobytes()
        for x in frames
    ] + [np.float64(f.global_mean).tobytes(), f.genre_prior.to_numpy().tobytes()]


def test_held_out_ratings_cannot_change_any_training_feature():
    full = _full_ratings()
    held = np.flatnonzero(full.timestamp.to_numpy() >= CUTOFF)
    reference = _fingerprint(_features_of(full, parts=2))

    changed = full.copy()
    changed.loc[held[:20], "rating"] = 5.0 - changed.loc[held[:20], "rating"] + 0.5
    appended = pd.concat(
        [
            full,
            pd.DataFrame(
                {
                    "userId": np.int32([1, 500]),
                    "movieId": np.int32([10, 777]),
                    "rating": np.float32([0.5, 5.0]),
                    "timestamp": [CUTOFF, 5 * CUTOFF],
                }
            ),
        ],
        ignore_index=True,
    )
    deleted = full.drop(index=held[::2])
    shuffled = full.sample(frac=1.0, random_state=3)  # other row order and partitioning
    for variant, parts in [(changed, 3), (appended, 2), (deleted, 4), (shuffled, 5)]:
        assert _fingerprint(_features_of(variant, parts)) == reference

    # control: the same edit on a training rating does change the features
    train_rows = np.flatnonzero(
        (full.timestamp.to_numpy() < CUTOFF) & (full.movieId.to_numpy() == 10)
    )
    control = full.copy()
    control.loc[train_rows[0], "rating"] = 5.5 - control.loc[train_rows[0], "rating"]
    control_print = _fingerprint(_features_of(control, parts=2))
    assert control_print != reference
    assert control_print[0] != reference[0] and control_print[1] != reference[1]  # users, movies
    assert control_print[2] != reference[2]  # genre profiles
    assert control_print[3] != reference[3]  # global mean


def test_movie_genres_reads_the_genres_column_as_the_pipeline_does():
    movies = pd.DataFrame(
        {"movieId": [1, 2, 3], "genres": ["Action|Sci-Fi", "(no genres listed)", ["Drama"]]}
    )
    assert movie_genres(movies) == {1: ["Action", "Sci-Fi"], 2: [], 3: ["Drama"]}

"""The request-time model (contract.live_model) and the feedback replay (pipeline.data.feedback) on
tiny hand-made data."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from contract.live_model import LiveModel, UserSignals, recommend_live
from pipeline.data.feedback import replay, with_feedback
from pipeline.features.matrix import RatingMatrix
from pipeline.models.mf import BiasedMF, BiasedMFConfig
from pipeline.models.topn import TopNConfig, TopNRecommender, sparsify_weights
from pipeline.publish.live_export import build_live_model

GENRES = ("Action", "Comedy", "Drama")


@pytest.fixture(scope="module")
def fitted():
    """Two taste groups over 40 movies: users 0-29 like movies 0-19 (Action), 30-59 movies 20-39 (Comedy)."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        own = range(0, 20) if u < 30 else range(20, 40)
        for m in rng.choice(list(own), 12, replace=False):
            rows.append((u + 1, int(m) + 1, float(rng.choice([4.0, 4.5, 5.0])), 1_000_000 + u))
        for m in rng.choice(40, 2, replace=False):
            rows.append((u + 1, int(m) + 1, 2.0, 1_000_000 + u))
    frame = pd.DataFrame(
        rows, columns=["userId", "movieId", "rating", "timestamp"]
    ).drop_duplicates(["userId", "movieId"])
    matrix = RatingMatrix.from_frame(frame)
    topn = TopNRecommender(TopNConfig(min_item_ratings=1, calibration_users=60)).fit(matrix)
    mf = BiasedMF(BiasedMFConfig(factors=4, iterations=5)).fit(matrix)
    catalogue = {
        m: (["Action"] if m <= 20 else ["Comedy"]) + (["Drama"] if m % 5 == 0 else [])
        for m in range(1, 41)
    }
    catalogue[41] = ["Drama"]  # in the catalogue, never rated
    return topn, mf, matrix.item_ids, catalogue


@pytest.fixture(scope="module")
def model(fitted) -> LiveModel:
    topn, mf, movie_ids, catalogue = fitted
    return build_live_model(topn.cut(10), mf, movie_ids, GENRES, catalogue)


def signals(ratings=None, liked=(), disliked=(), hidden=(), genres=(), boost=None) -> UserSignals:
    return UserSignals(
        dict(ratings or {}), set(liked), set(disliked), set(hidden), tuple(genres), boost
    )


def test_store_round_trip_gives_the_same_lists(model):
    docs = list(model.to_docs())
    assert docs[0]["_id"] == "meta" and all(len(d.get("data", b"")) <= 4 << 20 for d in docs)
    again = LiveModel.from_docs(reversed(docs))
    sig = signals({1: 5.0, 2: 4.0, 25: 2.0})
    a, b = recommend_live(model, sig, 10), recommend_live(again, sig, 10)
    assert a.movie_ids.tolist() == b.movie_ids.tolist()
    np.testing.assert_allclose(a.predicted, b.predicted)
    assert again.genre_masks([41, 99]).tolist() == [4, 0]
    assert (
        model.similar_lists([1]) is None and again.similar_lists([1]) is None
    )  # built without lists


def test_similar_lists_are_kept_and_survive_the_store(fitted, model):
    similar = {1: [(2, 0.91234), (3, 0.5)], 20: [(19, 0.25)], 41: []}
    topn, mf, movie_ids, _ = fitted
    built = build_live_model(
        topn.cut(10),
        mf,
        movie_ids,
        GENRES,
        dict(zip(model.catalogue_ids.tolist(), [["Drama"]] * len(model.catalogue_ids))),
        similar=similar,
    )
    again = LiveModel.from_docs(list(built.to_docs()))
    for m in (built, again):
        lists = m.similar_lists([1, 20, 41, 2, 99, 1])
        assert list(lists) == [1, 20, 41, 2, 99]
        assert [x for x, _ in lists[1]] == [2, 3] and lists[1][0][1] == pytest.approx(
            0.9123, abs=1e-6
        )
        assert lists[20] == ((19, 0.25),) and lists[41] == lists[2] == lists[99] == ()


def test_from_docs_refuses_incomplete_models(model):
    docs = [d for d in model.to_docs() if d["_id"] != "topn.items:0"]
    with pytest.raises(KeyError):
        LiveModel.from_docs(docs)
    with pytest.raises(ValueError, match="no live model"):
        LiveModel.from_docs([d for d in model.to_docs() if d["_id"] != "meta"])


def test_lists_follow_the_users_taste_and_exclude_what_they_reacted_to(model):
    action_fan = recommend_live(
        model, signals({1: 5.0, 2: 5.0, 3: 4.5}, hidden=[4], disliked=[5]), 10
    )
    assert set(action_fan.movie_ids.tolist()) <= set(
        range(6, 21)
    )  # Action, unseen, not hidden/disliked
    comedy_fan = recommend_live(model, signals({21: 5.0, 22: 5.0}), 10)
    assert set(comedy_fan.movie_ids.tolist()) <= set(range(23, 41))
    assert np.all((action_fan.predicted >= 0.5) & (action_fan.predicted <= 5.0))


def test_a_like_pulls_the_liked_movies_similar_movies_up(model):
    base = signals({21: 5.0, 22: 5.0})
    before = recommend_live(model, base, 30).movie_ids.tolist()
    target = before[-1]  # the comedy fan's weakest pick
    liked = signals({21: 5.0, 22: 5.0}, liked=[3], boost={3: 1.0})
    after = recommend_live(
        model, liked, 30, neighbors={3: [(target, 0.9), (7, 0.8)]}
    ).movie_ids.tolist()
    assert after.index(target) < before.index(target)
    disliked = signals({21: 5.0, 22: 5.0}, disliked=[3], boost={3: -1.0})
    pushed = recommend_live(
        model, disliked, 30, neighbors={3: [(before[0], 0.9)]}
    ).movie_ids.tolist()
    assert before[0] not in pushed[:1]


def test_a_new_user_with_only_genres_gets_those_genres(model):
    comedy = recommend_live(model, signals(genres=["Comedy"]), 10)
    assert set(comedy.movie_ids.tolist()) <= set(range(21, 41))
    action = recommend_live(model, signals(genres=["Action"]), 10)
    assert set(action.movie_ids.tolist()) <= set(range(1, 21))


def test_a_user_with_no_rated_movie_gets_no_long_tail_picks(model):
    """With popularity as the affinity, the list is popularity order (within the stated genres'
    preference), not a head of it followed by the tail re-rank's least discounted movies."""
    from dataclasses import replace

    from contract.live_model import ScoringConfig

    sig = signals(genres=["Comedy"])
    cold = recommend_live(model, sig, 12)
    comedy = model.columns(np.arange(21, 41))
    counts = dict(zip(range(21, 41), model.counts[comedy].tolist()))
    ids = cold.movie_ids.tolist()
    assert [counts[m] for m in ids] == sorted((counts[m] for m in ids), reverse=True)
    assert sorted(counts.values(), reverse=True)[:12] == [counts[m] for m in ids]
    with_tail = recommend_live(model, sig, 12, config=replace(ScoringConfig(), cold_tail=True))
    assert (
        with_tail.movie_ids.tolist()[: model.topn.rules.head_size]
        == ids[: model.topn.rules.head_size]
    )
    assert with_tail.movie_ids.tolist() != ids


def test_many_boost_sources_share_the_boost_of_full_boosts(model):
    from dataclasses import replace

    from contract.live_model import ScoringConfig

    target, sources = 25, list(range(1, 11))  # ten liked movies whose similar list is `target`
    neighbors = {s: [(target, 0.9)] for s in sources}

    def boost_of(n_sources: int, config: ScoringConfig) -> float:
        def score(boost):
            out = recommend_live(
                model, signals({30: 5.0}, boost=boost), 40, neighbors=neighbors, config=config
            )
            return float(out.scores[out.movie_ids.tolist().index(target)])

        return score(dict.fromkeys(sources[:n_sources], 1.0)) - score({})

    config = ScoringConfig()
    assert config.full_boosts == 5
    one = boost_of(1, config)
    assert one == pytest.approx(config.similar_boost, rel=1e-5)
    assert boost_of(5, config) == pytest.approx(5 * one, rel=1e-5)
    assert boost_of(10, config) == pytest.approx(5 * one, rel=1e-5)  # ten share five's boost
    uncapped = replace(config, full_boosts=10**9)
    assert boost_of(10, uncapped) == pytest.approx(10 * one, rel=1e-5)


def test_sparsify_keeps_the_largest_magnitudes_per_row():
    b = np.array(
        [[0.0, 3.0, -5.0, 1.0], [2.0, 0.0, 0.5, -0.1], [1.0, 1.0, 0.0, 0.0], [0.1, 0.2, 0.3, 0.0]],
        np.float32,
    )
    s = sparsify_weights(b, 2).toarray()
    np.testing.assert_array_equal(s[0], [0, 3, -5, 0])
    np.testing.assert_array_equal(s[1], [2, 0, 0.5, 0])
    assert (s != 0).sum(axis=1).max() <= 2


def test_replay_turns_events_into_training_ratings():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    at = [t0 + timedelta(seconds=i) for i in range(10)]
    events = {
        7: [
            {"type": "rating", "movieId": 1, "rating": 3.0, "at": at[0]},
            {"type": "like", "movieId": 1, "at": at[1]},  # an explicit rating wins over a like
            {"type": "rating", "movieId": 1, "rating": 4.5, "at": at[2]},  # the last rating wins
            {"type": "like", "movieId": 2, "at": at[3]},
            {"type": "dislike", "movieId": 3, "at": at[4]},
            {"type": "dislike", "movieId": 2, "at": at[5]},  # a later reaction replaces a like
            {"type": "not_interested", "movieId": 4, "at": at[6]},
            {"type": "rating", "movieId": "5", "rating": 4.0, "at": at[7]},
        ],  # malformed: skipped
        8: [],
    }
    out = replay(events.items()).sort_values("movieId")
    assert out[["userId", "movieId", "rating"]].values.tolist() == [
        [7, 1, 4.5],
        [7, 2, 1.0],
        [7, 3, 1.0],
    ]
    assert out["timestamp"].tolist() == [
        int(at[2].timestamp()),
        int(at[5].timestamp()),
        int(at[4].timestamp()),
    ]
    assert replay([]).empty


def test_feedback_replaces_data_set_ratings_and_drops_unknown_movies():
    ratings = dd.from_pandas(
        pd.DataFrame(
            {
                "userId": [1, 1, 2],
                "movieId": [10, 11, 10],
                "rating": [2.0, 3.0, 4.0],
                "timestamp": [5, 6, 7],
            }
        ),
        npartitions=2,
    )
    fb = pd.DataFrame(
        {
            "userId": [1, 9, 9],
            "movieId": [10, 10, 999],
            "rating": [5.0, 4.0, 3.0],
            "timestamp": [100, 101, 102],
        }
    )
    merged, counts = with_feedback(ratings, fb, [10, 11])
    rows = sorted(map(tuple, merged.compute()[["userId", "movieId", "rating"]].values.tolist()))
    assert rows == [(1, 10, 5.0), (1, 11, 3.0), (2, 10, 4.0), (9, 10, 4.0)]
    assert counts == {"rows": 2, "users": 2, "dropped_unknown_movie": 1}


def test_many_users_scored_together_get_their_own_lists_exactly(model):
    from contract.live_model import recommend_live_many

    neighbors = {1: [(25, 0.9), (26, 0.5)], 21: [(3, 0.8)]}
    users = [
        signals({1: 5.0, 2: 4.5, 3: 5.0}, boost={1: 1.0}),
        signals(genres=["Comedy"]),  # cold: no long-tail picks, scored apart
        signals({21: 5.0, 22: 4.0}, liked={24}, disliked={5}, hidden={23}, boost={21: -1.0}),
        signals({1: 2.0, 30: 4.5}, genres=["Action"]),
    ]
    for because in (True, False):
        together = recommend_live_many(model, users, 12, [neighbors] * len(users), because=because)
        for sig, got in zip(users, together):
            alone = recommend_live(model, sig, 12, neighbors, because=because)
            assert got.movie_ids.tolist() == alone.movie_ids.tolist()
            np.testing.assert_array_equal(got.scores, alone.scores)
            np.testing.assert_array_equal(got.because, alone.because)
            np.testing.assert_array_equal(got.predicted, alone.predicted)
    assert recommend_live_many(model, [], 5) == []


def test_the_newest_ratings_count_more(model):
    """The same ratings, newest first in two orders: an action fan who has just rated comedies
    gets more comedy than one who rated them long ago; without an order, the two agree."""
    ratings = {1: 5.0, 2: 5.0, 3: 5.0, 4: 5.0, 21: 5.0, 22: 5.0}
    comedy_last = replace(signals(ratings), newest_first=(21, 22, 1, 2, 3, 4))
    comedy_first = replace(signals(ratings), newest_first=(1, 2, 3, 4, 21, 22))

    def comedies(sig) -> int:
        return sum(m > 20 for m in recommend_live(model, sig, 10).movie_ids.tolist())

    assert comedies(comedy_last) > comedies(comedy_first)
    plain = recommend_live(model, signals(ratings), 10).movie_ids
    np.testing.assert_array_equal(
        recommend_live(model, replace(signals(ratings), newest_first=()), 10).movie_ids, plain
    )


def test_the_list_reads_the_taste_of_users_with_enough_ratings(model):
    """The fold-in's p_u multiplies the affinity (TopNConfig.taste_weight) from
    ScoringConfig.taste_min_ratings ratings, likes and dislikes on; below, the list is the one
    without it."""
    from contract.live_model import ScoringConfig

    assert model.topn.taste_items is not None and model.topn.rules.taste_weight > 0
    few = signals({1: 5.0, 21: 4.0})
    many = signals({1: 5.0, 2: 4.5, 3: 5.0}, liked={4}, disliked={22})
    reads, never = ScoringConfig(taste_min_ratings=3), ScoringConfig(taste_min_ratings=10**6)

    def scores(sig, config):
        return recommend_live(model, sig, 10, config=config).scores

    overlapping = signals({1: 5.0, 2: 3.0}, liked={2, 3}, disliked={3, 4})
    for sig in (few, many, overlapping):  # the gate counts the fold-in's rows
        assert sig.n_fold_in_rows() == len(sig.fold_in_rows()[0])
    np.testing.assert_array_equal(scores(few, reads), scores(few, never))
    assert not np.allclose(scores(many, reads), scores(many, never))

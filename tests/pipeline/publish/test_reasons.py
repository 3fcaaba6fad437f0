""" "Because you liked X" reasons from the similar-movie lists (issue 4).

* ``similar_seeds`` / ``neighbour_matrix`` on hand-built cases;
* ``user_docs`` on a tiny fitted model: a similar-list seed wins, everything else keeps the
  top-N model's seed;
* a pipeline run on the sample: every because-you-liked reason that a similar list can give
  comes from the best such list, and most reasons do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from api.services.live import rated_entries
from contract import schema
from pipeline.features.matrix import RatingMatrix
from pipeline.features.tables import build_features
from pipeline.models.similarity import neighbour_matrix, similar_seeds
from pipeline.models.topn import TopNConfig, TopNRecommender
from pipeline.publish.documents import user_docs
from pipeline.train import FittedModels, recommend_blocks
from tests.support.pipeline_sample import pipeline_store, sample_database


def _csr(rows: list[list[tuple[int, float]]], n_cols: int) -> sp.csr_matrix:
    r = [i for i, row in enumerate(rows) for _ in row]
    c = [j for row in rows for j, _ in row]
    v = [x for row in rows for _, x in row]
    m = sp.csr_matrix((np.array(v, np.float32), (r, c)), shape=(len(rows), n_cols))
    m.sort_indices()
    return m


# ------------------------------------------------------------------ similar_seeds
N = 10
# similar lists by column: entry (i, j) = score of j in i's list
LISTS = {
    0: [(4, 0.5), (5, 0.3)],
    1: [(4, 0.7)],
    2: [(5, 0.9), (4, 0.95)],  # only ever rated low below: never a seed
    3: [(5, 0.3)],
    7: [(6, 0.8)],  # 6 is in 7's list, not the other way round
}
NEIGHBOURS = _csr([LISTS.get(i, []) for i in range(N)], N)


def test_seed_is_the_liked_movie_whose_list_scores_it_highest():
    # user 0: liked 0 (5.0), 1 (4.0), 3 (4.0); disliked 2 (2.0); 6 (5.0) liked
    ratings = _csr([[(0, 5.0), (1, 4.0), (2, 2.0), (3, 4.0), (6, 5.0)]], N)
    ts = np.array([100, 200, 300, 50, 10])
    items = np.array([[4, 5, 7, 8, -1]])
    seeds = similar_seeds(NEIGHBOURS, ratings, ts, np.array([0]), items, 3.5)
    # 4: in 0's list (0.5) and 1's (0.7) -> 1; 2 scores it higher but was rated 2.0
    # 5: 0.3 in both 0's and 3's lists -> the higher rating (0 at 5.0 over 3 at 4.0)
    # 7: only 7's list holds 6, the liked movie's (6's) list does not hold 7 -> none
    # 8: in no list -> none; -1: empty slot
    assert seeds.tolist() == [[1, 0, -1, -1, -1]]


def test_ties_on_score_and_rating_go_to_the_more_recent():
    ratings = _csr([[(0, 4.0), (3, 4.0)], [(0, 4.0), (3, 4.0)]], N)
    ts = np.array([100, 500, 900, 400])  # user 0: 3 is newer; user 1: 0 is newer
    seeds = similar_seeds(NEIGHBOURS, ratings, ts, np.array([0, 1]), np.array([[5], [5]]), 3.5)
    assert seeds.tolist() == [[3], [0]]
    # without timestamps: the lower column
    assert similar_seeds(
        NEIGHBOURS, ratings, None, np.array([0, 1]), np.array([[5], [5]]), 3.5
    ).tolist() == [[0], [0]]


def test_threshold_rows_and_blocks():
    ratings = _csr([[(1, 3.5)], [(1, 3.0)], [(0, 5.0), (1, 5.0)]], N)
    items = np.array([[4, 5], [4, 5], [5, 4]])
    # 3.5 is enough; 3.0 is not; rows are looked up, not assumed to be 0..n-1
    assert similar_seeds(NEIGHBOURS, ratings, None, np.array([0, 1, 2]), items, 3.5).tolist() == [
        [1, -1],
        [-1, -1],
        [0, 1],
    ]
    assert similar_seeds(
        NEIGHBOURS, ratings, None, np.array([2, 0]), items[[2, 0]], 3.5
    ).tolist() == [[0, 1], [1, -1]]
    assert similar_seeds(NEIGHBOURS, ratings, None, np.array([-1]), items[:1], 3.5).tolist() == [
        [-1, -1]
    ]
    assert similar_seeds(NEIGHBOURS, ratings, None, np.array([1]), items[1:2], 3.0).tolist() == [
        [1, -1]
    ]
    # taken a few users at a time: the same seeds as all at once
    rows = np.array([2, 0, 1, -1, 2])
    many = items[[2, 0, 1, 0, 2]]
    whole = similar_seeds(NEIGHBOURS, ratings, None, rows, many, 3.5)
    assert whole.tolist() == [[0, 1], [1, -1], [-1, -1], [-1, -1], [0, 1]]
    for user_block in (1, 2, 3):
        parts = similar_seeds(NEIGHBOURS, ratings, None, rows, many, 3.5, user_block=user_block)
        assert parts.tolist() == whole.tolist()


def test_neighbour_matrix_maps_ids_to_columns():
    item_ids = np.array([10, 20, 30, 40])
    similar = {10: [(20, 0.5), (99, 0.4), (40, 0.1)], 99: [(10, 0.9)], 30: [], 40: [(10, 0.2)]}
    m = neighbour_matrix(similar, item_ids)
    assert m.shape == (4, 4)
    np.testing.assert_allclose(
        m.toarray(), [[0, 0.5, 0, 0.1], [0, 0, 0, 0], [0, 0, 0, 0], [0.2, 0, 0, 0]]
    )
    assert neighbour_matrix({}, item_ids).nnz == 0


# ------------------------------------------------------------------ user_docs
class _ConstantRating:
    """Stands in for the gradient-boosting rating model: this test is about reasons only."""

    def predict(self, pairs: pd.DataFrame, users=None) -> np.ndarray:
        return np.full(len(pairs), 3.0, np.float32)

    def users(self, user_ids):
        return None

    def without_users(self):
        return self


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(7)
    rows = []
    for u in range(1, 41):
        for m in rng.choice(np.arange(1, 31), 12, replace=False):
            rows.append(
                (u, int(m), float(rng.choice([2.0, 3.0, 3.5, 4.0, 4.5, 5.0])), 1000 + len(rows))
            )
    ratings = pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"])
    movies = pd.DataFrame(
        {
            "movieId": np.arange(1, 31),
            "title": [f"M{m}" for m in range(1, 31)],
            "genres": ["Drama"] * 30,
        }
    )
    matrix = RatingMatrix.from_frame(ratings)
    models = FittedModels(
        build_features(ratings, movies),
        matrix,
        _ConstantRating(),
        TopNRecommender(TopNConfig(min_item_ratings=1, calibration_users=64)).fit(matrix),
    )
    labels = pd.Series(0, index=matrix.user_ids)
    clusters = pd.DataFrame({"top_movies": [[{"movieId": 1}]]}, index=[0])
    titles = {m: f"M{m}" for m in range(1, 31)}
    return models, labels, clusters, titles, ratings


def _reasons(docs) -> dict[tuple[int, int], dict]:
    return {(d["_id"], t["movieId"]): t["reason"] for d in docs for t in d["top"]}


def test_user_docs_take_the_similar_seed_and_fall_back_to_the_model_seed(tiny):
    models, labels, clusters, titles, ratings = tiny
    base = _reasons(user_docs(models, labels, clusters, titles, "v", 10))
    # the fallback is today's behaviour: the top-N model's seed
    for u, items, _, because in recommend_blocks(models, models.matrix.user_ids, 10):
        for user, row, seeds in zip(u, items, because):
            for m, b in zip(row, seeds):
                if m >= 0 and b >= 0:
                    assert base[(int(user), int(m))]["movieId"] == b

    user = 5
    mine = ratings[ratings.userId == user]
    liked = mine[mine.rating >= 3.5].sort_values("timestamp")
    disliked = mine[mine.rating < 3.5]
    assert len(liked) >= 2 and len(disliked) >= 1
    top = [m for (u, m) in base if u == user]
    target = top[3]
    model_seed = base[(user, target)].get("movieId")
    seed = int(next(m for m in liked.movieId if m != model_seed))
    other = int(next(m for m in liked.movieId if m not in (seed, model_seed)))
    similar = {
        seed: [(target, 0.4)],
        other: [(target, 0.3)],  # lower score: loses
        int(disliked.movieId.iloc[0]): [(target, 0.9)],  # rated below 3.5: never a seed
        999: [(target, 1.0)],  # not a rated movie
    }
    docs = list(user_docs(models, labels, clusters, titles, "v", 10, similar=similar))
    new = _reasons(docs)
    assert new[(user, target)] == {
        "kind": "because_you_liked",
        "movieId": seed,
        "text": f"Because you liked M{seed}",
    }
    # for every user with target in the list: the best-scoring liked movie whose list holds it,
    # else the unchanged model reason; nothing else moves
    expected = dict(base)
    for u, m in base:
        if m == target:
            liked_u = set(ratings.movieId[(ratings.userId == u) & (ratings.rating >= 3.5)])
            scored = [(nb[0][1], i) for i, nb in similar.items() if i in liked_u]
            if scored:
                best = max(scored)[1]
                expected[(u, m)] = {
                    "kind": "because_you_liked",
                    "movieId": best,
                    "text": f"Because you liked M{best}",
                }
    assert new == expected
    assert new != base
    # a raised threshold removes the seed: back to the model's reason
    strict = _reasons(
        user_docs(models, labels, clusters, titles, "v", 10, similar=similar, min_rating=5.5)
    )
    assert strict == base


# ------------------------------------------------------------------ pipeline run
@pytest.fixture(scope="module")
def published(sample_run):
    with sample_database(sample_run, "test_reasons_run") as (db, config, _):
        yield pipeline_store(db), config


def test_pipeline_reasons_come_from_the_similar_lists(published):
    store, config = published
    threshold = config.topn.because_min_rating
    similar = {
        d["_id"]: {s["movieId"]: s["score"] for s in d["similar"]}
        for d in store.collection(schema.MOVIES).find({}, {"similar": 1})
    }
    shares, n_reasons, n_from_lists = [], 0, 0
    for doc in store.collection(schema.USERS).find({}, {"top": 1, "ratings_packed": 1}):
        rated = {r["movieId"]: (r["rating"], r["timestamp"]) for r in rated_entries(doc)}
        liked = {m: v for m, v in rated.items() if v[0] >= threshold}
        mine = 0
        reasons = [t for t in doc["top"] if t["reason"]["kind"] == "because_you_liked"]
        for t in reasons:
            seed, j = t["reason"]["movieId"], t["movieId"]
            assert seed in liked, (doc["_id"], t)
            candidates = {i: similar[i][j] for i in liked if j in similar.get(i, {})}
            if candidates:  # a similar list can explain it: the best one does
                assert seed in candidates, (doc["_id"], j, seed, candidates)
                assert candidates[seed] == max(candidates.values())
                mine += 1
        n_reasons += len(reasons)
        n_from_lists += mine
        if reasons:
            shares.append(mine / len(reasons))
    assert n_reasons > 0.9 * 50 * len(shares)  # nearly every entry has a because reason
    assert n_from_lists / n_reasons > 0.6, n_from_lists / n_reasons
    assert np.median(shares) > 0.5  # most reasons of a typical user

"""The per-user phase on a real ``distributed`` cluster (issue 11: past one machine).

A ``LocalCluster`` with two worker processes, reached by its address as a remote cluster would
be: the user documents are built and written by tasks on the workers (their process ids, never
the driver's), they are the documents this process would build, and a block written twice (a
retried task) neither fails nor doubles a user.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pandas as pd
import pytest

from pipeline.features.matrix import RatingMatrix
from pipeline.features.tables import build_features
from pipeline.models.rating import RatingModel, RatingModelConfig
from pipeline.models.topn import TopNConfig, TopNRecommender
from pipeline.publish.store import StoreConfig
from pipeline.publish.user_lists import (
    UserListInputs,
    iter_user_docs,
    write_block,
    write_user_lists,
)
from pipeline.train import FittedModels


@pytest.fixture(scope="module")
def inputs() -> UserListInputs:
    rng = np.random.default_rng(3)
    rows = []
    for u in range(1, 61):
        for m in rng.choice(np.arange(1, 41), 15, replace=False):
            rows.append(
                (
                    u,
                    int(m),
                    float(rng.choice([1.0, 2.0, 3.0, 3.5, 4.0, 4.5, 5.0])),
                    10_000 + len(rows),
                )
            )
    ratings = pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"])
    movies = pd.DataFrame(
        {
            "movieId": np.arange(1, 41),
            "title": [f"M{m} (2000)" for m in range(1, 41)],
            "genres": [["Drama"], ["Comedy"]] * 20,
        }
    )
    matrix = RatingMatrix.from_frame(ratings)
    matrix.timestamps = ratings.sort_values(["userId", "movieId"])["timestamp"].to_numpy(np.int64)
    features = build_features(ratings, movies)
    rating = RatingModel(RatingModelConfig(stack_folds=2, gbm_max_iter=10)).fit(ratings, features)
    topn = TopNRecommender(TopNConfig(min_item_ratings=1, calibration_users=64)).fit(matrix)
    models = FittedModels(features, matrix, rating, topn)
    labels = pd.Series(np.arange(len(matrix.user_ids)) % 2, index=matrix.user_ids)
    clusters = pd.DataFrame({"top_movies": [[{"movieId": 1}], [{"movieId": 2}]]}, index=[0, 1])
    similar = {m: [((m % 40) + 1, 0.5)] for m in range(1, 41)}
    titles = {m: f"M{m} (2000)" for m in range(1, 41)}
    return UserListInputs.from_models(
        models, labels, clusters, titles, "v-test", 10, similar=similar
    )


def test_user_documents_are_built_and_written_on_the_workers(inputs, dask_cluster, mongo_url, db):
    from distributed import Client

    with Client(dask_cluster.scheduler_address) as client:  # by address, as for --scheduler
        workers = set(client.run(os.getpid).values())
        assert len(workers) == 2 and os.getpid() not in workers
        expected = {d["_id"]: d for d in iter_user_docs(inputs)}
        handed = copy.copy(inputs)
        written = []
        out = write_user_lists(
            client,
            handed,
            mongo_url,
            db.name,
            "users_staged",
            StoreConfig().client_options(),
            block=8,
            on_written=written.append,
        )
    assert (
        handed.items.topn is None and inputs.items.topn is not None
    )  # taken over: this process keeps no copy of the top-N model
    assert out["users"] == sum(written) == inputs.n_users == 60
    assert set(out["pids"]) <= workers and os.getpid() not in out["pids"]
    assert len(out["pids"]) == 2  # 8 blocks over two single-threaded workers: both took some
    stored = {d["_id"]: d for d in db["users_staged"].find()}
    assert stored == expected  # the documents this process would have built, byte for byte


def test_a_block_gets_from_the_item_side_what_the_whole_models_give(inputs):
    """What every worker holds (no user's data) and what one task brings (its block) give the
    lists and predictions of the whole models."""
    items, block = inputs.item_side(), inputs.block(20, 40)
    assert items.topn.user_ratings_ is None and items.rating.collaborative_.state_ is None
    assert block.matrix.user_ids.tolist() == inputs.matrix.user_ids[20:40].tolist()
    whole = inputs.items.topn.recommend(np.arange(20, 40), n=10)
    lists = items.topn.recommend_matrix(block.matrix.csr, n=10, timestamps=block.matrix.timestamps)
    assert block.matrix.timestamps is not None  # the recency weights are in both
    for a, b in zip(lists, whole):
        np.testing.assert_array_equal(a, b)
    pairs = pd.DataFrame(
        {"userId": np.repeat(block.matrix.user_ids, 40), "movieId": np.tile(np.arange(1, 41), 20)}
    )
    np.testing.assert_array_equal(
        items.rating.predict(pairs, users=block.users), inputs.items.rating.predict(pairs)
    )


def test_a_retried_block_neither_fails_nor_doubles_users(inputs, mongo_url, db):
    items = inputs.item_side()
    options = StoreConfig().client_options()
    first = write_block(items, inputs.block(0, 20), mongo_url, db.name, "users_staged", options)
    again = write_block(
        items, inputs.block(10, 30), mongo_url, db.name, "users_staged", options
    )  # overlaps the first
    assert first["users"] == again["users"] == 20
    assert db["users_staged"].count_documents({}) == 30
    assert sorted(db["users_staged"].distinct("_id")) == inputs.matrix.user_ids[:30].tolist()


def test_evaluation_top_n_on_the_workers_is_the_same_as_in_process(inputs, dask_cluster):
    """The evaluation's top-N lists (the other per-user work of a run) as tasks on the workers
    are the lists of this process, and those are the top-N model's own lists; a user the
    matrix does not know gets the popular movies."""
    from distributed import Client

    from pipeline.evaluation.holdout import top_n_frame

    models = FittedModels(
        inputs.items.rating.features_, inputs.matrix, inputs.items.rating, inputs.items.topn
    )
    users = np.r_[inputs.matrix.user_ids[::3], 9_999]
    here = top_n_frame(models, users, 5, block=4)
    with Client(dask_cluster.scheduler_address) as client:
        there = top_n_frame(models, users, 5, client, block=4)
    pd.testing.assert_frame_equal(here, there)
    cols, scores, _ = inputs.items.topn.recommend(inputs.matrix.user_index(users[:-1]), n=5)
    own = here[here.userId != 9_999]
    np.testing.assert_array_equal(own.movieId.to_numpy(), inputs.matrix.item_ids[cols[cols >= 0]])
    np.testing.assert_array_equal(own.score.to_numpy(), scores[cols >= 0])
    assert here[here.userId == 9_999].movieId.tolist() == models.popular_items(5).tolist()


def test_popularity_baseline_skips_each_users_rated_movies(inputs):
    from pipeline.evaluation.holdout import popularity_lists

    models = FittedModels(
        inputs.items.rating.features_, inputs.matrix, inputs.items.rating, inputs.items.topn
    )
    users = np.r_[inputs.matrix.user_ids[:7], 9_999]
    got = popularity_lists(models, users, 4, extra=20)
    popular = models.popular_items(24).tolist()
    for u in users:
        r = inputs.matrix.user_index([u])[0]
        seen = set(inputs.matrix.item_ids[inputs.matrix.row(r)[0]].tolist()) if r >= 0 else set()
        expected = [m for m in popular if m not in seen][:4]
        assert got[got.userId == u].sort_values("rank").movieId.tolist() == expected
        assert got[got.userId == u]["rank"].tolist() == list(range(1, len(expected) + 1))


def test_evaluation_predictions_on_the_workers_are_the_same_as_in_process(inputs, dask_cluster):
    import dask.dataframe as dd
    from distributed import Client

    from pipeline.evaluation.holdout import evaluate_ratings

    models = FittedModels(
        inputs.items.rating.features_, inputs.matrix, inputs.items.rating, inputs.items.topn
    )
    rng = np.random.default_rng(5)
    test = pd.DataFrame(
        {
            "userId": rng.choice(np.r_[inputs.matrix.user_ids, 9_999], 200),
            "movieId": rng.integers(1, 45, 200),
            "rating": rng.choice([1.0, 3.0, 4.5], 200),
            "timestamp": 20_000 + np.arange(200),
        }
    )
    test = dd.from_pandas(test, npartitions=4)
    here, rows_here = evaluate_ratings(models, test)
    with Client(dask_cluster.scheduler_address) as client:  # blocks of 7 users: 9 tasks
        there, rows_there = evaluate_ratings(models, test, client, block_users=7)
    assert here.keys() == there.keys()
    for name in here:  # the rows come in another order: sums may differ in the last bits
        assert there[name] == (
            pytest.approx(here[name], rel=1e-9) if isinstance(here[name], dict) else here[name]
        )
    key = ["rating", "prediction", "baseline", "user_ratings"]
    pd.testing.assert_frame_equal(
        rows_here.sort_values(key, ignore_index=True),
        rows_there.sort_values(key, ignore_index=True),
    )
    assert len(rows_there) == 200

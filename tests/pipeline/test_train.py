"""Fitting every model of a run on a real ``distributed`` cluster: the refit lets the workers drop
their persisted copy of the ratings once the rating matrix is built, and fits the same models."""

from __future__ import annotations

import time
from dataclasses import replace

import dask.dataframe as dd
import numpy as np
import pandas as pd

from pipeline.config import PipelineConfig
from pipeline.models.rating import RatingModelConfig
from pipeline.models.topn import TopNConfig
from pipeline.progress import Steps
from pipeline.train import fit_models


def _ratings() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(5)
    rows = [
        (u, int(m), float(rng.choice([1.0, 2.5, 3.0, 4.0, 4.5, 5.0])), 1_000 + 7 * u + int(m))
        for u in range(1, 81)
        for m in rng.choice(np.arange(1, 51), 12, replace=False)
    ]
    ratings = pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"]).astype(
        {"userId": "int32", "movieId": "int32", "rating": "float32", "timestamp": "int64"}
    )
    movies = pd.DataFrame(
        {
            "movieId": np.arange(1, 51),
            "title": [f"M{m} (1999)" for m in range(1, 51)],
            "genres": [["Drama"], ["Comedy", "Drama"]] * 25,
        }
    )
    return ratings, movies


def _stored(client) -> set:
    """The keys whose data the workers hold (their own view, not the scheduler's)."""
    return set().union(*client.run(lambda dask_worker: set(dask_worker.data.keys())).values())


def test_the_refit_releases_the_persisted_ratings(dask_cluster):
    from distributed import Client, futures_of, wait

    ratings, movies = _ratings()
    config = replace(
        PipelineConfig(),
        rating=RatingModelConfig(stack_folds=2, gbm_max_iter=10),
        topn=TopNConfig(min_item_ratings=1, calibration_users=64),
    )
    with Client(dask_cluster.scheduler_address) as client:
        fitted = {}
        for release in (False, True):
            persisted = dd.from_pandas(
                ratings, npartitions=3 + release
            ).persist()  # keys of its own
            keys = {f.key for f in futures_of(persisted)}
            wait(futures_of(persisted))
            models = fit_models(
                persisted,
                movies,
                config,
                Steps(),
                with_clusters=False,
                with_similar=False,
                release_ratings=release,
            )
            if release:  # the workers free cancelled data as the scheduler's message reaches them
                deadline = time.monotonic() + 30
                while keys & _stored(client) and time.monotonic() < deadline:
                    time.sleep(0.05)
            assert bool(keys & _stored(client)) is not release, release
            fitted[release] = models
            del persisted
    pairs = ratings.head(200)
    assert np.array_equal(fitted[False].rating.predict(pairs), fitted[True].rating.predict(pairs))
    assert np.array_equal(
        fitted[False].topn.recommend(np.arange(10), n=5)[0],
        fitted[True].topn.recommend(np.arange(10), n=5)[0],
    )

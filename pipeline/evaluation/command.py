"""``python -m pipeline evaluate``: train on any split and write outputs the peer harness scores."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from pipeline.data.movielens import load_movielens
from pipeline.data.tmdb import bundle_or_none
from pipeline.evaluation.holdout import top_n_frame
from pipeline.evaluation.metrics import mae, rmse, topn_metrics
from pipeline.progress import Steps
from pipeline.runtime import current_client, dask_client
from pipeline.train import fit_models

log = logging.getLogger("pipeline")

RATING_DTYPES = {"userId": "int32", "movieId": "int32", "rating": "float32", "timestamp": "int64"}


def read_ratings_csv(path: str, blocksize: str = "64MB"):
    import dask.dataframe as dd

    return dd.read_csv(path, dtype=RATING_DTYPES, blocksize=blocksize)[list(RATING_DTYPES)]


def evaluate_files(
    train_csv: str,
    test_csv: str,
    predictions_out: str | None,
    recommendations_out: str | None,
    movies_from: str,
    k: int,
    config,
) -> dict:
    steps = Steps()
    with dask_client(config.dask):
        train = read_ratings_csv(train_csv).persist()
        catalogue = load_movielens(movies_from, config.data)
        models = fit_models(
            train,
            catalogue.movies,
            config,
            steps,
            links=catalogue.links,
            metadata=bundle_or_none(config.tmdb),
            with_clusters=False,
            with_similar=False,
        )
        test = pd.read_csv(test_csv, dtype={"userId": "int64", "movieId": "int64"})
        out = {}
        if predictions_out:
            with steps.step("predict test rows"):
                pred = models.rating.predict(
                    test[["userId", "movieId", "timestamp"]]
                    if "timestamp" in test
                    else test[["userId", "movieId"]]
                )
            pd.DataFrame(
                {"userId": test.userId, "movieId": test.movieId, "prediction": np.round(pred, 5)}
            ).to_csv(predictions_out, index=False)
            if "rating" in test:
                out["rmse"], out["mae"] = rmse(test.rating, pred), mae(test.rating, pred)
        if recommendations_out:
            with steps.step("top-N for test users"):
                recs = top_n_frame(models, np.unique(test.userId.to_numpy()), k, current_client())
            recs[["userId", "rank", "movieId"]].to_csv(recommendations_out, index=False)
            if "rating" in test:
                out.update(topn_metrics(recs, test, k, 4.0, len(models.matrix.item_ids)))
    out["timings"] = steps.timings
    log.info("own metrics (score with eval_split.py for the peer comparison): %s", out)
    return out

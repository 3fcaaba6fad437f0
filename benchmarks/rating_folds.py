"""What fewer stacking folds, or fewer boosting rows, cost the rating model, on data you choose
(the large-data profile).

    python -m benchmarks.rating_folds --dataset DIR [--folds 5,2,1] [--gbm-rows 1000000,500000]

Holds out a random 10% of the ratings of ``DIR`` (a MovieLens layout, e.g. from ``python -m
pipeline synth``; seed 42), fits the pipeline's rating model on the rest once per stacking-fold
count and boosting-row cap (``RatingModelConfig.max_gbm_rows``; default: the config's), in this
process, so the fit times compare, and prints the held-out RMSE and MAE and the fit time of
each. ``PipelineConfig.for_size`` uses 1 fold and 500,000 rows above ``large_data_ratings``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd


def main(argv=None) -> int:
    from pipeline.config import PipelineConfig
    from pipeline.data.movielens import load_movielens
    from pipeline.data.tmdb import bundle_or_none, movie_votes
    from pipeline.features.tables import build_features
    from pipeline.models.rating import RatingModel

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", required=True)
    p.add_argument("--folds", default="5,2,1")
    p.add_argument("--gbm-rows", default=None, help="boosting-row caps, comma-separated")
    args = p.parse_args(argv)

    ratings = pd.read_csv(Path(args.dataset) / "ratings.csv")
    held = np.random.default_rng(42).random(len(ratings)) < 0.1
    train, test = ratings[~held].reset_index(drop=True), ratings[held]
    catalogue = load_movielens(args.dataset)
    pipeline_config = PipelineConfig()
    config = pipeline_config.rating
    votes = movie_votes(catalogue.links, bundle_or_none(pipeline_config.tmdb))
    features = build_features(train, catalogue.movies, pipeline_config.features, votes)
    print(f"{len(ratings):,} ratings, {held.sum():,} held out")
    caps = [int(r) for r in args.gbm_rows.split(",")] if args.gbm_rows else [config.max_gbm_rows]
    print("| stacking folds | boosting rows at most | RMSE | MAE | fit s |")
    print("|---|---|---|---|---|")
    for folds in [int(f) for f in args.folds.split(",")]:
        for cap in caps:
            t = time.perf_counter()
            model = RatingModel(replace(config, stack_folds=folds, max_gbm_rows=cap)).fit(
                train, features
            )
            seconds = time.perf_counter() - t
            err = model.predict(test[["userId", "movieId"]]) - test["rating"].to_numpy()
            print(
                f"| {folds} | {cap:,} | {np.sqrt(np.mean(err**2)):.4f} | {np.mean(np.abs(err)):.4f} | {seconds:.1f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

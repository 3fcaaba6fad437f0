"""What the large-data profile's sparse top-N weights cost in accuracy, and what they save.

    python -m benchmarks.topn_sparse --dataset DIR [--keep 200,500,1000,2000/500]

Splits the ratings of ``DIR`` (a MovieLens layout, e.g. from ``python -m pipeline synth``) per
user, 20% of each user's ratings held out (seed 42, the pipeline's user split), fits the top-N
model once on the training part, and scores the held-out part (NDCG@10, coverage@10, with the
pipeline's own metric code) with every weight of ``B`` and with each item's ``keep`` largest
(``TopNConfig.score_neighbors``; the tail calibration is refitted for each); ``R/P`` keeps ``R``
of the rating model's and ``P`` of the positive model's (``TopNConfig.positive_neighbors``).
Also prints the time to score every test user and the weights' size, in the same run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main(argv=None) -> int:
    from pipeline.config import PipelineConfig
    from pipeline.evaluation import metrics
    from pipeline.features.matrix import RatingMatrix
    from pipeline.models.topn import TopNRecommender, sparsify_weights

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", required=True)
    p.add_argument("--keep", default="200,500,1000")
    args = p.parse_args(argv)

    ratings = pd.read_csv(
        Path(args.dataset) / "ratings.csv", usecols=["userId", "movieId", "rating"]
    )
    rng = np.random.default_rng(42)
    held = rng.random(len(ratings)) < 0.2
    train, test = ratings[~held], ratings[held]
    matrix = RatingMatrix.from_frame(train)
    config = PipelineConfig().topn
    t = time.perf_counter()
    dense = TopNRecommender(config).fit(matrix)
    print(
        f"{len(ratings):,} ratings, {len(dense.items_):,} model items; dense fit {time.perf_counter() - t:.1f} s"
    )
    users = np.unique(test.userId.to_numpy())
    rows = matrix.user_index(users)
    users, rows = users[rows >= 0], rows[rows >= 0]
    print("| weights per item | NDCG@10 | coverage@10 | scoring s | weights MiB |")
    print("|---|---|---|---|---|")
    for keep in [None, *args.keep.split(",")]:
        model = dense
        if keep is not None:
            per_model = [int(k) for k in keep.split("/")]
            per_model += per_model[-1:] * (len(dense.weights_) - len(per_model))
            model = dense.with_weights(
                [sparsify_weights(b, k) for b, k in zip(dense.weights_, per_model)]
            )
        t = time.perf_counter()
        cols, _, _ = model.recommend(rows, n=10, exclude_seen=True)
        seconds = time.perf_counter() - t
        recs = pd.DataFrame(
            {
                "userId": np.repeat(users, 10),
                "rank": np.tile(np.arange(1, 11), len(users)),
                "movieId": np.where(cols >= 0, matrix.item_ids[np.maximum(cols, 0)], -1).ravel(),
            }
        )
        m = metrics.topn_metrics(recs[recs.movieId >= 0], test, 10, 4.0, len(matrix.item_ids))
        size = (
            sum(
                b.data.nbytes + b.indices.nbytes + b.indptr.nbytes
                if hasattr(b, "indptr")
                else b.nbytes
                for b in model.weights_
            )
            / 2**20
        )
        print(
            f"| {keep or 'all'} | {m['ndcg@10']:.4f} | {m['coverage@10']:.4f} | {seconds:.1f} | {size:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Do a user's latest ratings deserve more weight when their list is scored?

    python -m benchmarks.recency [--boosts 0,0.5,1,2] [--scales 0.05,0.1,0.25]

The top-N model (``PipelineConfig().topn``) with ``recency_boost`` and ``recency_scale`` set: each
of the user's ratings enters both EASE inputs with the weight
``1 + boost * exp(-(1 - p) / scale)``, ``p`` the rating's recency among the user's ratings (1 = the
newest; ``contract.scoring.recency``), so the newest ones count up to ``1 + boost`` times as much
and the rest of the history still counts. ``boost`` 0 weighs every rating alike (the lists before
recency weights were served); the weights ``B`` do not depend on it.

Carves of the peer harness's reference user-holdout training part (``benchmarks.operating_point``):
``random`` (the targets' protocol: a random 20% of each user's ratings) and ``temporal`` (each
user's latest 20%: a service predicts the future from the past). Each setting at the served list
(``TopNConfig``'s head and tail power) and at one further into the tail (head 5, tail power 0.8).
Then the settings that the carves chose, and the served one, on two test splits: the reference
user-holdout split, and the temporal split of the whole ml-latest-small (each user's latest 20%,
the rule of ``benchmarks.temporal``).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import replace

import numpy as np
import pandas as pd

from benchmarks._util import SHARED, bundled_topn, random_carve
from benchmarks.operating_point import list_metrics, temporal_carve
from pipeline.config import PipelineConfig
from pipeline.features.matrix import RatingMatrix
from pipeline.models.mf import BiasedMF
from pipeline.models.topn import TopNRecommender

K = 10
WIDER = (5, 0.8)  # a list further into the tail than the served one


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    split = SHARED / "bench" / "splits" / "ml-latest-small" / "user-holdout"
    p.add_argument("--split", default=str(split))
    p.add_argument("--ratings", default=str(SHARED / "data" / "ml-latest-small" / "ratings.csv"))
    p.add_argument("--boosts", default="0,0.5,1,2")
    p.add_argument("--scales", default="0.05,0.1,0.25")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    cfg = PipelineConfig().topn
    lists = ((cfg.head_size, cfg.tail_calibration_power), WIDER)
    train = pd.read_csv(f"{args.split}/train.csv")
    train = train.sort_values(["userId", "movieId"], kind="stable").reset_index(drop=True)
    served = (cfg.recency_boost, cfg.recency_scale)
    settings = sorted(
        {(0.0, 0.0), served}
        | {
            (float(b), float(s))
            for b, s in itertools.product(args.boosts.split(","), args.scales.split(","))
            if float(b) > 0
        }
    )

    chosen = {(0.0, 0.0), served}
    for carve, held in (("random", random_carve(train)), ("temporal", temporal_carve(train))):
        score = scorer(train[~held], train[held], cfg, train.movieId.nunique())
        curve = {s: [score(*s, h, pw) for h, pw in lists] for s in settings}
        print(f"\n### The {carve} carve ({int(held.sum()):,} ratings held out)\n")
        heads = " | ".join(f"head {h}, tail {pw}: NDCG@10 / coverage@10" for h, pw in lists)
        print(f"| boost | scale | {heads} |")
        print("|---|---|" + "---|" * len(lists))
        for (b, s), points in curve.items():
            cells = " | ".join(f"{n:.4f} / {c:.4f}" for n, c in points)
            mark = " (served)" if (b, s) == served else ""
            print(f"| {b:g}{mark} | {s:g} | {cells} |")
        chosen.add(max(settings, key=lambda st: curve[st][0][0]))  # best at the served list

    ratings = pd.read_csv(args.ratings)
    ratings = ratings.sort_values(["userId", "movieId"], kind="stable").reset_index(drop=True)
    later = temporal_carve(ratings)
    tests = (
        ("user-holdout test split", train, pd.read_csv(f"{args.split}/test.csv")),
        ("temporal split", ratings[~later], ratings[later]),
    )
    print("\n### Test splits, at the settings the carves chose (best NDCG@10 at the served list)\n")
    print(
        "| split | boost | scale | " + " | ".join(f"head {h}, tail {pw}" for h, pw in lists) + " |"
    )
    print("|---|---|---|" + "---|" * len(lists))
    for name, part, held in tests:
        score = scorer(part, held, cfg, part.movieId.nunique())
        for b, s in sorted(chosen):
            cells = " | ".join(
                f"{n:.4f} / {c:.4f}" for n, c in (score(b, s, h, pw) for h, pw in lists)
            )
            mark = " (served)" if (b, s) == served else ""
            print(f"| {name} | {b:g}{mark} | {s:g} | {cells} |")
    print(f"\n{time.perf_counter() - t0:.0f} s in all")
    return 0


def scorer(train: pd.DataFrame, test: pd.DataFrame, cfg, catalogue: int):
    """``score(boost, scale, head, power) -> (NDCG@10, coverage@10)`` of the test users' lists
    from the model fitted on ``train`` with those recency settings; coverage over ``catalogue``
    movies (the whole training part's, also on a carve: ``benchmarks.operating_point``)."""
    matrix = RatingMatrix.from_frame(train)
    users = np.sort(test.userId.unique())
    users = users[np.isin(users, matrix.user_ids)]
    rows = np.searchsorted(matrix.user_ids, users)
    mf = BiasedMF(PipelineConfig().rating.mf).fit(matrix)
    fitted: dict[tuple[float, float], TopNRecommender] = {}

    def score(boost: float, scale: float, head: int, power: float) -> tuple[float, float]:
        if (boost, scale) not in fitted:
            settings = replace(cfg, recency_boost=boost, recency_scale=scale or cfg.recency_scale)
            fitted[boost, scale] = bundled_topn(matrix, settings, mf)
        model = fitted[boost, scale].with_list(head, cfg.head_popularity_power, power)
        return list_metrics(users, model.recommend(rows, n=K)[0], matrix, test, catalogue)

    return score


if __name__ == "__main__":
    sys.exit(main())

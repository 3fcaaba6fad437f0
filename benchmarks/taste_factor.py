"""Does the rating model's taste term sharpen the top-N list? Each user's top-N affinity for a
movie times ``exp(gamma * p_u . q_i)`` (or ``exp(gamma * r_ui)``, the whole predicted rating),
from the biased matrix factorisation (``pipeline.models.mf.BiasedMF``, ``PipelineConfig().rating
.mf``) fitted on the same ratings: the top-N models estimate what a user will rate, the factor how
they will like it.

    python -m benchmarks.taste_factor [--variants 0.25:all:taste,0.5:head:taste,...]

A variant is ``gamma:where:term``: ``where`` ``all`` multiplies the affinity that both the head
and the tail rank, ``head`` only the head's (the tail ranks the plain affinity, less the head's
movies); ``term`` ``taste`` is ``p_u . q_i``, ``rating`` the predicted rating clipped to 0.5-5.
Negative affinities are divided by the factor, so it never lifts a movie the model scores below
zero. The tail's calibration quantiles stay those of the plain affinity.

The top-N model (``PipelineConfig().topn``, fitted without the factorisation, so that each
variant's factor is the only one; the served model has ``TopNConfig.taste_weight`` 0.25 of
``taste``, chosen here) and the factorisation are fitted once per carve of the
peer harness's reference user-holdout training part (``benchmarks.operating_point``'s four:
random 43, 44, 45 and temporal; coverage over the whole training part's movies); each variant
re-ranks with heads of 5-8 and tail powers 0.8-1.2, and the table gives the best mean NDCG@10 at
mean coverage@10 >= 0.13 and >= 0.15 with each carve's figure at that point. The test split is
not read: an experiment to choose on, not a product path.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

import numpy as np
import pandas as pd

from benchmarks._util import SHARED, bundled_content, random_carve
from benchmarks.operating_point import RANDOM_CARVES, K, list_metrics, temporal_carve
from pipeline.config import PipelineConfig
from pipeline.features.matrix import RatingMatrix
from pipeline.models.mf import BiasedMF
from pipeline.models.topn import TopNRecommender

LISTS = list(itertools.product((5, 6, 7, 8), (0.8, 0.9, 1.0, 1.2)))
FLOORS = (0.13, 0.15)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--split", default=str(SHARED / "bench" / "splits" / "ml-latest-small" / "user-holdout")
    )
    p.add_argument(
        "--variants",
        default="0:all:taste,0.25:all:taste,0.5:all:taste,0.5:head:taste,0.25:all:rating",
    )
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    train = pd.read_csv(f"{args.split}/train.csv")
    train = train.sort_values(["userId", "movieId"], kind="stable").reset_index(drop=True)
    catalogue = train.movieId.nunique()
    variants = [
        (float(g), where, term)
        for g, where, term in (v.split(":") for v in args.variants.split(","))
    ]
    carves = [(f"random {s}", random_carve(train, seed=s)) for s in RANDOM_CARVES]
    carves.append(("temporal", temporal_carve(train)))
    points: dict[tuple, list] = {}
    for _, held in carves:
        part, target = train[~held], train[held]
        matrix = RatingMatrix.from_frame(part)
        topn = TopNRecommender(PipelineConfig().topn).fit(matrix, bundled_content(matrix.item_ids))
        mf = BiasedMF(PipelineConfig().rating.mf).fit(matrix)
        users = np.sort(target.userId.unique())
        users = users[np.isin(users, matrix.user_ids)]
        rows = np.searchsorted(matrix.user_ids, users)
        terms = taste_terms(mf, rows, topn.items_)
        for (gamma, where, term), (head, power) in itertools.product(variants, LISTS):
            factor = np.exp(gamma * terms[term]).astype(np.float32)
            items = lists(topn, rows, factor, head, power, where == "head")
            points.setdefault((gamma, where, term, head, power), []).append(
                list_metrics(users, items, matrix, target, catalogue)
            )
    mean = {k: np.mean(v, axis=0) for k, v in points.items()}
    names = " | ".join(name for name, _ in carves)
    print("\n### Best mean NDCG@10 at each coverage floor (carves: NDCG@10 / coverage@10)\n")
    print(f"| gamma | multiplies | term | coverage >= | head, power | mean | {names} |")
    print("|---|---|---|---|---|---|" + "---|" * len(carves))
    for variant, floor in itertools.product(variants, FLOORS):
        ok = [k for k in mean if k[:3] == variant and mean[k][1] >= floor]
        if not ok:
            continue
        best = max(ok, key=lambda k: mean[k][0])
        cells = " | ".join(f"{n:.4f} / {c:.4f}" for n, c in points[best])
        print(
            f"| {variant[0]:g} | {variant[1]} | {variant[2]} | {floor:.2f} | {best[3]}, {best[4]} "
            f"| {mean[best][0]:.4f} / {mean[best][1]:.4f} | {cells} |"
        )
    print(f"\n{time.perf_counter() - t0:.0f} s in all")
    return 0


def taste_terms(mf: BiasedMF, rows: np.ndarray, items: np.ndarray) -> dict[str, np.ndarray]:
    """Users (``rows``) x model items: ``p_u . q_i`` and the clipped predicted rating, each less
    its mean (a constant factor per table, which changes no list)."""
    taste = mf.user_factors_[rows] @ mf.item_factors_[items].T
    rating = np.clip(
        mf.global_mean_ + mf.user_bias_[rows, None] + mf.item_bias_[None, items] + taste, 0.5, 5.0
    )
    return {"taste": taste - taste.mean(), "rating": rating - rating.mean()}


def lists(
    topn: TopNRecommender,
    rows: np.ndarray,
    factor: np.ndarray,
    head: int,
    power: float,
    head_only: bool,
    block: int = 256,
) -> np.ndarray:
    """Top-``K`` model columns of the users ``rows`` (``factor``: one row per user) with a head of
    ``head`` and tail power ``power``."""
    out = np.full((len(rows), K), -1, np.int64)
    for start in range(0, len(rows), block):
        b = rows[start : start + block]
        f = factor[start : start + block]

        def times(table: np.ndarray, f=f) -> None:
            table *= np.where(table > 0, f, 1 / f)

        if head_only:
            first = _ranked(
                topn.with_list(head, topn.config.head_popularity_power, power), b, times, head
            )
            drop = first

            def rest(table: np.ndarray, drop=drop) -> None:
                r = np.repeat(np.arange(len(drop)), drop.shape[1])
                c = drop.ravel()
                table.reshape(len(drop), -1)[r[c >= 0], topn.col_to_model_[c[c >= 0]]] = -np.inf

            second = _ranked(
                topn.with_list(0, topn.config.head_popularity_power, power), b, rest, K - head
            )
            out[start : start + block] = np.hstack([first, second])
        else:
            out[start : start + block] = _ranked(
                topn.with_list(head, topn.config.head_popularity_power, power), b, times, K
            )
    return out


def _ranked(model: TopNRecommender, rows: np.ndarray, adjust, n: int) -> np.ndarray:
    x = model.user_ratings_[rows]
    return model.scorer.lists(
        x, n, True, None, adjust, because=False, recency=model._recency_of(rows, x)
    )[0]


if __name__ == "__main__":
    sys.exit(main())

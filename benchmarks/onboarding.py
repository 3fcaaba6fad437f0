"""A new user's first list: onboarding replayed for users the models never saw.

    python -m benchmarks.onboarding [--users 150] [--seed 7]

1. The peer harness's reference user-holdout split of ml-latest-small (seed 42). ``--users``
   users with at least 20 training ratings and a relevant held-out rating (>= 4) are drawn
   (``--seed``) and every rating of theirs is taken out of the training part: they are new.
2. Fitted on the rest, as the pipeline publishes them: the top-N model (the pipeline's
   configuration), the rating model's matrix factorisation, and the live model
   (``build_live_model``, ``PipelineConfig.live_neighbors`` weights per movie).
3. Each new user answers the questionnaire from their own training ratings: the 3 genres with
   the most rating mass, and ``k`` rated movies (k = 0, 3, 5, 10). Today the page lets the user
   search for any movie to rate, so the answers here are the user's ``k`` most popular rated
   movies (what people find and recognise first), with their own ratings. The first list comes
   from the request-time path (``contract.live_model.recommend_live``, with the signals
   ``api.services.live.signals`` makes of a profile). Compared in the same run: popularity (the
   most rated movies the user did not answer about) and the same user with their whole training
   history through the same path.
4. Scored on the user's held-out ratings with ``pipeline.evaluation.metrics.topn_metrics`` (the
   harness's conventions): NDCG@10, HR@10.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd

from api.services.live import signals
from benchmarks._util import SHARED
from contract.live_model import recommend_live
from pipeline.config import PipelineConfig
from pipeline.evaluation.metrics import topn_metrics
from pipeline.features.matrix import RatingMatrix
from pipeline.features.tables import genre_vocabulary
from pipeline.models.mf import BiasedMF
from pipeline.models.topn import TopNRecommender
from pipeline.publish.live_export import build_live_model

K = 10
ANSWERS = (0, 3, 5, 10)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--split", default=str(SHARED / "bench" / "splits" / "ml-latest-small" / "user-holdout")
    )
    p.add_argument("--movies", default=str(SHARED / "data" / "ml-latest-small" / "movies.csv"))
    p.add_argument("--users", type=int, default=150)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    train = pd.read_csv(f"{args.split}/train.csv")
    test = pd.read_csv(f"{args.split}/test.csv")
    movies = pd.read_csv(args.movies)
    vocabulary = genre_vocabulary(movies)  # the pipeline's reading of the genres column
    known_genres = set(vocabulary)
    genres_of = {
        int(m): [g for g in str(gs).split("|") if g in known_genres]
        for m, gs in zip(movies.movieId, movies.genres)
    }

    counts = train.groupby("userId").size()
    relevant = test[test.rating >= 4.0].userId.unique()
    eligible = np.intersect1d(counts[counts >= 20].index.to_numpy(), relevant)
    new = np.sort(np.random.default_rng(args.seed).choice(eligible, args.users, replace=False))
    known = train[~train.userId.isin(new)]
    history = train[train.userId.isin(new)]
    held = test[test.userId.isin(new)]

    config = PipelineConfig()
    matrix = RatingMatrix.from_frame(known)
    topn = TopNRecommender(config.topn).fit(matrix)
    mf = BiasedMF(config.rating.mf).fit(matrix)
    live = build_live_model(
        topn, mf, matrix.item_ids, vocabulary, genres_of, keep=config.live_neighbors
    )
    popularity = known.groupby("movieId").size().sort_values(ascending=False, kind="stable")
    fitted_s = time.perf_counter() - t0

    def top_genres(user: pd.DataFrame) -> list[str]:
        mass: dict[str, float] = {}
        for m, r in zip(user.movieId, user.rating):
            for g in genres_of.get(int(m), ()):
                mass[g] = mass.get(g, 0.0) + float(r)
        return sorted(mass, key=lambda g: (-mass[g], g))[:3]

    def first_list(answers: pd.DataFrame, genres: list[str]) -> list[int]:
        profile = {
            "ratings": {str(int(m)): float(r) for m, r in zip(answers.movieId, answers.rating)},
            "genres": genres,
        }
        empty = (np.empty(0, np.int64), np.empty(0, np.float64))
        return live_list_ids(recommend_live(live, signals(empty, profile), K))

    rows: dict[str, list] = {name: [] for name in ("popularity", *map(str, ANSWERS), "history")}
    for user_id, user in history.groupby("userId"):
        by_popularity = user.assign(n=user.movieId.map(popularity).fillna(0)).sort_values(
            ["n", "movieId"], ascending=[False, True]
        )
        genres = top_genres(user)
        for k in ANSWERS:
            rows[str(k)].append((user_id, first_list(by_popularity.head(k), genres)))
        rows["history"].append((user_id, first_list(user, genres)))
        answered = set(by_popularity.head(max(ANSWERS)).movieId)
        rows["popularity"].append(
            (user_id, [int(m) for m in popularity.index if m not in answered][:K])
        )
    scored = {name: topn_metrics(frame(lists), held, K, 4.0) for name, lists in rows.items()}
    full = scored["history"][f"ndcg@{K}"]

    print(
        f"\n### A new user's first list: {len(new)} users held out whole from the reference "
        f"user-holdout split (seed {args.seed}); models fitted on the other users in {fitted_s:.0f} s\n"
    )
    print(f"| first list from | NDCG@{K} | HR@{K} | share of full-history NDCG |")
    print("|---|---|---|---|")
    labels = {"popularity": "popularity (no answers)", "history": "the whole training history"}
    for k in ANSWERS:
        labels[str(k)] = f"3 genres + {k} rated movies" if k else "3 genres only"
    for name in ("popularity", *map(str, ANSWERS), "history"):
        m = scored[name]
        print(
            f"| {labels[name]} | {m[f'ndcg@{K}']:.4f} | {m[f'hitrate@{K}']:.4f} | "
            f"{m[f'ndcg@{K}'] / full:.0%} |"
        )
    print(f"\n{time.perf_counter() - t0:.0f} s in all")
    return 0


def live_list_ids(result) -> list[int]:
    return [int(m) for m in result.movie_ids[:K]]


def frame(lists: list[tuple[int, list[int]]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(u, rank, m) for u, items in lists for rank, m in enumerate(items, start=1)],
        columns=["userId", "rank", "movieId"],
    )


if __name__ == "__main__":
    sys.exit(main())

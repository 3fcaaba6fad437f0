"""More variety on request: NDCG@10 against intra-list diversity as ``diversity`` goes from 0 to 1.

    python -m benchmarks.diversity [--steps 0,0.1,...,1]

The top-N model (``PipelineConfig().topn``) is fitted on the peer harness's reference
user-holdout training part; each evaluated user's 50-movie list (what the service stores and
re-scores) is re-ranked by ``contract.diversity`` (maximal marginal relevance over genre
similarity, as ``GET /user/<id>/recommendation?diversity=`` does) and cut to 10. Scored with the
pipeline's metric code: NDCG@10 and coverage@10 (``topn_metrics``), intra-list diversity (mean
genre distance, 1 - Jaccard, within a list), novelty and long-tail share (``beyond_accuracy``).
First on the harness's own validation carve of the training part (a random 20% per user, seed 43),
where the web page's "more variety" setting is chosen (the largest ``diversity`` that keeps 95% of
the list's NDCG@10), then on the test split. Coverage is over the whole training part's movies
on both, as ``benchmarks.operating_point`` counts it. Also the time to re-rank one 50-movie list.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd

from benchmarks._util import best_of, bundled_topn, random_carve, split_args
from contract.diversity import genre_similarity, rerank
from pipeline.evaluation.metrics import beyond_accuracy, topn_metrics
from pipeline.features.matrix import RatingMatrix
from pipeline.features.tables import movie_genres

K, CANDIDATES = 10, 50
KEEP = 0.95  # the page's setting keeps this share of the list's NDCG on the validation carve


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    split_args(p)
    p.add_argument("--steps", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    steps = [float(s) for s in args.steps.split(",")]
    movies = pd.read_csv(args.movies)
    genres_of = movie_genres(movies)
    genre_table = pd.DataFrame(
        [{g: 1 for g in gs} for gs in genres_of.values()], index=list(genres_of)
    ).fillna(0)
    train = pd.read_csv(f"{args.split}/train.csv")
    train = train.sort_values(["userId", "movieId"], kind="stable").reset_index(drop=True)
    held = random_carve(train)
    chosen = None
    for name, fit_on, scored_on in (
        ("validation carve", train[~held], train[held]),
        ("test split", train, pd.read_csv(f"{args.split}/test.csv")),
    ):
        users, lists = candidate_lists(fit_on, scored_on)
        sims = [genre_similarity([genres_of.get(m, ()) for m in row]) for row in lists]
        n_users = fit_on.userId.nunique()
        counts = fit_on.groupby("movieId").size()
        catalogue = train.movieId.nunique()  # the test split's, also on the carve
        print(f"\n### {name}: {len(users)} users, their {CANDIDATES}-movie lists re-ranked\n")
        print(
            "| diversity | NDCG@10 | intra-list diversity | coverage@10 | novelty (bits) | long-tail share |"
        )
        print("|---|---|---|---|---|---|")
        curve = {}
        for d in steps:
            top = [row[rerank(s, d, K)] for row, s in zip(lists, sims)]
            frame = pd.DataFrame(
                {
                    "userId": np.repeat(users, K),
                    "rank": np.tile(np.arange(1, K + 1), len(users)),
                    "movieId": np.concatenate(top),
                }
            )
            acc = topn_metrics(frame, scored_on, K, 4.0, catalogue_size=catalogue)
            more = beyond_accuracy(frame, counts, n_users, genre_table, K)
            curve[d] = acc[f"ndcg@{K}"]
            mark = " (the page's setting)" if d == chosen else ""
            print(
                f"| {d:.1f}{mark} | {acc[f'ndcg@{K}']:.4f} | {more['diversity']:.4f} | "
                f"{acc[f'coverage@{K}']:.4f} | {more['novelty']:.2f} | {more['long_tail_share']:.3f} |"
            )
        if chosen is None:
            chosen = max(d for d in steps if curve[d] >= KEEP * curve[steps[0]])
            print(f"\nthe largest diversity keeping {KEEP:.0%} of NDCG@10: {chosen:.1f}")
    row = lists[0]
    seconds, _ = best_of(
        lambda: rerank(genre_similarity([genres_of.get(m, ()) for m in row]), 1.0, K), 200
    )
    print(
        f"\nre-ranking one {CANDIDATES}-movie list (similarities included): {seconds * 1e3:.3f} ms"
    )
    print(f"{time.perf_counter() - t0:.0f} s in all")
    return 0


def candidate_lists(train: pd.DataFrame, test: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The evaluated users and their 50-movie lists (movie ids, users x 50) from the top-N model
    fitted on ``train``."""
    matrix = RatingMatrix.from_frame(train)
    model = bundled_topn(matrix)
    users = np.sort(test.userId.unique())
    users = users[np.isin(users, matrix.user_ids)]
    items, _, _ = model.recommend(np.searchsorted(matrix.user_ids, users), n=CANDIDATES)
    return users, matrix.item_ids[items]


if __name__ == "__main__":
    sys.exit(main())

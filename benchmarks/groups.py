"""Watching together: a group's list, offline, and how long it takes to make.

    python -m benchmarks.groups [--validate] [--groups 300] [--seed 5]

1. The peer harness's reference user-holdout split of ml-latest-small (seed 42): the models are
   fitted on its training part as the pipeline publishes them (top-N, the rating model's matrix
   factorisation, the live model), and the held-out part scores the lists. ``--validate`` reads
   no test rating: the harness's own validation carve of the training part (a random 20% per
   user, seed 43) is held out instead and the models are fitted on the rest.
2. ``--groups`` random groups of 2, 3 and 4 users (``--seed``) with a relevant held-out rating
   each. Every member is known by their training ratings and their own list: the top-N model's
   published list (what the API takes for a data-set user with no live state), or, to compare,
   their list scored by the live model (what it takes for a user with live state).
3. The group's list of 10 by each rule of ``contract.groups`` (``no-misery`` is served) and by
   popularity (the most rated movies no member rated), scored by
   ``pipeline.evaluation.groups.evaluate_groups`` (the same table is in every run's evaluation
   report): the members' mean NDCG@10 (each member's held-out ratings against the group's
   list), the least-served member's NDCG@10, and the group hit rate (the share of groups whose
   list holds a movie every member rated >= 4 in the held-out part).
4. The time of ``contract.groups.recommend_group`` for groups of 4 (p50 and p99 over the groups,
   in this process): a group's first request with data-set members (their published lists and
   fold-ins), the same with every member scored by the live model, and with one member scored
   and the others kept (what the API does after a member's write: it keeps each member's own
   list per rev, ``api.routes.groups``).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd

from benchmarks._util import bundled_topn, newest_first, random_carve, split_args
from contract.groups import CANDIDATES, as_members, recommend_group
from pipeline.config import PipelineConfig
from pipeline.evaluation.groups import evaluate_groups, member_signals, random_groups
from pipeline.features.matrix import RatingMatrix
from pipeline.features.tables import genre_vocabulary, movie_genres
from pipeline.models.mf import BiasedMF
from pipeline.publish.live_export import build_live_model

K = 10
SIZES = (2, 3, 4)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    split_args(p)
    p.add_argument("--groups", type=int, default=300, help="groups of each size")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--validate", action="store_true")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    train = pd.read_csv(f"{args.split}/train.csv")
    train = train.sort_values(["userId", "movieId"], kind="stable").reset_index(drop=True)
    if args.validate:
        held = random_carve(train)
        train, test = train[~held], train[held]
    else:
        test = pd.read_csv(f"{args.split}/test.csv")
    movies = pd.read_csv(args.movies)
    vocabulary = genre_vocabulary(movies)
    genres_of = movie_genres(movies)
    config = PipelineConfig()
    matrix = RatingMatrix.from_frame(train)
    mf = BiasedMF(config.rating.mf).fit(matrix)
    topn = bundled_topn(matrix, config.topn, mf)
    live = build_live_model(
        topn.cut(config.live_neighbors), mf, matrix.item_ids, vocabulary, genres_of
    )
    popular = train.groupby("movieId").size().sort_values(ascending=False, kind="stable").index
    fitted_s = time.perf_counter() - t0

    history = {
        int(u): (d.movieId.to_numpy(np.int64), d.rating.to_numpy(np.float64))
        for u, d in newest_first(train).groupby("userId")
    }
    cols, _, _ = topn.recommend_matrix(
        matrix.csr,
        n=CANDIDATES,
        exclude_seen=True,
        because=False,
        timestamps=matrix.timestamps,
        taste=topn.taste_users_,
    )
    published = {int(u): matrix.item_ids[c[c >= 0]] for u, c in zip(matrix.user_ids, cols)}
    rows = {
        "published": evaluate_groups(
            live, history, test, popular, K, 4.0, SIZES, args.groups, args.seed, published
        ),  # served for data-set users, and the evaluation report's table
        "live": evaluate_groups(
            live, history, test, popular, K, 4.0, SIZES, args.groups, args.seed
        ),
    }
    print(
        f"\n### Groups of {', '.join(map(str, SIZES))} random users ({args.groups} of each size, "
        f"seed {args.seed}), scored on {'the validation carve' if args.validate else 'the test split'}; "
        f"models fitted in {fitted_s:.0f} s\n"
    )
    print(
        "| group size | list by | members' own lists | members' mean NDCG@10 "
        "| least-served member's NDCG@10 | group hit rate |"
    )
    print("|---|---|---|---|---|---|")
    for own, table in rows.items():
        for r in table:
            if own == "live" and r["by"] == "popularity":
                continue  # the same as with the published lists
            print(
                f"| {r['size']} | {r['by']} | {own} | {r[f'ndcg@{K}']:.4f} "
                f"| {r[f'least@{K}']:.4f} | {r['hit_rate']:.3f} |"
            )

    seconds = []
    users = np.array(sorted(set(test[test.rating >= 4.0].userId) & set(history)), np.int64)
    for members in random_groups(users, (4,), args.groups, args.seed):
        sigs = [member_signals(history[u]) for u in members]
        started = time.perf_counter()
        recommend_group(live, as_members(live, sigs, published=[published[u] for u in members]), K)
        listed = time.perf_counter() - started
        started = time.perf_counter()
        recommend_group(live, sigs, K)
        scored = time.perf_counter() - started
        kept = as_members(live, sigs[1:])
        started = time.perf_counter()  # one member wrote: the others are kept
        recommend_group(live, [*as_members(live, sigs[:1]), *kept], K)
        seconds.append((listed, scored, time.perf_counter() - started))
    ms = np.array(seconds) * 1e3
    for k, what in enumerate(
        (
            "data-set members with their published lists",
            "every member scored by the live model",
            "one member scored, three kept",
        )
    ):
        print(
            f"\na group of 4's list (contract.groups, no-misery), {what}: p50 "
            f"{np.percentile(ms[:, k], 50):.1f} ms, p99 {np.percentile(ms[:, k], 99):.1f} ms "
            f"over {len(ms)} groups",
            end="",
        )
    print()
    print(f"{time.perf_counter() - t0:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())

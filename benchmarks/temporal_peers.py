"""The peer harness's side of ``benchmarks.temporal``: run with the harness's Python (pandas 2,
``bash benchmarks/setup_peers.sh``), never imported by the project.

    <peers python> benchmarks/temporal_peers.py --bench ../shared/bench --out OUT [--seed 42]

Writes the temporal split of ml-latest-small with the harness's own ``write_split`` (each user
with at least 5 ratings: their latest ``max(1, floor(0.2 n))`` ratings by timestamp, ties by
movieId, held out) to ``OUT/splits/temporal``, then runs the harness's popularity and EASE
(``peers.run_topn_benchmark``, EASE's lambda tuned on a validation hold-out carved from the
training part with seed + 1, as on the other splits) and writes ``OUT/results.json``.
"""

import argparse
import json
import os
import sys

import numpy as np


def split_temporal(df, test_frac: float, min_ratings: int):
    """Per user with >= ``min_ratings`` ratings: the latest ``max(1, floor(test_frac * n))``."""
    order = df.sort_values(["userId", "timestamp", "movieId"], kind="stable")
    is_test = np.zeros(len(order), dtype=bool)
    for rows in order.groupby("userId", sort=True).indices.values():
        n = len(rows)
        if n >= min_ratings:
            is_test[rows[n - max(1, int(np.floor(test_frac * n + 1e-9))) :]] = True
    train, test = order[~is_test], order[is_test]
    key = ["userId", "movieId"]
    return train.sort_values(key).reset_index(drop=True), test.sort_values(key).reset_index(
        drop=True
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bench", required=True, help="the peer harness folder")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=42, help="EASE's validation carve (seed + 1)")
    ours = p.parse_args()
    sys.path.insert(0, ours.bench)
    import metrics as M  # the harness's
    import peers

    data = os.path.join(ours.bench, "..", "data", "ml-latest-small", "ratings.csv")
    args = peers.parse_args(
        ["--data", data, "--out", ours.out, "--seed", str(ours.seed), "--models", "Popularity,EASE"]
    )
    df = peers.load_ratings(data)
    train, test = split_temporal(df, args.holdout_frac, args.min_ratings)
    meta = {
        "name": "temporal",
        "kind": "topn",
        "k": args.k,
        "relevance_threshold": args.threshold,
        "rule": f"per user with >= {args.min_ratings} ratings: the latest "
        f"max(1, floor({args.holdout_frac} * n_u)) by timestamp (ties by movieId) held out",
        "source": "shared/data/ml-latest-small/ratings.csv",
    }
    meta = M.write_split(os.path.join(ours.out, "splits", "temporal"), train, test, meta)
    split = peers.Split("temporal", "temporal", "topn", train, test, meta)
    rows = peers.run_topn_benchmark(args, [split])
    with open(os.path.join(ours.out, "results.json"), "w") as f:
        json.dump({"topn": rows, "split": meta}, f, indent=2, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time and traced memory of the rating model's item-kNN fit, and of its estimate at two block
sizes, same run.

    python -m benchmarks.knn_estimate --dataset DIR [--users 2048,20000] [--per-user 50]

Fits ``ItemKNN`` on the mean-centred ratings of ``DIR`` (a MovieLens layout, e.g. from
``python -m pipeline synth``; the fit's time and ``tracemalloc``'s peak are printed), then
estimates ``--per-user`` random movies for each of a random sample of users (2,048 is one
per-user task's block; 20,000 x 50 is the size of the stacking rows), once with the given sizes
and once with the defaults, alternating, twice each: the wall time and ``tracemalloc``'s peak.
The estimates must be identical.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp


def main(argv=None) -> int:
    from pipeline.features.matrix import RatingMatrix
    from pipeline.models.item_knn import ItemKNN, ItemKNNConfig
    from pipeline.models.rating import _UserHistory

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", required=True)
    p.add_argument("--users", default="2048,20000")
    p.add_argument("--per-user", type=int, default=50)
    p.add_argument("--before", default="32000000,50000", help="dense_budget,block to compare with")
    args = p.parse_args(argv)
    budget, block = (int(v) for v in args.before.split(","))

    r = pd.read_csv(Path(args.dataset) / "ratings.csv")
    csr = RatingMatrix.from_frame(r).csr
    residual = (csr.data - csr.data.mean()).astype(np.float32)
    z = sp.csr_matrix((residual, csr.indices, csr.indptr), csr.shape)
    tracemalloc.start()
    t = time.perf_counter()
    knn = ItemKNN(ItemKNNConfig()).fit(z)
    seconds, peak = time.perf_counter() - t, tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(
        f"{len(r):,} ratings, {csr.shape[0]:,} users x {csr.shape[1]:,} movies; kNN fit "
        f"{seconds:.1f} s, traced peak {peak / 2**20:.0f} MiB beside its input"
    )
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
    history = _UserHistory.build(
        csr.shape[0], rows, csr.indices, csr.shape[1], residual, None, None, 0
    )
    rng = np.random.default_rng(0)
    print("| users x movies | dense_budget, block | s | traced peak MiB |")
    print("|---|---|---|---|")
    for n in (int(v) for v in args.users.split(",")):
        users = np.sort(rng.choice(csr.shape[0], min(n, csr.shape[0]), replace=False))
        pr = np.repeat(users, args.per_user)
        pi = rng.integers(0, csr.shape[1], len(pr))
        first = None
        for sizes in [{"dense_budget": budget, "block": block}, {}] * 2:
            tracemalloc.start()
            t = time.perf_counter()
            out = knn.estimate(history, pr, pi, **sizes)
            seconds = time.perf_counter() - t
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            first = out if first is None else first
            assert all(np.array_equal(a, b) for a, b in zip(out, first)), "estimates differ"
            label = f"{sizes['dense_budget']:,}, {sizes['block']:,}" if sizes else "defaults"
            print(
                f"| {len(users):,} x {args.per_user} | {label} | {seconds:.2f} | {peak / 2**20:.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

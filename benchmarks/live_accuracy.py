"""Accuracy of the request-time path (``contract.live_model``) against the precomputed lists, on
the peer harness's ml-latest-small user-holdout split (seed 42): what cutting the top-N model's
EASE weights to ``keep`` per item costs.

    bash benchmarks/setup_peers.sh          # once: the Python that runs eval_split.py (pandas 2)
    python -m benchmarks.live_accuracy [--keep 50,200,1000,all]

1. Fit on the split's ``train.csv`` what the lists come from: the rating matrix, the top-N model
   (``TopNRecommender`` with the pipeline's configuration) and the matrix factorisation
   (``BiasedMF``, the rating model's; it gives the live path's predicted ratings and plays no part
   in the ranking, so the rating model's gradient boosting is not fitted).
2. Precomputed path: ``TopNRecommender.recommend`` for every test user (what ``python -m
   pipeline evaluate`` writes and the ``users`` documents hold; ``benchmarks.accuracy`` scores it).
3. Request-time path: ``build_live_model(topn.cut(K), ...)`` for each ``--keep`` (the pipeline
   publishes ``PipelineConfig.live_neighbors`` = 200; ``all`` keeps every weight), and
   ``recommend_live`` on each test user's training ratings, no feedback: the list the API
   re-scores for a user whose list went stale, before the feedback's own effect.
4. Every list file is scored by the harness's ``eval_split.py`` (NDCG@10, precision, recall,
   hit rate, coverage), and each request-time list is compared with the same user's precomputed
   one: mean share of common items, share of identical top 10s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._util import REPO, SHARED, bundled_topn, newest_first

PEERS_PYTHON = REPO.parent / ".venv-peers" / "bin" / "python"
K = 10


def fit(train: pd.DataFrame):
    """The rating matrix, top-N model and MF of the pipeline, fitted on ``train``."""
    from pipeline.config import PipelineConfig
    from pipeline.features.matrix import RatingMatrix
    from pipeline.models.mf import BiasedMF

    config = PipelineConfig()
    matrix = RatingMatrix.from_frame(train)
    t0 = time.perf_counter()
    mf = BiasedMF(config.rating.mf).fit(matrix)
    topn = bundled_topn(matrix, config.topn, mf)
    return config, matrix, topn, mf, time.perf_counter() - t0


def precomputed_lists(matrix, topn, users: np.ndarray) -> pd.DataFrame:
    cols, _, _ = topn.recommend(matrix.user_index(users), n=K, exclude_seen=True)
    return _frame(users, [matrix.item_ids[c[c >= 0]] for c in cols])


def live_lists(model, train: pd.DataFrame, users: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """``recommend_live`` on each user's training ratings; the lists and the ms per user."""
    from contract.live_model import UserSignals, recommend_live

    by_user = {
        int(u): dict(zip(g.movieId.to_numpy(np.int64).tolist(), g.rating.to_numpy(float).tolist()))
        for u, g in newest_first(train).groupby("userId")
    }
    lists, ms = [], []
    for u in users:
        ratings = by_user.get(int(u), {})
        signals = UserSignals(ratings, set(), set(), set(), newest_first=tuple(ratings))
        t0 = time.perf_counter_ns()
        result = recommend_live(model, signals, K)
        ms.append((time.perf_counter_ns() - t0) / 1e6)
        lists.append(result.movie_ids)
    return _frame(users, lists), np.array(ms)


def _frame(users, lists) -> pd.DataFrame:
    rows = [
        (int(u), r + 1, int(m)) for u, items in zip(users, lists) for r, m in enumerate(items[:K])
    ]
    return pd.DataFrame(rows, columns=["userId", "rank", "movieId"])


def overlap(a: pd.DataFrame, b: pd.DataFrame) -> tuple[float, float]:
    """Mean share of b's items in a's list per user, and the share of users with the same list
    in the same order."""
    la, lb = a.groupby("userId").movieId.apply(list), b.groupby("userId").movieId.apply(list)
    shares, same = [], []
    for u, items in la.items():
        other = lb.get(u, [])
        shares.append(len(set(items) & set(other)) / max(len(items), 1))
        same.append(items == other)
    return float(np.mean(shares)), float(np.mean(same))


def score(eval_python: str, bench: Path, split: Path, recs_csv: Path) -> dict:
    done = subprocess.run(
        [
            eval_python,
            str(bench / "eval_split.py"),
            "--split",
            str(split),
            "--recommendations",
            str(recs_csv),
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout)["topn"][0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--bench", default=str(SHARED / "bench"), help="peer harness folder (default: %(default)s)"
    )
    p.add_argument(
        "--split",
        default=None,
        help="split folder (default: <bench>/splits/ml-latest-small/user-holdout)",
    )
    p.add_argument(
        "--peers-python",
        default=str(PEERS_PYTHON),
        help="Python that runs eval_split.py (default: %(default)s, made by benchmarks/setup_peers.sh)",
    )
    p.add_argument(
        "--keep",
        default="50,200,1000,all",
        help="weights kept per item in the live model, comma-separated; 'all' = no cut "
        "(default: %(default)s; the pipeline publishes 200)",
    )
    p.add_argument(
        "--movies",
        default=str(REPO / "resources" / "ml-latest-small"),
        help="MovieLens folder with the movies' genres (default: the bundled ml-latest-small)",
    )
    p.add_argument(
        "--out", default=None, help="keep the list files in this folder (default: a temporary one)"
    )
    args = p.parse_args(argv)
    from threadpoolctl import threadpool_limits

    from benchmarks.live_latency import CpuMeter, busy_note, own_cpu
    from pipeline.data.movielens import load_movielens
    from pipeline.features.tables import genre_vocabulary
    from pipeline.publish.live_export import build_live_model

    bench = Path(args.bench)
    split = (
        Path(args.split) if args.split else bench / "splits" / "ml-latest-small" / "user-holdout"
    )
    if not Path(args.peers_python).exists():
        raise SystemExit(
            f"{args.peers_python} not found: run `bash benchmarks/setup_peers.sh` first "
            "(eval_split.py needs the harness's pinned pandas 2)"
        )
    train = pd.read_csv(
        split / "train.csv", dtype={"userId": "int64", "movieId": "int64", "rating": "float32"}
    )
    test = pd.read_csv(split / "test.csv", usecols=["userId"])
    users = np.unique(test.userId.to_numpy(np.int64))
    movies = load_movielens(args.movies).movies
    catalogue = dict(zip(movies.movieId.astype(int), movies.genres))
    config, matrix, topn, mf, fit_s = fit(train)
    print(
        f"fitted the top-N model and the MF on {len(train):,} training ratings in {fit_s:.0f} s",
        file=sys.stderr,
    )

    with tempfile.TemporaryDirectory(prefix="mt-live-acc-") as tmp:
        out = Path(args.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        pre = precomputed_lists(matrix, topn, users)
        pre.to_csv(out / "precomputed.csv", index=False)
        rows = [
            (
                "precomputed (TopNRecommender.recommend, full weights)",
                score(args.peers_python, bench, split, out / "precomputed.csv"),
                None,
                None,
                None,
                None,
            )
        ]
        n_items = len(topn.items_)
        phases = []
        for raw in filter(None, (k.strip() for k in args.keep.split(","))):
            keep = n_items if raw == "all" else int(raw)
            model = build_live_model(
                topn.cut(keep), mf, matrix.item_ids, genre_vocabulary(movies)[:32], catalogue
            )
            nnz = sum(w.nnz for w in model.topn.weights)
            with (
                threadpool_limits(1),
                CpuMeter({"this benchmark": own_cpu}) as meter,
            ):  # one thread: as a worker
                live, ms = live_lists(model, train, users)
            phases.append((raw, meter))
            path = out / f"live-keep-{raw}.csv"
            live.to_csv(path, index=False)
            share, same = overlap(live, pre)
            label = f"request time, keep {'all' if raw == 'all' else f'{keep:,}'} weights per item"
            rows.append(
                (
                    label,
                    score(args.peers_python, bench, split, path),
                    share,
                    same,
                    nnz * 8 / 2**20,
                    ms,
                )
            )
            print(f"{label}: done", file=sys.stderr)

    print(
        f"\n## Request-time lists against precomputed ones: {split.name} split of ml-latest-small "
        f"({len(users):,} test users, top {K}), scored by eval_split.py\n"
    )
    print(
        f"The top-N model has {n_items:,} items; each of its {len(topn.weights_)} EASE matrices has "
        f"{n_items:,} x {n_items:,} weights.\n"
    )
    print(
        "| lists | NDCG@10 | P@10 | R@10 | HR@10 | Coverage@10 | same items as precomputed | same list, same order "
        "| live weights MiB | ms per user p50 / p99 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, s, share, same, mib, ms in rows:
        extra = (
            (
                f"{100 * share:.1f}% | {100 * same:.1f}% | {mib:,.1f} | "
                f"{np.percentile(ms, 50):.2f} / {np.percentile(ms, 99):.2f}"
            )
            if share is not None
            else "- | - | - | -"
        )
        print(
            f"| {label} | {s['ndcg@10']:.4f} | {s['precision@10']:.4f} | {s['recall@10']:.4f} | "
            f"{s['hitrate@10']:.4f} | {s['coverage@10']:.4f} | {extra} |"
        )
    base = rows[0][1]["ndcg@10"]
    for label, s, *_ in rows[1:]:
        print(
            f"- {label}: NDCG@10 {100 * (s['ndcg@10'] / base - 1):+.1f}% against the precomputed lists"
        )
    print(
        "- weights MiB: float32 values + int32 column indices of the sparse EASE matrices (the CSR row "
        "pointers and the MF are extra); ms per user: recommend_live in this process, one BLAS thread"
    )
    print(f"- timings: {busy_note(phases)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

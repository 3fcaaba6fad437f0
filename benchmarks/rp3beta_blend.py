"""Does a third, differently biased model in the top-N blend move the NDCG against coverage curve?

    python -m benchmarks.rp3beta_blend [--test]

Issue 14's candidate: RP3beta (Paudel et al. 2017: the item-to-item random walk
``W = P_iu^alpha P_ui^alpha``, each target divided by its popularity to the power ``beta``) blended
with the two EASE models, on binary input, normalised per user like them. The top-N model
(``PipelineConfig().topn``) is fitted once per carve; every point adds RP3beta with a weight,
recalibrates the tail on the blend and re-ranks with a head of 5 or 7 and tail powers 0.7-1.0,
against the same head and tail without RP3beta. Carves of the peer harness's reference
user-holdout training part (``benchmarks.operating_point``: random and temporal); ``--test``
scores the test split instead (for final figures only, never to choose).

An experiment, not a product path: the third model's input is patched into
``contract.scoring.inputs`` for the run.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp

import contract.scoring as scoring
from benchmarks._util import SHARED, random_carve
from benchmarks.operating_point import fitted, temporal_carve
from pipeline.config import PipelineConfig

LISTS = list(itertools.product((5, 7), (0.7, 0.8, 0.9, 1.0)))


def rp3beta(x: sp.csr_matrix, alpha: float, beta: float) -> np.ndarray:
    """Dense float32 RP3beta item x item weights (zero diagonal) from users x items ``x``."""
    x = (x > 0).astype(np.float64).tocsr()
    pop = np.maximum(np.asarray(x.sum(axis=0)).ravel(), 1)
    user_to_item = sp.diags(1 / np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1)) @ x
    item_to_user = sp.diags(1 / pop) @ x.T.tocsr()
    w = (item_to_user.power(alpha) @ user_to_item.power(alpha)).toarray()
    w *= pop[None, :] ** -beta
    np.fill_diagonal(w, 0)
    return w.astype(np.float32)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--split", default=str(SHARED / "bench" / "splits" / "ml-latest-small" / "user-holdout")
    )
    p.add_argument("--test", action="store_true", help="score the test split (final figures)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    cfg = PipelineConfig().topn
    train = pd.read_csv(f"{args.split}/train.csv")
    train = train.sort_values(["userId", "movieId"], kind="stable").reset_index(drop=True)
    if args.test:
        carves = [("test split", train, pd.read_csv(f"{args.split}/test.csv"))]
    else:
        carves = [
            (name, train[~held], train[held])
            for name, held in (("random", random_carve(train)), ("temporal", temporal_carve(train)))
        ]
    two = scoring.inputs

    def three(ratings, rules):  # the EASE models' inputs, then RP3beta's (binary)
        binary = scoring._with_data(ratings, np.ones_like(ratings.data))
        return (*two(ratings, rules), binary)

    for name, part, held in carves:
        model, score = fitted(part, held, cfg)
        points = {
            ("EASE blend", h, pw): score(model.with_list(h, cfg.head_popularity_power, pw))
            for h, pw in LISTS
        }
        scoring.inputs = three
        try:
            for alpha, beta, weight in itertools.product((1.0,), (0.35, 0.5, 0.65), (0.15, 0.3)):
                blend = model.with_weights(
                    [*model.weights_, rp3beta(model.user_ratings_, alpha, beta)]
                )
                blend.blend_ = [*model.blend_, weight]
                blend = blend.with_weights(blend.weights_)  # the tail calibrated on the blend
                for h, pw in LISTS:
                    points[(f"+ RP3beta a={alpha} b={beta} w={weight}", h, pw)] = score(
                        blend.with_list(h, cfg.head_popularity_power, pw)
                    )
        finally:
            scoring.inputs = two
        print(f"\n### {name}: best NDCG@10 at each coverage@10 floor\n")
        print(
            "| coverage >= | EASE blend: NDCG / coverage (head, power) | with RP3beta: NDCG / coverage (settings) |"
        )
        print("|---|---|---|")
        for floor in (0.10, 0.13, 0.15):
            row = []
            for with_rp3 in (False, True):
                ok = [
                    (k, v)
                    for k, v in points.items()
                    if v[1] >= floor and k[0].startswith("+") == with_rp3
                ]
                if not ok:
                    row.append("none")
                    continue
                (label, h, pw), (ndcg, cov) = max(ok, key=lambda kv: kv[1][0])
                extra = f"{label[2:]}, " if with_rp3 else ""
                row.append(f"{ndcg:.4f} / {cov:.4f} ({extra}{h}, {pw})")
            print(f"| {floor:.2f} | {row[0]} | {row[1]} |")
    print(f"\n{time.perf_counter() - t0:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does a third, differently biased model in the top-N blend move the NDCG against coverage curve?

    python -m benchmarks.third_model [--member rp3beta|asymmetric-ease] [--test]

Issue 14's candidates, each an item x item weight matrix blended with the two EASE models,
normalised per user like them:

* ``rp3beta`` (Paudel et al. 2017): the item-to-item random walk ``W = P_iu^alpha P_ui^alpha``,
  each target divided by its popularity to the power ``beta``, on binary input;
* ``asymmetric-ease``: EASE fitted to predict the *positives* (rating >= 4) from the
  rating-weighted input, ``B = argmin ||Y - X B||^2 + l2 ||B||^2`` with a zero diagonal
  (per column ``j``: ``b_j = P X'y_j - P e_j (P X'y_j)_j / P_jj``, ``P = (X'WX + l2 I)^-1``), so a
  low rating can count against its neighbours where the served models' targets are the inputs.

The top-N model (``PipelineConfig().topn``) is fitted once per carve; every point adds the member
with a weight, recalibrates the tail on the blend and re-ranks with a head of 5, 6 or 7 and tail
powers 0.7-1.0, against the same head and tail without it. Carves of the peer harness's reference
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

LISTS = list(itertools.product((5, 6, 7), (0.7, 0.8, 0.9, 1.0)))


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


def asymmetric_ease(
    x: sp.csr_matrix, y: sp.csr_matrix, l2: float, user_weight_power: float
) -> np.ndarray:
    """Dense float32 weights (zero diagonal) predicting targets ``y`` from inputs ``x`` (both
    users x items), each user's row weighted ``n_u ** -(2 * user_weight_power)`` as the served
    rating model's Gram matrix."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    n_u = np.diff(x.indptr)
    xw = sp.diags(np.where(n_u > 0, np.maximum(n_u, 1.0) ** (-2 * user_weight_power), 0.0)) @ x
    gram = (x.T @ xw).toarray()
    gram[np.diag_indices_from(gram)] += l2
    p = np.linalg.inv(gram)
    b = p @ (xw.T @ y).toarray()
    b -= p * (np.diag(b) / np.diag(p))[None, :]
    np.fill_diagonal(b, 0)
    return b.astype(np.float32)


def members(ratings: sp.csr_matrix, rules) -> dict:
    """Per member: its input made from rows of raw ratings, and ``(label, weights)`` for each of
    its settings on the fitted model's training rows ``ratings``."""
    binary = lambda r: sp.csr_matrix(  # noqa: E731
        (np.ones_like(r.data), r.indices.copy(), r.indptr.copy()), shape=r.shape
    )
    return {
        "rp3beta": (
            binary,
            lambda: (
                (f"RP3beta a={a} b={b}", rp3beta(ratings, a, b))
                for a, b in itertools.product((1.0,), (0.35, 0.5, 0.65))
            ),
            (0.15, 0.3),
        ),
        "asymmetric-ease": (
            lambda r: scoring.rating_input(r, rules),
            lambda: (
                (
                    f"asymmetric EASE l2={l2:g} user power={u}",
                    asymmetric_ease(
                        scoring.rating_input(ratings, rules),
                        scoring.positive_input(ratings, rules),
                        l2,
                        u,
                    ),
                )
                for l2, u in itertools.product((20.0, 100.0), (0.0, 0.25))
            ),
            (0.15, 0.3, 0.6),
        ),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--split", default=str(SHARED / "bench" / "splits" / "ml-latest-small" / "user-holdout")
    )
    p.add_argument("--member", choices=("rp3beta", "asymmetric-ease"), default="rp3beta")
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

    for name, part, held in carves:
        model, score = fitted(part, held, cfg, train.movieId.nunique())
        rules = scoring.ListRules.from_config(cfg)
        make_input, settings, weights = members(model.user_ratings_, rules)[args.member]
        points = {
            ("EASE blend", h, pw): score(model.with_list(h, cfg.head_popularity_power, pw))
            for h, pw in LISTS
        }
        # (the EASE models' inputs with their recency weights; the third member's unweighted)
        scoring.inputs = lambda ratings, rules, recency=None, third=make_input: (
            *two(ratings, rules, recency),
            third(ratings),
        )
        try:
            for label, b in settings():
                for weight in weights:
                    blend = model.with_weights([*model.weights_, b])
                    blend.blend_ = [*model.blend_, weight]
                    blend = blend.with_weights(blend.weights_)  # the tail calibrated on the blend
                    for h, pw in LISTS:
                        points[(f"+ {label} w={weight}", h, pw)] = score(
                            blend.with_list(h, cfg.head_popularity_power, pw)
                        )
        finally:
            scoring.inputs = two
        print(f"\n### {name}: best NDCG@10 at each coverage@10 floor\n")
        print(
            f"| coverage >= | EASE blend: NDCG / coverage (head, power) | with {args.member}: "
            "NDCG / coverage (settings, head, power) |"
        )
        print("|---|---|---|")
        for floor in (0.10, 0.13, 0.15):
            row = []
            for third in (False, True):
                ok = [
                    (k, v)
                    for k, v in points.items()
                    if v[1] >= floor and k[0].startswith("+") == third
                ]
                if not ok:
                    row.append("none")
                    continue
                (label, h, pw), (ndcg, cov) = max(ok, key=lambda kv: kv[1][0])
                extra = f"{label[2:]}, " if third else ""
                row.append(f"{ndcg:.4f} / {cov:.4f} ({extra}{h}, {pw})")
            print(f"| {floor:.2f} | {row[0]} | {row[1]} |")
    print(f"\n{time.perf_counter() - t0:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())

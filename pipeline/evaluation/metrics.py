"""Accuracy metrics, with the conventions of the peer harness (``shared/bench/metrics.py``).

Rating metrics: RMSE and MAE over every held-out rating.

Top-N metrics at ``k``: a user's relevant items are their held-out items rated at least
``threshold``; users with no relevant item are not evaluated; a recommended item counts
as a hit only if it is relevant (so an item the user rated in training, which a correct
recommender never returns, cannot score). Precision@k = hits/k, Recall@k =
hits/|relevant|, NDCG@k with binary gains and log2(rank+1) discounts, HitRate@k = 1 if
any hit; all averaged over evaluated users, and a user without a list scores 0.
Coverage@k = distinct recommended items over all listed users / catalogue size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def rmse(truth, predicted) -> float:
    t, p = np.asarray(truth, float), np.asarray(predicted, float)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mae(truth, predicted) -> float:
    t, p = np.asarray(truth, float), np.asarray(predicted, float)
    return float(np.mean(np.abs(t - p)))


def topn_metrics(
    recommendations: pd.DataFrame,
    test: pd.DataFrame,
    k: int = 10,
    threshold: float = 4.0,
    catalogue_size: int | None = None,
) -> dict:
    """Score ``recommendations`` (``userId, rank, movieId``) against ``test`` ratings."""
    relevant = test.loc[test["rating"] >= threshold, ["userId", "movieId"]]
    rel_sets = relevant.groupby("userId")["movieId"].agg(frozenset).to_dict()
    recs = recommendations[recommendations["rank"] <= k].sort_values(["userId", "rank"])
    lists = recs.groupby("userId")["movieId"].agg(list).to_dict()
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    p = r = ndcg = hr = 0.0
    for user, rel in rel_sets.items():
        items = lists.get(user, [])[:k]
        gains = np.array([1.0 if m in rel else 0.0 for m in items])
        hits = gains.sum()
        p += hits / k
        r += hits / len(rel)
        hr += float(hits > 0)
        idcg = discounts[: min(len(rel), k)].sum()
        ndcg += float((gains * discounts[: len(gains)]).sum() / idcg)
    n = max(len(rel_sets), 1)
    distinct = recs["movieId"].nunique()
    out = {
        f"precision@{k}": p / n,
        f"recall@{k}": r / n,
        f"ndcg@{k}": ndcg / n,
        f"hitrate@{k}": hr / n,
        "n_eval_users": len(rel_sets),
    }
    if catalogue_size:
        out[f"coverage@{k}"] = distinct / catalogue_size
    return out

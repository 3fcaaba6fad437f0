"""Accuracy metrics, with the conventions of the peer harness (``shared/bench/metrics.py``).

Rating metrics: RMSE and MAE over every held-out rating.

Top-N metrics at ``k``: a user's relevant items are their held-out items rated at least
``threshold``; users with no relevant item are not evaluated; a recommended item counts
as a hit only if it is relevant (so an item the user rated in training, which a correct
recommender never returns, cannot score). Precision@k = hits/k, Recall@k =
hits/|relevant|, NDCG@k with binary gains and log2(rank+1) discounts, HitRate@k = 1 if
any hit; all averaged over evaluated users, and a user without a list scores 0.
Coverage@k = distinct recommended items over all listed users / catalogue size.

Beyond accuracy (``beyond_accuracy``), over every list slot of every listed user: novelty = the
mean self-information ``-log2(n_i / n_users)`` of a recommended movie (``n_i`` its training
raters; Zhou et al. 2010); long-tail share = the share of slots outside the short head (the
most-rated movies that together hold ``head_share`` of the training ratings, 80% by default);
intra-list diversity = the mean, over lists, of the mean genre distance (1 - Jaccard) between
two of its movies. Given each user's number of training ratings, ``topn_metrics`` also splits the
evaluated users into thirds by it (light, medium, heavy) and gives each third's NDCG@k.
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


def _per_user(recommendations: pd.DataFrame, test: pd.DataFrame, k: int, threshold: float):
    """Per evaluated user: (user ids, hits, relevant count, NDCG@k); and the cut lists."""
    relevant = test.loc[test["rating"] >= threshold, ["userId", "movieId"]]
    rel_sets = relevant.groupby("userId")["movieId"].agg(frozenset).to_dict()
    recs = recommendations[recommendations["rank"] <= k].sort_values(["userId", "rank"])
    lists = recs.groupby("userId")["movieId"].agg(list).to_dict()
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    users = np.fromiter(rel_sets, np.int64, len(rel_sets))
    hits, n_rel, ndcg = (np.zeros(len(users)) for _ in range(3))
    for i, (user, rel) in enumerate(rel_sets.items()):
        items = lists.get(user, [])[:k]
        gains = np.array([1.0 if m in rel else 0.0 for m in items])
        hits[i], n_rel[i] = gains.sum(), len(rel)
        idcg = discounts[: min(len(rel), k)].sum()
        ndcg[i] = float((gains * discounts[: len(gains)]).sum() / idcg)
    return users, hits, n_rel, ndcg, recs


def ndcg_by_user(
    recommendations: pd.DataFrame, test: pd.DataFrame, k: int = 10, threshold: float = 4.0
) -> pd.Series:
    """NDCG@k of each evaluated user (those with a relevant test rating), by ``userId``: for
    paired comparisons of two systems on the same users."""
    users, _, _, ndcg, _ = _per_user(recommendations, test, k, threshold)
    return pd.Series(ndcg, index=users, name=f"ndcg@{k}")


def topn_metrics(
    recommendations: pd.DataFrame,
    test: pd.DataFrame,
    k: int = 10,
    threshold: float = 4.0,
    catalogue_size: int | None = None,
    train_counts: pd.Series | None = None,
) -> dict:
    """Score ``recommendations`` (``userId, rank, movieId``) against ``test`` ratings; with
    ``train_counts`` (userId -> training ratings), also ``by_activity``: the NDCG@k of the light,
    medium and heavy thirds of the evaluated users, with each third's bounds."""
    users, hits, n_rel, ndcg, recs = _per_user(recommendations, test, k, threshold)
    n = max(len(users), 1)
    out = {
        f"precision@{k}": float((hits / k).sum()) / n,
        f"recall@{k}": float((hits / np.maximum(n_rel, 1)).sum()) / n,
        f"ndcg@{k}": float(ndcg.sum()) / n,
        f"hitrate@{k}": float((hits > 0).sum()) / n,
        "n_eval_users": len(users),
    }
    if catalogue_size:
        out[f"coverage@{k}"] = recs["movieId"].nunique() / catalogue_size
    if train_counts is not None:
        out["by_activity"] = _by_activity(users, ndcg, train_counts, k)
    return out


def _by_activity(
    users: np.ndarray, ndcg: np.ndarray, train_counts: pd.Series, k: int
) -> list[dict]:
    """Per-user NDCG@k averaged over the thirds of ``users`` by their training ratings."""
    if len(users) == 0:
        return []
    counts = train_counts.reindex(users).fillna(0).to_numpy(np.int64)
    order = np.argsort(counts, kind="stable")
    out = []
    for name, part in zip(("light", "medium", "heavy"), np.array_split(order, 3)):
        if len(part) == 0:
            continue
        out.append(
            {
                "users": name,
                "n_users": len(part),
                "min_ratings": int(counts[part].min()),
                "max_ratings": int(counts[part].max()),
                f"ndcg@{k}": float(ndcg[part].mean()),
            }
        )
    return out


def beyond_accuracy(
    recommendations: pd.DataFrame,
    item_counts: pd.Series,
    n_users: int,
    genres: pd.DataFrame,
    k: int = 10,
    head_share: float = 0.8,
) -> dict:
    """Novelty, long-tail share and intra-list diversity of the top-``k`` lists (see the module
    docstring). ``item_counts``: movieId -> training ratings; ``genres``: 0/1 genre columns
    indexed by movieId."""
    recs = recommendations[recommendations["rank"] <= k].sort_values(["userId", "rank"])
    if recs.empty:
        return {"novelty": float("nan"), "long_tail_share": float("nan"), "diversity": float("nan")}
    movies = recs["movieId"].to_numpy(np.int64)
    counts = item_counts.reindex(movies).fillna(0).to_numpy(np.float64)
    novelty = float(np.mean(-np.log2(np.maximum(counts, 1.0) / max(n_users, 1))))
    ranked = item_counts.sort_values(ascending=False, kind="stable")
    within = ranked.cumsum().to_numpy() <= head_share * ranked.sum()
    head = set(ranked.index[within].tolist()) | {ranked.index[0]}
    tail = float(np.mean([m not in head for m in movies]))
    g = genres.reindex(movies).fillna(0).to_numpy(np.float64) > 0
    distances = []
    starts = np.flatnonzero(
        np.r_[True, recs["userId"].to_numpy()[1:] != recs["userId"].to_numpy()[:-1]]
    )
    for lo, hi in zip(starts, np.r_[starts[1:], len(movies)]):
        x = g[lo:hi]
        if len(x) < 2:
            continue
        inter = x.astype(np.float64) @ x.T.astype(np.float64)
        sizes = x.sum(axis=1)
        union = sizes[:, None] + sizes[None, :] - inter
        jaccard = np.divide(inter, union, out=np.ones_like(inter), where=union > 0)
        pairs = np.triu_indices(len(x), 1)
        distances.append(float(np.mean(1.0 - jaccard[pairs])))
    return {
        "novelty": novelty,
        "long_tail_share": tail,
        "diversity": float(np.mean(distances)) if distances else float("nan"),
        "head_items": len(head),
    }

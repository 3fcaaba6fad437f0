"""Held-out evaluation: rating and top-N metrics, baselines from the same run, a report with plots."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from contract.diversity import jaccard, rerank
from pipeline.evaluation.groups import evaluate_groups
from pipeline.evaluation.metrics import (
    beyond_accuracy,
    mae,
    rmse,
    topn_metrics,
)
from pipeline.features.tables import movie_genres
from pipeline.progress import progress
from pipeline.publish.live_export import build_live_model
from pipeline.runtime import map_blocks
from pipeline.train import FittedModels

log = logging.getLogger("pipeline")

CANDIDATES = 50  # what ``diversity`` re-ranks: a stored list's length (``PipelineConfig.top_n``)
CURVE_USERS = 5_000  # the diversity curve's users, at most (a seeded sample)


def bias_baseline(models: FittedModels, pairs: pd.DataFrame) -> np.ndarray:
    """mu + (shrunk user mean - mu) + (shrunk movie mean - mu): the damped-means baseline."""
    f = models.features
    mu = f.global_mean
    u = f.users["shrunk_mean"].reindex(pairs["userId"].to_numpy()).fillna(mu).to_numpy()
    m = f.movies["shrunk_mean"].reindex(pairs["movieId"].to_numpy()).fillna(mu).to_numpy()
    return np.clip(u + m - mu, 0.5, 5.0)


def predict_partitions(models: FittedModels, test, client=None, block_users: int = 8192):
    """Yield the test rows (pandas), a block of users at a time, with ``prediction`` and
    ``baseline`` columns, in any order: as Dask tasks on the cluster of ``client`` (the rating
    model without any user's state goes to every worker once; each task brings its users' test
    rows and their state), else in this process."""
    rows = test.compute() if hasattr(test, "compute") else test
    rows = rows.sort_values("userId", kind="stable", ignore_index=True)
    users = rows["userId"].to_numpy()
    firsts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    bounds = np.r_[firsts[::block_users], len(rows)]
    parts = (rows.iloc[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:]))
    if client is None:
        predicted = ((part, models.rating.predict(part)) for part in parts)
    else:
        held: dict[int, pd.DataFrame] = {}

        def blocks():
            for i, part in enumerate(parts):
                held[i] = part
                yield i, part, models.rating.users(part["userId"].to_numpy())

        predicted = (
            (held.pop(i), p)
            for i, p in map_blocks(
                client, _predict_part, models.rating.without_users(), blocks(), "test-predictions"
            )
        )
    for part, prediction in predicted:
        yield part.assign(prediction=prediction, baseline=bias_baseline(models, part))


def _predict_part(rating, i: int, part: pd.DataFrame, users) -> tuple[int, np.ndarray]:
    return i, rating.predict(part, users=users)


def evaluate_ratings(
    models: FittedModels, test, client=None, block_users: int = 8192
) -> tuple[dict, pd.DataFrame]:
    """RMSE/MAE of the rating model and of two baselines, plus per-row errors for plots."""
    parts = []
    for part in predict_partitions(models, test, client, block_users):
        n_user = (
            models.features.users["n_ratings"]
            .reindex(part["userId"].to_numpy())
            .fillna(0)
            .to_numpy()
        )
        parts.append(
            pd.DataFrame(
                {
                    "rating": part["rating"].to_numpy(np.float32),
                    "prediction": part["prediction"].to_numpy(np.float32),
                    "baseline": part["baseline"].to_numpy(np.float32),
                    "user_ratings": n_user.astype(np.int32),
                }
            )
        )
    rows = pd.concat(parts, ignore_index=True)
    mu = models.features.global_mean
    out = {
        "n_test": int(len(rows)),
        "model": {
            "rmse": rmse(rows.rating, rows.prediction),
            "mae": mae(rows.rating, rows.prediction),
        },
        "bias_baseline": {
            "rmse": rmse(rows.rating, rows.baseline),
            "mae": mae(rows.rating, rows.baseline),
        },
        "global_mean": {
            "rmse": rmse(rows.rating, np.full(len(rows), mu)),
            "mae": mae(rows.rating, np.full(len(rows), mu)),
        },
    }
    return out, rows


def top_n_frame(
    models: FittedModels, user_ids, n: int, client=None, block: int = 2048
) -> pd.DataFrame:
    """``userId, rank, movieId, score`` of every user's top-``n`` list, in blocks of users: as
    Dask tasks on the cluster of ``client`` (the top-N model without any user's data goes to
    every worker once, each task brings its users' ratings), else in this process. Users the
    matrix does not know get the most popular movies (score 0)."""
    user_ids = np.asarray(user_ids, np.int64)
    rows = models.matrix.user_index(user_ids)
    known = np.flatnonzero(rows >= 0)
    frames = []
    unknown = user_ids[rows < 0]
    if len(unknown):
        popular = models.popular_items(n)
        frames.append(
            pd.DataFrame(
                {
                    "userId": np.repeat(unknown, len(popular)),
                    "rank": np.tile(np.arange(1, len(popular) + 1), len(unknown)),
                    "movieId": np.tile(popular, len(unknown)),
                    "score": np.float32(0.0),
                }
            )
        )
    matrix = models.matrix

    def task_args(lo: int) -> tuple:
        block_rows = rows[known[lo : lo + block]]
        taste = None if models.topn.taste_users_ is None else models.topn.taste_users_[block_rows]
        return lo, matrix.csr[block_rows], matrix.timestamps_of(block_rows), taste, n

    blocks = (task_args(lo) for lo in range(0, len(known), block))
    with progress("top-N lists", len(user_ids), unit="users") as bar:
        bar.update(len(unknown))
        if client is None:
            results = (_block_top_n(models.topn, *b) for b in blocks)
        else:
            results = map_blocks(
                client, _block_top_n, models.topn.without_users(), blocks, "top-n-lists"
            )
        for lo, cols, scores in results:
            users = user_ids[known[lo : lo + len(cols)]]
            ok = cols >= 0
            frames.append(
                pd.DataFrame(
                    {
                        "userId": np.repeat(users, ok.sum(axis=1)),
                        "rank": (np.cumsum(ok, axis=1))[ok],
                        "movieId": models.matrix.item_ids[cols[ok]],
                        "score": scores[ok],
                    }
                )
            )
            bar.update(len(cols))
    if not frames:
        return pd.DataFrame({"userId": [], "rank": [], "movieId": [], "score": []})
    return pd.concat(frames, ignore_index=True).sort_values(["userId", "rank"], ignore_index=True)


def _block_top_n(
    topn, lo: int, ratings, timestamps, taste, n: int
) -> tuple[int, np.ndarray, np.ndarray]:
    """Top-``n`` matrix columns and scores of one block of users' ratings, their timestamps
    and their factors in the rating model (each or None), without "because" seeds."""
    cols, scores, _ = topn.recommend_matrix(
        ratings, n=n, exclude_seen=True, because=False, timestamps=timestamps, taste=taste
    )
    return lo, cols, scores


def evaluate_topn(
    models: FittedModels, test, k: int, threshold: float, client=None
) -> tuple[dict, pd.DataFrame]:
    """Top-k metrics of the recommender and of the popularity baseline on held-out items, and
    the lists they were cut from (``userId, rank, movieId``: the first ``CANDIDATES``, as
    published)."""
    relevant = test[test["rating"] >= threshold][["userId", "movieId", "rating"]].compute()
    users = np.unique(test["userId"].unique().compute().to_numpy())
    candidates = top_n_frame(models, users, max(k, CANDIDATES), client)
    recs = candidates[candidates["rank"] <= k]  # the same first k as a list of k
    matrix, movies = models.matrix, models.features.movies
    catalogue = len(matrix.item_ids)
    user_counts = pd.Series(np.diff(matrix.csr.indptr), index=matrix.user_ids)
    genres = movies[models.features.genre_columns]
    out = {"k": k, "threshold": threshold}
    for name, lists in (("model", recs), ("popularity", popularity_lists(models, users, k))):
        out[name] = {
            **topn_metrics(lists, relevant, k, threshold, catalogue, user_counts),
            **beyond_accuracy(lists, movies["n_ratings"], len(matrix.user_ids), genres, k),
        }
    out["diversity_curve"] = diversity_curve(
        candidates, relevant, k, threshold, catalogue, genres, movies["n_ratings"], len(user_counts)
    )
    return out, candidates


def evaluate_group_lists(
    models: FittedModels,
    movies: pd.DataFrame,
    test,
    candidates: pd.DataFrame,
    k: int,
    threshold: float,
    keep: int,
) -> list[dict]:
    """Watching together (``pipeline.evaluation.groups``): random groups of held-out users,
    each member known by their training ratings and their list (``candidates``: ``userId, rank,
    movieId``, as :func:`evaluate_topn` makes them), through the live model the API would serve."""
    live = build_live_model(
        models.topn.cut(keep),
        models.rating.mf_,
        models.matrix.item_ids,
        models.features.genres,
        movie_genres(movies),
    )
    held_out = test[test["rating"] >= threshold][["userId", "movieId", "rating"]].compute()
    matrix = models.matrix
    rows = matrix.user_index(np.unique(held_out["userId"].to_numpy()))
    history = {}
    for r in rows[rows >= 0].tolist():
        cols, ratings, _ = matrix.newest_first(r)  # as the API reads a served user's
        history[int(matrix.user_ids[r])] = (matrix.item_ids[cols], ratings.astype(np.float64))
    ordered = candidates.sort_values(["userId", "rank"])
    published = {int(u): ids.to_numpy(np.int64) for u, ids in ordered.groupby("userId")["movieId"]}
    return evaluate_groups(
        live, history, held_out, models.popular_items(500), k, threshold, published=published
    )


def diversity_curve(
    candidates: pd.DataFrame,
    relevant: pd.DataFrame,
    k: int,
    threshold: float,
    catalogue: int,
    genres: pd.DataFrame,
    item_counts: pd.Series,
    n_users: int,
    steps=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
    max_users: int = CURVE_USERS,
    seed: int = 0,
) -> list[dict]:
    """NDCG@k, intra-list diversity, coverage@k and novelty of the lists re-ranked with each
    ``diversity`` of ``steps`` (``contract.diversity``, as the API does with the served lists),
    over at most ``max_users`` of the listed users (a seeded sample)."""
    users = candidates["userId"].unique()
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    lists = candidates[candidates["userId"].isin(users)].sort_values(["userId", "rank"])
    bounds = np.flatnonzero(np.r_[True, np.diff(lists["userId"].to_numpy()) != 0, True])
    movies = lists["movieId"].to_numpy(np.int64)
    table = genres.reindex(movies).fillna(0).to_numpy(np.float64)
    per_user = [
        (lists["userId"].iat[lo], movies[lo:hi], jaccard(table[lo:hi]))
        for lo, hi in zip(bounds[:-1], bounds[1:])
    ]
    scored = relevant[relevant["userId"].isin(users)]
    curve = []
    for d in steps:
        rows = [
            (user, rank, int(m))
            for user, ids, sim in per_user
            for rank, m in enumerate(ids[rerank(sim, d, k)], start=1)
        ]
        top = pd.DataFrame(rows, columns=["userId", "rank", "movieId"])
        acc = topn_metrics(top, scored, k, threshold, catalogue)
        more = beyond_accuracy(top, item_counts, n_users, genres, k)
        curve.append(
            {
                "diversity": d,
                f"ndcg@{k}": acc[f"ndcg@{k}"],
                "intra_list_diversity": more["diversity"],
                f"coverage@{k}": acc[f"coverage@{k}"],
                "novelty": more["novelty"],
                "users": len(per_user),
            }
        )
    return curve


def popularity_lists(
    models: FittedModels, user_ids: np.ndarray, k: int, extra: int = 500
) -> pd.DataFrame:
    """The popularity baseline: each user's ``k`` most popular movies among the ``k + extra``
    most popular, leaving out the user's training items as the model does."""
    popular = np.asarray(models.popular_items(k + extra), np.int64)
    matrix = models.matrix
    rows = matrix.user_index(user_ids)
    cols = matrix.item_index(popular)
    seen = np.zeros((len(user_ids), len(popular)), bool)
    known, rated = np.flatnonzero(rows >= 0), np.flatnonzero(cols >= 0)
    for lo in range(0, len(known) if len(rated) else 0, 16_384):
        part = known[lo : lo + 16_384]
        seen[np.ix_(part, rated)] = matrix.csr[rows[part]][:, cols[rated]].toarray() != 0
    free = ~seen
    take = free & (np.cumsum(free, axis=1) <= k)
    return pd.DataFrame(
        {
            "userId": np.repeat(np.asarray(user_ids, np.int64), take.sum(axis=1)),
            "rank": np.cumsum(take, axis=1)[take],
            "movieId": np.broadcast_to(popular, take.shape)[take],
        }
    )


def write_report(
    out_dir: Path, report: dict, rating_rows: pd.DataFrame, clusters: pd.DataFrame | None
) -> None:
    """metrics.json, report.md and PNG plots in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2, default=float))

    err = rating_rows.prediction - rating_rows.rating
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(err, bins=np.arange(-4.5, 4.75, 0.25), color="#4c72b0")
    ax.set(
        title="Prediction error on held-out ratings", xlabel="predicted - actual", ylabel="ratings"
    )
    fig.tight_layout()
    fig.savefig(out_dir / "error_distribution.png", dpi=110)
    plt.close(fig)

    buckets = pd.cut(
        rating_rows.user_ratings,
        [0, 20, 50, 100, 250, 1000, np.inf],
        labels=["<=20", "21-50", "51-100", "101-250", "251-1000", ">1000"],
    )
    by = rating_rows.assign(
        b=buckets, se=err**2, sb=(rating_rows.baseline - rating_rows.rating) ** 2
    )
    by = by.groupby("b", observed=True)[["se", "sb"]].mean() ** 0.5
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(len(by))
    ax.bar(x - 0.2, by.se, 0.4, label="gradient boosting")
    ax.bar(x + 0.2, by.sb, 0.4, label="damped-means baseline")
    ax.set_xticks(x, by.index.astype(str))
    ax.set(title="RMSE by user activity (training ratings)", ylabel="RMSE")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "rmse_by_activity.png", dpi=110)
    plt.close(fig)

    topn = report.get("topn", {})
    k = topn.get("k", 10)
    groups = {n: topn.get(n, {}).get("by_activity", []) for n in ("model", "popularity")}
    if groups["model"]:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        x = np.arange(len(groups["model"]))
        for shift, (name, label) in zip(
            (-0.2, 0.2), (("model", "Movie Time top-N"), ("popularity", "popularity"))
        ):
            ax.bar(x + shift, [g[f"ndcg@{k}"] for g in groups[name]], 0.4, label=label)
        ax.set_xticks(
            x,
            [f"{g['users']}\n{g['min_ratings']}-{g['max_ratings']}" for g in groups["model"]],
        )
        ax.set(title=f"NDCG@{k} by user activity (training ratings)", ylabel=f"NDCG@{k}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / "ndcg_by_activity.png", dpi=110)
        plt.close(fig)

    curve = topn.get("diversity_curve") or []
    if curve:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        x = [c["intra_list_diversity"] for c in curve]
        y = [c[f"ndcg@{k}"] for c in curve]
        ax.plot(x, y, marker="o")
        for c, xi, yi in zip(curve, x, y):
            ax.annotate(
                f"{c['diversity']:.1f}", (xi, yi), textcoords="offset points", xytext=(4, 4)
            )
        ax.set(
            title=f"NDCG@{k} against intra-list diversity (labels: diversity=)",
            xlabel="intra-list genre diversity",
            ylabel=f"NDCG@{k}",
        )
        fig.tight_layout()
        fig.savefig(out_dir / "diversity_curve.png", dpi=110)
        plt.close(fig)

    if clusters is not None and len(clusters):
        fig, ax = plt.subplots(figsize=(6, 0.4 * len(clusters) + 1))
        ax.barh(
            [f"{c}: {', '.join(p[:3])}" for c, p in zip(clusters.index, clusters.persona)],
            clusters["size"],
        )
        ax.invert_yaxis()
        ax.set(title="User clusters (persona = top genres)", xlabel="users")
        fig.tight_layout()
        fig.savefig(out_dir / "clusters.png", dpi=110)
        plt.close(fig)

    (out_dir / "report.md").write_text(report_markdown(report, clusters))


def report_markdown(report: dict, clusters: pd.DataFrame | None) -> str:
    r, t = report["rating"], report["topn"]
    k = t["k"]
    lines = [
        f"# Movie Time evaluation — {report.get('dataset', '')}",
        "",
        f"Split: `{report.get('split', {})}`; {r['n_test']} held-out ratings; "
        f"{t['model']['n_eval_users']} users with a relevant held-out item (rating >= {t['threshold']}).",
        "",
        "## Rating prediction (held-out ratings)",
        "",
        "| model | RMSE | MAE |",
        "|---|---|---|",
    ]
    for name, label in (
        ("model", "gradient boosting (this run)"),
        ("bias_baseline", "damped user+movie means"),
        ("global_mean", "global mean"),
    ):
        lines.append(f"| {label} | {r[name]['rmse']:.4f} | {r[name]['mae']:.4f} |")
    lines += [
        "",
        f"## Top-{k} (held-out items)",
        "",
        f"| model | P@{k} | R@{k} | NDCG@{k} | HR@{k} | Cov@{k} |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in (("model", "Movie Time top-N (this run)"), ("popularity", "popularity")):
        m = t[name]
        lines.append(
            f"| {label} | {m[f'precision@{k}']:.4f} | {m[f'recall@{k}']:.4f} | {m[f'ndcg@{k}']:.4f} "
            f"| {m[f'hitrate@{k}']:.4f} | {m.get(f'coverage@{k}', float('nan')):.4f} |"
        )
    lines += [
        "",
        f"Beyond accuracy (top {k}): novelty = mean self-information of a recommended movie "
        "(bits; higher = less popular), long tail = share of list slots outside the most-rated "
        "movies holding 80% of the training ratings, diversity = mean genre distance "
        "(1 - Jaccard) within a list.",
        "",
        "| model | novelty | long tail | diversity | NDCG light / medium / heavy users |",
        "|---|---|---|---|---|",
    ]
    for name, label in (("model", "Movie Time top-N (this run)"), ("popularity", "popularity")):
        m = t[name]
        groups = " / ".join(f"{g[f'ndcg@{k}']:.4f}" for g in m.get("by_activity", []))
        lines.append(
            f"| {label} | {m.get('novelty', float('nan')):.2f} | "
            f"{m.get('long_tail_share', float('nan')):.3f} | {m.get('diversity', float('nan')):.3f} "
            f"| {groups} |"
        )
    bounds = ", ".join(
        f"{g['users']} {g['min_ratings']}-{g['max_ratings']} ratings ({g['n_users']} users)"
        for g in t["model"].get("by_activity", [])
    )
    if bounds:
        lines += ["", f"User activity thirds (training ratings): {bounds}."]
    curve = t.get("diversity_curve") or []
    if curve:
        lines += [
            "",
            f"More variety on request (`diversity=`, {curve[0]['users']} users): the first {k} of "
            f"each user's list re-ranked by maximal marginal relevance over genre similarity.",
            "",
            f"| diversity | NDCG@{k} | intra-list diversity | Cov@{k} | novelty |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {c['diversity']:.1f} | {c[f'ndcg@{k}']:.4f} | {c['intra_list_diversity']:.3f} "
            f"| {c[f'coverage@{k}']:.4f} | {c['novelty']:.2f} |"
            for c in curve
        ]
        lines += ["", "![diversity curve](diversity_curve.png)"]
    groups = report.get("groups") or []
    if groups:
        lines += [
            "",
            "## Watching together (random groups of held-out users)",
            "",
            f"Each group's list of {k} by the served rule (no-misery: the members' mean place in "
            "their own lists, none predicted below 3, or below their own mean if lower, for "
            "anyone), by plain averaging, least misery "
            f"and popularity; NDCG@{k} of each member's held-out ratings against the group's list. "
            f"A group hit: a movie of the list every member rated >= {t['threshold']}.",
            "",
            f"| group size | list by | groups | members' mean NDCG@{k} | least-served member "
            "| group hit rate |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {g['size']} | {g['by']} | {g['groups']} | {g[f'ndcg@{k}']:.4f} "
            f"| {g[f'least@{k}']:.4f} | {g['hit_rate']:.3f} |"
            for g in groups
        ]
    reasons = report.get("reasons")
    if reasons:
        kinds = ", ".join(
            f"{kind} {v['with_evidence']:,} of {v['items']:,}"
            for kind, v in reasons["by_kind"].items()
        )
        lines += [
            "",
            "## Reasons with their evidence (the published lists)",
            "",
            f"{reasons['share']:.1%} of the {reasons['items']:,} recommendations of "
            f"{reasons['users']:,} users (a seeded sample of the published lists) have a reason "
            f"that shows its evidence ({kinds}).",
        ]
    lines += [
        "",
        "![ndcg by activity](ndcg_by_activity.png)",
        "",
        "![errors](error_distribution.png)",
        "",
        "![rmse by activity](rmse_by_activity.png)",
        "",
    ]
    if clusters is not None and len(clusters):
        lines += ["## Clusters", "", "| cluster | users | persona |", "|---|---|---|"]
        lines += [
            f"| {c} | {s} | {', '.join(p)} |"
            for c, s, p in zip(clusters.index, clusters["size"], clusters.persona)
        ]
        lines += ["", "![clusters](clusters.png)", ""]
    if "timings" in report:
        lines += ["## Timings (s)", "", "| step | seconds |", "|---|---|"]
        lines += [f"| {s} | {v:.1f} |" for s, v in report["timings"].items()]
    return "\n".join(lines) + "\n"

"""Watching together, offline: random groups of held-out users, each group's list by each rule
of ``contract.groups`` and by popularity, scored on the members' held-out ratings.

Each member is known by their training ratings and their published list, as the API knows a
data-set user (``contract.live_model.UserSignals``, ``contract.groups.as_members``). A list is scored by the members' mean NDCG@k (each
member's held-out ratings against the group's list, ``pipeline.evaluation.metrics``), the
least-served member's NDCG@k, and the group hit rate: the share of groups whose list holds a
movie that every member rated at or above the threshold in the held-out part.
``benchmarks.groups`` prints the same table on the peer harness's split, with the timings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from contract.groups import RULES, as_members, recommend_group
from contract.live_model import LiveModel, UserSignals
from pipeline.evaluation.metrics import ndcg_by_user

SIZES = (2, 3, 4)
BY = (*RULES, "popularity")


def member_signals(history: tuple[np.ndarray, np.ndarray]) -> UserSignals:
    """A data-set user with no live state: their training ``(movie ids, ratings)``, newest
    first."""
    ids, ratings = history
    return UserSignals(
        dict(zip(ids.tolist(), map(float, ratings))),
        set(),
        set(),
        set(),
        newest_first=tuple(ids.tolist()),
    )


def random_groups(
    users: np.ndarray, sizes: Sequence[int], per_size: int, seed: int
) -> list[list[int]]:
    """``per_size`` groups of each size of distinct ``users`` (seeded)."""
    rng = np.random.default_rng(seed)
    return [
        [int(u) for u in rng.choice(users, size, replace=False)]
        for size in sizes
        for _ in range(per_size)
    ]


def group_lists(
    live: LiveModel,
    signals: Sequence[UserSignals],
    popular: Sequence[int],
    k: int,
    own: Sequence[Sequence[int] | None] | None = None,
) -> dict[str, list[int]]:
    """The group's top ``k`` by each rule, and the most popular movies no member has seen.
    ``own[j]``: member ``j``'s published list, as the API uses it for a data-set user with no
    live state (None: scored by the live model)."""
    seen = set().union(*(s.seen() for s in signals))
    lists = {"popularity": [int(m) for m in popular if int(m) not in seen][:k]}
    members = as_members(live, signals, published=own)  # scored once for every rule
    for rule in RULES:
        lists[rule] = recommend_group(live, members, k, rule=rule).movie_ids.tolist()
    return lists


def evaluate_groups(
    live: LiveModel,
    history: Mapping[int, tuple[np.ndarray, np.ndarray]],
    held_out: pd.DataFrame,
    popular: Sequence[int],
    k: int = 10,
    threshold: float = 4.0,
    sizes: Sequence[int] = SIZES,
    per_size: int = 100,
    seed: int = 5,
    published: Mapping[int, Sequence[int]] | None = None,
) -> list[dict]:
    """One row per group size and list: ``{"size", "by", "groups", "ndcg@k", "least@k",
    "hit_rate"}``. ``history``: each user's training ``(movie ids, ratings)``, newest first; ``held_out``:
    ``userId, movieId, rating`` rows; the groups are drawn from users with a relevant held-out
    rating and a history. ``published``: each user's published list (movie ids), the members'
    own lists as the API takes them for data-set users (else scored by the live model)."""
    relevant = held_out[held_out["rating"] >= threshold]
    liked = relevant.groupby("userId")["movieId"].agg(frozenset).to_dict()
    users = np.array(sorted(u for u in liked if u in history), np.int64)
    sizes = [s for s in sizes if s <= len(users)]
    # one pseudo-user per (group, list, member): every list is scored in one call
    keys, recs, rel, hit = [], [], [], []
    for g, members in enumerate(random_groups(users, sizes, per_size, seed)):
        own = [published.get(u) for u in members] if published is not None else None
        lists = group_lists(live, [member_signals(history[u]) for u in members], popular, k, own)
        common = frozenset.intersection(*(liked[u] for u in members))
        for by, items in lists.items():
            hit.append((len(members), by, bool(common & set(items))))
            for u in members:
                p = len(keys)
                keys.append((len(members), by, g))
                recs += [(p, rank, m) for rank, m in enumerate(items, 1)]
                rel += [(p, m, threshold) for m in liked[u]]
    ndcg = ndcg_by_user(
        pd.DataFrame(recs, columns=["userId", "rank", "movieId"]),
        pd.DataFrame(rel, columns=["userId", "movieId", "rating"]),
        k,
        threshold,
    )
    scored = pd.DataFrame(keys, columns=["size", "by", "group"]).assign(
        ndcg=ndcg.reindex(range(len(keys))).to_numpy()
    )
    per_group = scored.groupby(["size", "by", "group"], sort=False)["ndcg"].agg(["mean", "min"])
    per_list = per_group.groupby(level=["size", "by"], sort=False).mean()
    hit_rate = pd.DataFrame(hit, columns=["size", "by", "hit"]).groupby(["size", "by"])["hit"]
    out = [
        {
            "size": int(size),
            "by": by,
            "groups": int(hit_rate.size()[(size, by)]),
            f"ndcg@{k}": float(row["mean"]),
            f"least@{k}": float(row["min"]),
            "hit_rate": float(hit_rate.mean()[(size, by)]),
        }
        for (size, by), row in per_list.iterrows()
    ]
    order = {by: i for i, by in enumerate(BY)}
    return sorted(out, key=lambda r: (r["size"], order[r["by"]]))

"""Reasons with their evidence, checked on a loaded version: the share of the recommendations
a user sees first whose reason shows what it rests on (``contract.reasons.evidence``, the rule
the API applies when it answers), read back from the staged documents."""

from __future__ import annotations

from collections import Counter

import numpy as np

from contract import schema
from contract.reasons import evidence


def evidence_share(
    staging, user_ids: np.ndarray, k: int, sample: int = 2000, seed: int = 0
) -> dict:
    """``{"users", "items", "with_evidence", "share", "by_kind": {kind: {"items",
    "with_evidence"}}}`` over the first ``k`` of the lists of ``sample`` of ``user_ids`` (seeded),
    read from ``staging`` (a ``pipeline.publish.store.Staging`` with its users, movies and
    clusters written)."""
    ids = np.asarray(user_ids, np.int64)
    if len(ids) > sample:
        ids = np.sort(np.random.default_rng(seed).choice(ids, sample, replace=False))
    users = list(
        staging.collection(schema.USERS).find(
            {"_id": {"$in": ids.tolist()}}, {"cluster": 1, "top": 1}
        )
    )
    lists = [(u.get("cluster"), (u.get("top") or [])[:k]) for u in users]
    wanted = {e["movieId"] for _, top in lists for e in top}
    wanted |= {e["reason"]["movieId"] for _, top in lists for e in top if "movieId" in e["reason"]}
    movies = {
        d["_id"]: d
        for d in staging.collection(schema.MOVIES).find(
            {"_id": {"$in": sorted(wanted)}}, {"genres": 1, "terms": 1}
        )
    }
    personas = {
        d["_id"]: d.get("persona") or ()
        for d in staging.collection(schema.CLUSTERS).find({}, {"persona": 1})
    }
    items, shown = Counter(), Counter()
    for cluster, top in lists:
        for entry in top:
            reason, movie = entry["reason"], movies.get(entry["movieId"]) or {}
            seed = movies.get(reason.get("movieId")) or {}
            found = evidence(
                reason,
                movie.get("genres") or (),
                movie.get("terms") or (),
                seed.get("terms") or (),
                personas.get(cluster, ()),
            )
            items[reason["kind"]] += 1
            shown[reason["kind"]] += bool(found)
    total = sum(items.values())
    return {
        "users": len(users),
        "items": total,
        "with_evidence": sum(shown.values()),
        "share": sum(shown.values()) / max(total, 1),
        "by_kind": {
            kind: {"items": n, "with_evidence": shown[kind]} for kind, n in items.most_common()
        },
    }

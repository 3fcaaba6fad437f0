"""Reasons with their evidence, checked on a loaded version: the share of the recommendations
a user sees first whose reason shows what it rests on (``contract.reasons.evidence``, the rule
the API applies when it answers), for users' lists read back from the staged documents."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from contract import schema
from contract.reasons import evidence


def evidence_share(
    staging,
    user_ids: np.ndarray,
    k: int,
    terms: Mapping[int, Sequence[str]],
    genres: Mapping[int, Sequence[str]],
    personas: Mapping[int, Sequence[str]],
    sample: int = 2000,
    seed: int = 0,
) -> dict:
    """``{"users", "items", "with_evidence", "share", "by_kind": {kind: {"items",
    "with_evidence"}}}`` over the first ``k`` of the lists of ``sample`` of ``user_ids`` (seeded),
    read from ``staging`` (a ``pipeline.publish.store.Staging`` with its users written);
    ``terms``, ``genres`` and ``personas``: what the movie and cluster documents were given (each
    movie's evidence terms and genres, each cluster's persona genres)."""
    ids = np.asarray(user_ids, np.int64)
    if len(ids) > sample:
        ids = np.sort(np.random.default_rng(seed).choice(ids, sample, replace=False))
    users = list(
        staging.collection(schema.USERS).find(
            {"_id": {"$in": ids.tolist()}}, {"cluster": 1, "top": 1}
        )
    )
    items, shown = Counter(), Counter()
    for user in users:
        persona = personas.get(user.get("cluster"), ())
        for entry in (user.get("top") or [])[:k]:
            reason, movie = entry["reason"], entry["movieId"]
            found = evidence(
                reason,
                genres.get(movie, ()),
                terms.get(movie, ()),
                terms.get(reason.get("movieId"), ()),
                persona,
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

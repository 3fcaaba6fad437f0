"""More variety on request: a ranked list re-ranked by maximal marginal relevance (Carbonell and
Goldstein 1998) over the movies' genres.

Each next place goes to the candidate with the largest
``(1 - diversity) * relevance - diversity * (largest genre similarity to a movie placed before)``.
Relevance is by rank, ``1 - rank / len(candidates)``, so ``diversity`` 0 keeps the list exactly as
it was whatever its scores (a head/tail re-ranked list's scores need not decrease), and similarity
is the Jaccard index of two movies' genre sets, the measure the evaluation report's intra-list
diversity uses (its ``1 - Jaccard``). ``benchmarks.diversity`` gives the curve of NDCG@10 against
intra-list diversity as ``diversity`` goes from 0 to 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def genre_similarity(genres: Sequence[Iterable[str]]) -> np.ndarray:
    """The ``len(genres)`` square matrix of the Jaccard index of each two genre sets (1 on the
    diagonal; two movies without genres are similar 0)."""
    names = sorted({g for gs in genres for g in gs})
    column = {g: k for k, g in enumerate(names)}
    x = np.zeros((len(genres), len(names)), dtype=np.float64)
    for i, gs in enumerate(genres):
        x[i, [column[g] for g in set(gs)]] = 1.0
    return jaccard(x)


def jaccard(x: np.ndarray) -> np.ndarray:
    """The Jaccard index of each two rows of a 0/1 matrix (1 on the diagonal, 0 between two
    empty rows)."""
    x = np.asarray(x, dtype=np.float64)
    inter = x @ x.T
    sizes = x.sum(axis=1)
    union = sizes[:, None] + sizes[None, :] - inter
    out = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    np.fill_diagonal(out, 1.0)
    return out


def rerank(similarity: np.ndarray, diversity: float, n: int) -> list[int]:
    """Positions of the first ``n`` places of the re-ranked list (candidates given in rank order,
    ``similarity`` their square similarity matrix)."""
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"diversity must be from 0 to 1, got {diversity}")
    m = similarity.shape[0]
    n = min(n, m)
    if diversity == 0.0 or m == 0:
        return list(range(n))
    relevance = 1.0 - np.arange(m) / m
    closest = np.zeros(m)  # each candidate's largest similarity to the movies placed so far
    free = np.ones(m, dtype=bool)
    order: list[int] = []
    for _ in range(n):
        gain = np.where(free, (1.0 - diversity) * relevance - diversity * closest, -np.inf)
        best = int(np.argmax(gain))  # ties: the better ranked
        order.append(best)
        free[best] = False
        np.maximum(closest, similarity[best], out=closest)
    return order

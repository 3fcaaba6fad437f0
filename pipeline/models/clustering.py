"""Spectral clustering of users on their genre-preference profiles.

One method at every size. The RBF affinity between profiles is approximated with
scikit-learn's ``Nystroem`` on ``m`` landmark users (``m = n`` below ``n_landmarks``,
which makes it the exact kernel, so small data sets get exact spectral clustering).
With ``Phi`` the feature map (``Phi @ Phi.T ~= K``) and degrees ``d = Phi @ (Phi.T @ 1)``,
the leading eigenvectors of the normalised affinity ``D^-1/2 K D^-1/2`` are the left
singular vectors of ``D^-1/2 Phi`` (an ``n x m`` SVD, cheap for 200k users). Rows of the
first ``k`` eigenvectors are normalised and clustered with k-means, as in Ng, Jordan and
Weiss (2001).

Choosing k: the eigengap heuristic. With eigenvalues ``l1 >= l2 >= ...`` of the
normalised affinity, k is the ``k_min <= k <= k_max`` with the largest ``l_k - l_{k+1}``.
``n_clusters`` overrides it.

New users: the Nystroem out-of-sample extension puts a new profile into the same
spectral embedding, and the nearest k-means centre is its cluster. Everything that needs
is kept in :class:`contract.clusters.ClusterAssigner`, a handful of small arrays that the store persists.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from contract.clusters import ClusterAssigner


@dataclass(frozen=True)
class ClusterConfig:
    n_clusters: int | None = None  # override the eigengap choice
    k_min: int = 4
    k_max: int = 12
    n_landmarks: int = 800  # Nystroem landmarks; exact spectral clustering when users <= this
    gamma: float | None = None  # RBF width; None: 1 / median squared distance between profiles
    block_rows: int = 16_384  # users per block of the feature map (bounds its memory)
    seed: int = 42

    def __post_init__(self):
        if self.n_clusters is not None and self.n_clusters < 2:
            raise ValueError("n_clusters must be at least 2")
        if not 2 <= self.k_min <= self.k_max:
            raise ValueError("need 2 <= k_min <= k_max")


class UserClustering:
    """Spectral clustering of user genre profiles (rows: users, columns: genres)."""

    def __init__(self, config: ClusterConfig = ClusterConfig()):
        self.config = config

    def fit(self, profiles: pd.DataFrame) -> "UserClustering":
        from sklearn.cluster import KMeans
        from sklearn.kernel_approximation import Nystroem

        cfg = self.config
        x = profiles.to_numpy(np.float64)
        n = len(x)
        if n < cfg.k_min + 1:
            raise ValueError(f"need more than {cfg.k_min} users to cluster, got {n}")
        rng = np.random.default_rng(cfg.seed)
        gamma = cfg.gamma or _median_gamma(x, rng)
        m = min(n, cfg.n_landmarks)
        nys = Nystroem(kernel="rbf", gamma=gamma, n_components=m, random_state=cfg.seed).fit(x)
        # Phi (n x m) is never held whole: three passes over row blocks give Phi.T @ 1, the
        # m x m Gram of D^-1/2 Phi and the embedding (at 160k users Phi alone is 1 GB)
        blocks = [slice(lo, lo + cfg.block_rows) for lo in range(0, n, cfg.block_rows)]
        col_sum = sum(nys.transform(x[b]).sum(axis=0) for b in blocks)  # Phi.T @ 1

        def normalised(b: slice) -> np.ndarray:  # rows of D^-1/2 Phi
            phi = nys.transform(x[b])
            return phi / np.sqrt(np.maximum(phi @ col_sum, 1e-12))[:, None]

        gram = np.zeros((m, m))
        for b in blocks:
            phi_n = normalised(b)
            gram += phi_n.T @ phi_n
        # Eigen-pairs of the small (m x m) Gram matrix give the SVD of the tall D^-1/2 Phi.
        eig, v = np.linalg.eigh(gram)
        order = np.argsort(eig)[::-1]
        eig, v = np.maximum(eig[order], 0.0), v[:, order]  # eigenvalues of D^-1/2 K D^-1/2
        s = np.sqrt(np.maximum(eig, 1e-12))
        k_hi = min(cfg.k_max, len(eig) - 1)
        gaps = eig[cfg.k_min - 1 : k_hi] - eig[cfg.k_min : k_hi + 1]
        k = cfg.n_clusters or int(cfg.k_min + np.argmax(gaps))
        v_k = v[:, :k] / s[:k]  # (m, k)
        u = np.concatenate(
            [normalised(b) @ v_k for b in blocks]
        )  # leading eigenvectors of the affinity
        emb = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
        km = KMeans(n_clusters=k, n_init=10 if n <= 20_000 else 3, random_state=cfg.seed).fit(emb)
        self.assigner_ = ClusterAssigner(
            landmarks=nys.components_,
            gamma=gamma,
            projection=nys.normalization_.T @ v_k,
            degree_weights=nys.normalization_.T @ col_sum,
            centers=km.cluster_centers_,
        )
        self.labels_ = pd.Series(km.labels_.astype(np.int64), index=profiles.index, name="cluster")
        self.n_clusters_ = k
        self.eigenvalues_ = eig[: cfg.k_max + 1]
        self.exact_ = m == n
        self.gamma_ = gamma
        return self

    def assign(self, profiles) -> np.ndarray:
        return self.assigner_.assign(np.asarray(profiles, np.float64))


def _median_gamma(x: np.ndarray, rng: np.random.Generator, sample: int = 2000) -> float:
    idx = rng.choice(len(x), size=min(sample, len(x)), replace=False)
    s = x[idx]
    sq = (s**2).sum(axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * s @ s.T, 0.0)
    med = np.median(d2[np.triu_indices(len(s), k=1)]) if len(s) > 1 else 1.0
    return 1.0 / med if med > 0 else 1.0


def describe_clusters(
    labels: pd.Series,
    profiles: pd.DataFrame,
    genres: list[str],
    matrix,
    n_top: int = 20,
    like_threshold: float = 4.0,
) -> pd.DataFrame:
    """One row per cluster: size, persona (most over-represented genres), mean profile, top movies.

    ``persona`` ranks genres by how far the cluster's mean profile sits above the population
    mean, in population standard deviations. ``top_movies`` are the movies the most members
    rated at least ``like_threshold`` (with the share of members as the score).
    """
    x = profiles.loc[labels.index].to_numpy(np.float64)
    pop_mean, pop_std = x.mean(axis=0), x.std(axis=0) + 1e-9
    rows = matrix.user_index(labels.index.to_numpy())
    liked = matrix.binary(like_threshold)
    out = []
    for c in np.sort(labels.unique()):
        member = labels.to_numpy() == c
        mean = x[member].mean(axis=0)
        z = (mean - pop_mean) / pop_std
        persona = [genres[i] for i in np.argsort(-z)[:3]]
        r = rows[member & (rows >= 0)]
        counts = np.asarray(liked[r].sum(axis=0)).ravel() if len(r) else np.zeros(liked.shape[1])
        top = np.argsort(-counts, kind="stable")[:n_top]
        top = top[counts[top] > 0]
        out.append(
            {
                "cluster": int(c),
                "size": int(member.sum()),
                "persona": persona,
                "profile": {g: round(float(v), 4) for g, v in zip(genres, mean)},
                "top_movies": [
                    {
                        "movieId": int(matrix.item_ids[i]),
                        "score": round(float(counts[i]) / member.sum(), 4),
                    }
                    for i in top
                ],
            }
        )
    return pd.DataFrame(out).set_index("cluster")

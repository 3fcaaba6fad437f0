"""A user's genre-preference profile, and the published clusters it is assigned to.

The batch pipeline clusters training users (``pipeline.models.clustering``) and publishes a
:class:`ClusterAssigner`; the API assigns a new or live user with it, from the same profile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def genre_share_profile(genre_mass: np.ndarray, mass: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """The genre-preference profile, one row per user (the definition used everywhere).

    Each training rating ``r`` of a movie with genres ``G`` adds ``r`` to every genre in ``G``
    (``genre_mass``) and ``r * |G|`` to the user's total (``mass``); so ``genre_mass / mass`` is
    the user's rating-weighted genre share (sums to 1; well-liked movies count more). The profile
    is that share minus the population share ``prior`` (what the user watches and likes *more*
    than the average user), L2-normalised so users with many and few ratings are comparable.
    A user without any genre-tagged rating, or exactly at the prior, gets the zero vector.
    """
    genre_mass = np.atleast_2d(np.asarray(genre_mass, np.float64))
    mass = np.atleast_1d(np.asarray(mass, np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(mass[:, None] > 0, genre_mass / np.maximum(mass, 1e-300)[:, None], np.nan)
    centred = share - np.asarray(prior, np.float64)[None, :]
    centred = np.nan_to_num(centred, nan=0.0)
    norm = np.linalg.norm(centred, axis=1, keepdims=True)
    return np.where(norm > 1e-12, centred / np.where(norm > 1e-12, norm, 1.0), 0.0)


@dataclass
class ClusterAssigner:
    """What it takes to put a new profile into a cluster (all plain arrays, JSON-able)."""

    landmarks: np.ndarray  # (m, g) landmark profiles
    gamma: float
    projection: np.ndarray  # (m, k): normalisation.T @ V_k @ diag(1/s_k)
    degree_weights: np.ndarray  # (m,):   normalisation.T @ (Phi.T @ 1)
    centers: np.ndarray  # (k, k) k-means centres in the embedding

    def embed(self, profiles: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(profiles, float))
        sq = (
            (x * x).sum(1)[:, None]
            + (self.landmarks * self.landmarks).sum(1)[None, :]
            - 2 * x @ self.landmarks.T
        )
        kx = np.exp(
            -self.gamma * np.maximum(sq, 0.0)
        )  # the RBF kernel (as sklearn's rbf_kernel), numpy only
        degree = np.maximum(kx @ self.degree_weights, 1e-12)
        u = (kx @ self.projection) / np.sqrt(degree)[:, None]
        return u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)

    def assign(self, profiles: np.ndarray) -> np.ndarray:
        u = self.embed(profiles)
        d = ((u[:, None, :] - self.centers[None, :, :]) ** 2).sum(axis=2)
        return d.argmin(axis=1)

    def to_dict(self) -> dict:
        return {
            "landmarks": self.landmarks.tolist(),
            "gamma": float(self.gamma),
            "projection": self.projection.tolist(),
            "degree_weights": self.degree_weights.tolist(),
            "centers": self.centers.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ClusterAssigner":
        return cls(
            np.asarray(d["landmarks"], float),
            float(d["gamma"]),
            np.asarray(d["projection"], float),
            np.asarray(d["degree_weights"], float),
            np.asarray(d["centers"], float),
        )

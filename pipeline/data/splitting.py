"""Hold-out splits, made FIRST: everything downstream is fit on the training part only.

Three strategies, all deterministic for a seed and independent of how the data is
partitioned (each row's fate comes from a hash of its user, movie and the seed):

- ``random``: each rating goes to test with probability ``test_fraction``.
- ``user``: for every user with at least ``min_user_ratings`` ratings, a random
  ``max(1, floor(test_fraction * n_u))`` of their ratings go to test (the protocol of the
  peer benchmark's ``user-holdout`` split).
- ``temporal``: the same counts, but each user's *latest* ratings go to test, so the
  model is judged on the future of every user.

``user`` and ``temporal`` need each user's rows together, so they shuffle the ratings by
user (a Dask shuffle, fine at 25M ratings); ``random`` works partition by partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import dask.dataframe as dd

Strategy = Literal["random", "user", "temporal"]


@dataclass(frozen=True)
class SplitConfig:
    strategy: Strategy = "user"
    test_fraction: float = 0.2
    min_user_ratings: int = 5  # ``user``/``temporal``: users with fewer ratings stay whole in train
    seed: int = 42

    def __post_init__(self):
        if self.strategy not in ("random", "user", "temporal"):
            raise ValueError(
                f"unknown split strategy {self.strategy!r}: use random, user or temporal"
            )
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError("test_fraction must be between 0 and 1")


@dataclass
class Split:
    train: "dd.DataFrame"
    test: "dd.DataFrame"
    config: SplitConfig


def row_hash(users: np.ndarray, movies: np.ndarray, seed: int) -> np.ndarray:
    """A uniform float in [0, 1) per (user, movie, seed), via the splitmix64 finaliser."""
    with np.errstate(over="ignore"):
        x = (users.astype(np.uint64) << np.uint64(32)) ^ movies.astype(np.uint64)
        x = x ^ (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15))
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def mark_test(frame: pd.DataFrame, config: SplitConfig) -> pd.Series:
    """Boolean test flag for each row of a pandas frame holding *whole* users (or any rows for ``random``)."""
    h = row_hash(frame["userId"].to_numpy(), frame["movieId"].to_numpy(), config.seed)
    if config.strategy == "random":
        return pd.Series(h < config.test_fraction, index=frame.index)
    if frame.empty:
        return pd.Series(np.zeros(0, bool), index=frame.index)
    # Order inside each user: latest first (temporal) or by the row hash (user); the first
    # k_u rows of each user go to test.
    key = -frame["timestamp"].to_numpy(np.float64) if config.strategy == "temporal" else h
    order = pd.DataFrame({"u": frame["userId"].to_numpy(), "k": key, "h": h})
    rank = order.sort_values(["u", "k", "h"]).groupby("u").cumcount()
    rank = rank.reindex(order.index).to_numpy()
    n = order.groupby("u")["u"].transform("size").to_numpy()
    k = np.maximum(1, np.floor(config.test_fraction * n)).astype(np.int64)
    test = (n >= config.min_user_ratings) & (rank < k)
    return pd.Series(test, index=frame.index)


def split_ratings(ratings, config: SplitConfig) -> Split:
    """Split a Dask DataFrame of ratings into train and test (both Dask DataFrames, persisted)."""
    frame = ratings if config.strategy == "random" else ratings.shuffle(on="userId")
    flagged = frame.map_partitions(
        lambda p: p.assign(_test=mark_test(p, config)),
        meta=frame._meta.assign(_test=np.zeros(0, bool)),
    ).persist()
    train = flagged[~flagged["_test"]].drop(columns="_test")
    test = flagged[flagged["_test"]].drop(columns="_test")
    return Split(train=train, test=test, config=config)


def split_frame(ratings: pd.DataFrame, config: SplitConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The same split on a small pandas frame (tests, notebooks)."""
    flag = mark_test(ratings, config).to_numpy()
    return ratings[~flag].reset_index(drop=True), ratings[flag].reset_index(drop=True)

"""What one API process keeps of a served version (``VersionCache``, one per version, dropped
when the version is no longer served), and the bounded LRU helper its caches use."""

from __future__ import annotations

import threading
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_MISSING = object()


def put_bounded(cache: OrderedDict, items: Iterable[tuple[Any, Any]], limit: int) -> None:
    """Store ``items`` as the newest entries of ``cache``, then drop the oldest ones beyond
    ``limit`` (an LRU when readers ``move_to_end`` what they use). Call with the cache's lock held."""
    for key, value in items:
        cache[key] = value
        cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


@dataclass(frozen=True)
class ModelInfo:
    """What the API needs from ``models/{_id: version}``."""

    version: str
    genres: tuple[str, ...]  # the data set's genre names, as published
    popular: tuple[int, ...]  # movieIds, most popular first (the last-resort fallback)
    published_at: Any = None
    dataset: Mapping[str, Any] | None = None
    # pipeline.models.clustering.ClusterAssigner.to_dict()
    cluster_assigner: Mapping[str, Any] | None = None
    genre_prior: tuple[float, ...] = ()  # population genre shares, in ``genres`` order

    def genre(self, raw: str) -> str | None:
        """The data set's genre named ``raw`` in any case, or None."""
        return next((g for g in self.genres if g.lower() == raw.lower()), None)


@dataclass(frozen=True)
class ClusterMembers:
    """Users of one cluster, ordered by ``_id``, with their rating statistics."""

    ids: array  # 'q'
    n_ratings: array  # 'q'
    mean: array  # 'd'

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class VersionCache:
    """Per-version, per-process caches. Thread-safe through ``lock``."""

    version: str
    movie_limit: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    movies: OrderedDict = field(default_factory=OrderedDict)  # movieId -> details | None
    model: ModelInfo | None = None
    clusters: dict[int, dict] | None = None  # _id -> cluster doc
    members: dict[int, ClusterMembers] = field(default_factory=dict)
    similar: OrderedDict = field(default_factory=OrderedDict)  # movieId -> ((movieId, score), ...)
    live_model: Any = None  # contract.live_model.LiveModel, loaded on first use
    responses: OrderedDict = field(default_factory=OrderedDict)  # see ServingStore.cached

    def get_movies(self, ids: Iterable[int]) -> tuple[dict[int, dict | None], list[int]]:
        found: dict[int, dict | None] = {}
        missing: list[int] = []
        with self.lock:
            for mid in ids:
                value = self.movies.get(mid, _MISSING)
                if value is _MISSING:
                    missing.append(mid)
                else:
                    self.movies.move_to_end(mid)
                    found[mid] = value
        return found, missing

    def put_movies(self, docs: Mapping[int, dict | None]) -> None:
        if self.movie_limit <= 0:
            return
        with self.lock:
            put_bounded(self.movies, docs.items(), self.movie_limit)

"""The model the API uses to re-score one user at request time (new users, live feedback).

A run publishes it with its version, in the versioned collection ``livemodel``:

* the top-N model (:class:`pipeline.retrieval.TopNRecommender`) with each EASE ``B`` matrix cut
  to the ``keep`` largest-magnitude entries per input item (``sparsify_weights``): the same
  blend, normalisation, head/tail re-rank and "because" seeds as the precomputed lists, at a
  fraction of the memory. On ml-latest-small with ``keep = 200`` a user's re-scored top 10
  shares about 80% of its items with the full model's list, and takes about 1 ms;
* the biased matrix factorisation of the rating model (item factors and biases), which gives a
  folded-in user's predicted ratings (``BiasedMF.fold_in``: the exact user half-step of ALS);
* the catalogue's genres (a bit mask per movie), for genre preferences and new users' clusters.

Stored as numpy arrays in chunks of at most ``CHUNK_BYTES`` (a MongoDB document holds 16 MB),
one meta document with the scalars and the configuration. Everything here is plain numpy:
the API process never imports scikit-learn or Dask for it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from bson.binary import Binary

from pipeline.matrix import lookup
from pipeline.mf import BiasedMF, BiasedMFConfig
from pipeline.retrieval import TopNConfig, TopNRecommender, sparsify_weights
from pipeline.similarity import list_arrays

CHUNK_BYTES = 4 << 20
META_ID = "meta"
FORMAT = 1


@dataclass
class LiveModel:
    """What request-time scoring needs; see the module docstring."""

    movie_ids: np.ndarray  # int64, sorted: the rating matrix's columns (movies with ratings)
    topn: TopNRecommender  # sparse weights; works on positions in ``movie_ids``
    mf: BiasedMF  # item side only (no user factors)
    genres: tuple[str, ...]  # the genre vocabulary (bit k of a mask is genres[k])
    catalogue_ids: np.ndarray  # int64, sorted: every movie of the catalogue
    catalogue_genres: np.ndarray  # uint32 genre bit masks, per catalogue movie
    # The stored similar-movie lists (the movie documents' ``similar``) as CSR rows over
    # ``catalogue_ids``: the "because you liked" reasons of a re-score look them up in memory.
    similar_indptr: np.ndarray | None = None  # int64, len(catalogue_ids) + 1
    similar_ids: np.ndarray | None = None  # int64 movie ids
    similar_scores: np.ndarray | None = None  # float32

    # --- building -------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        topn: TopNRecommender,
        mf: BiasedMF,
        movie_ids: np.ndarray,
        genres: Iterable[str],
        catalogue: Mapping[int, Iterable[str]],
        keep: int = 200,
        similar: Mapping[int, Iterable[tuple[int, float]]] | None = None,
    ) -> "LiveModel":
        """From fitted models. ``catalogue`` maps every movieId to its genre names; ``similar``
        maps movieIds to their stored similar lists ``[(movieId, score), ...]``."""
        genres = tuple(genres)
        if len(genres) > 32:
            raise ValueError("at most 32 genres fit the genre bit masks")
        slim = copy.copy(topn)
        slim.weights_ = [sparsify_weights(b, keep) for b in topn.weights_]
        slim.user_ratings_ = None  # training users are not re-scored online
        item_side = BiasedMF(mf.config)
        for name in ("global_mean_", "item_ids_", "item_factors_", "item_bias_"):
            setattr(item_side, name, getattr(mf, name))
        ids = np.array(sorted(int(m) for m in catalogue), dtype=np.int64)
        bit = {g: 1 << k for k, g in enumerate(genres)}
        masks = np.array(
            [sum(bit.get(g, 0) for g in set(catalogue[int(m)])) for m in ids], dtype=np.uint32
        )
        indptr = sim_ids = sim_scores = None
        if similar is not None:
            indptr, sim_ids, sim_scores = list_arrays(similar, ids)
            sim_scores = np.array(
                [round(sc, 4) for sc in sim_scores.tolist()], np.float32
            )  # as stored
        return cls(
            np.asarray(movie_ids, np.int64),
            slim,
            item_side,
            genres,
            ids,
            masks,
            indptr,
            sim_ids,
            sim_scores,
        )

    # --- use ------------------------------------------------------------------------------------

    def columns(self, movie_ids) -> np.ndarray:
        """Matrix column of each movie id (-1 for movies without training ratings)."""
        return lookup(self.movie_ids, movie_ids)

    def genre_masks(self, movie_ids) -> np.ndarray:
        """Genre bit masks of movie ids (0 for unknown movies)."""
        pos = lookup(self.catalogue_ids, movie_ids)
        return np.where(pos >= 0, self.catalogue_genres[np.maximum(pos, 0)], 0).astype(np.uint32)

    def genre_mask(self, names: Iterable[str]) -> int:
        wanted = set(names)
        return sum(1 << k for k, g in enumerate(self.genres) if g in wanted)

    def similar_lists(self, movie_ids: Iterable[int]) -> dict[int, tuple] | None:
        """Each movie's stored similar movies as ``((movieId, score), ...)``, as
        ``api.store.ServingStore.similar_lists`` reads them; None when this model has none."""
        if self.similar_indptr is None:
            return None
        ids = list(dict.fromkeys(int(m) for m in movie_ids))
        pos = lookup(self.catalogue_ids, ids)
        out = {}
        for m, p in zip(ids, pos.tolist()):
            if p < 0:
                out[m] = ()
                continue
            lo, hi = int(self.similar_indptr[p]), int(self.similar_indptr[p + 1])
            out[m] = tuple(
                zip(self.similar_ids[lo:hi].tolist(), self.similar_scores[lo:hi].tolist())
            )
        return out

    def model_movie_ids(self) -> np.ndarray:
        """Movie ids of the top-N model's items, in the order of its affinity vectors."""
        return self.movie_ids[self.topn.items_]

    # --- storage --------------------------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        t = self.topn
        out = {
            "movie_ids": self.movie_ids,
            "catalogue_ids": self.catalogue_ids,
            "catalogue_genres": self.catalogue_genres,
            "topn.items": t.items_,
            "topn.counts": t.counts_,
            "topn.head_discount": t.head_discount_,
            "topn.tail_discount": t.tail_discount_,
            "topn.fallback": t.fallback_,
            "mf.item_ids": self.mf.item_ids_,
            "mf.item_factors": self.mf.item_factors_,
            "mf.item_bias": self.mf.item_bias_,
        }
        if self.similar_indptr is not None:
            out |= {
                "similar.indptr": self.similar_indptr,
                "similar.ids": self.similar_ids,
                "similar.scores": self.similar_scores,
            }
        for k, b in enumerate(t.weights_):
            out[f"topn.w{k}.indptr"] = b.indptr
            out[f"topn.w{k}.indices"] = b.indices
            out[f"topn.w{k}.data"] = b.data
        return out

    def to_docs(self) -> Iterator[dict]:
        """The documents of the ``livemodel`` collection."""
        t = self.topn
        yield {
            "_id": META_ID,
            "format": FORMAT,
            "genres": list(self.genres),
            "topn_config": asdict(t.config),
            "blend": [float(w) for w in t.blend_],
            "n_weights": len(t.weights_),
            "n_items": int(len(t.items_)),
            "mf_config": asdict(self.mf.config),
            "global_mean": float(self.mf.global_mean_),
        }
        for name, arr in self.arrays().items():
            arr = np.ascontiguousarray(arr)
            raw = arr.tobytes()
            n_chunks = max(1, -(-len(raw) // CHUNK_BYTES))
            for part in range(n_chunks):
                yield {
                    "_id": f"{name}:{part}",
                    "array": name,
                    "part": part,
                    "parts": n_chunks,
                    "dtype": arr.dtype.str,
                    "shape": list(arr.shape),
                    "data": Binary(raw[part * CHUNK_BYTES : (part + 1) * CHUNK_BYTES]),
                }

    @classmethod
    def from_docs(cls, docs: Iterable[Mapping[str, Any]]) -> "LiveModel":
        meta, chunks = None, {}
        for d in docs:
            if d["_id"] == META_ID:
                meta = d
            else:
                chunks.setdefault(d["array"], []).append(d)
        if meta is None or meta.get("format") != FORMAT:
            raise ValueError("no live model of a known format in these documents")
        arrays = {}
        for name, parts in chunks.items():
            parts.sort(key=lambda d: d["part"])
            if len(parts) != parts[0]["parts"]:
                raise ValueError(
                    f"live model array {name!r}: {len(parts)} of {parts[0]['parts']} chunks"
                )
            raw = b"".join(bytes(p["data"]) for p in parts)
            arrays[name] = np.frombuffer(raw, dtype=np.dtype(parts[0]["dtype"])).reshape(
                parts[0]["shape"]
            )

        topn = TopNRecommender(TopNConfig(**meta["topn_config"]))
        topn.items_ = arrays["topn.items"]
        topn.counts_ = arrays["topn.counts"]
        topn.col_to_model_ = np.full(len(arrays["movie_ids"]), -1, np.int64)
        topn.col_to_model_[topn.items_] = np.arange(len(topn.items_))
        topn.head_discount_ = arrays["topn.head_discount"]
        topn.tail_discount_ = arrays["topn.tail_discount"]
        topn.fallback_ = arrays["topn.fallback"]
        topn.user_ratings_ = None
        topn.blend_ = list(meta["blend"])
        n = meta["n_items"]
        topn.weights_ = [
            sp.csr_matrix(
                (
                    arrays[f"topn.w{k}.data"],
                    arrays[f"topn.w{k}.indices"],
                    arrays[f"topn.w{k}.indptr"],
                ),
                shape=(n, n),
            )
            for k in range(meta["n_weights"])
        ]
        mf = BiasedMF(BiasedMFConfig(**meta["mf_config"]))
        mf.global_mean_ = float(meta["global_mean"])
        mf.item_ids_ = arrays["mf.item_ids"]
        mf.item_factors_ = arrays["mf.item_factors"]
        mf.item_bias_ = arrays["mf.item_bias"]
        return cls(
            arrays["movie_ids"],
            topn,
            mf,
            tuple(meta["genres"]),
            arrays["catalogue_ids"],
            arrays["catalogue_genres"],
            arrays.get("similar.indptr"),
            arrays.get("similar.ids"),
            arrays.get("similar.scores"),
        )


# --- request-time scoring ------------------------------------------------------------------------

#: What a like or a dislike counts as where a rating is needed (the predicted-rating fold-in, and
#: the next pipeline run's training ratings). A like also feeds the top-N model as this rating.
LIKE_RATING = 4.5
DISLIKE_RATING = 1.0


@dataclass(frozen=True)
class ScoringConfig:
    similar_boost: float = 0.6
    """Affinity added to a liked (or live-rated >= ``boost_min_rating``) movie's most similar
    movie (a user's strongest items have affinity about 1), decaying by ``similar_decay`` per
    place down its similar list; subtracted for a disliked movie's similar movies. By rank, not
    similarity: similarities of one list are close together (0.42 to 0.34 for Toy Story's top 8)."""
    similar_decay: float = 0.85
    boost_min_rating: float = 4.0
    genre_boost: float = 1.0
    """Users who stated genres (onboarding): positive affinity times ``1 + genre_boost * p``, ``p``
    = the user's preference mass on the movie's genres (summed): each stated genre counts like a
    5-star rating of a movie of that genre alone, each rating ``r`` adds ``r`` to its movie's
    genres, and the masses are normalised to sum to 1."""
    stated_genre_mass: float = 5.0
    fold_in_min_weight: int = 20
    """The fold-in's ridge penalty counts at least this many ratings (``BiasedMF.fold_in``): one
    rating or a dislike must not swing every prediction (unregularised, one like of Star Wars
    and one dislike of Return of the Jedi predicted 0.5 for The Matrix)."""
    cold_off_genre: float = 0.25
    """A user with stated genres and no rating or like yet ranks popular movies; those with none
    of the stated genres count this much."""


@dataclass
class UserSignals:
    """Everything known about one user at request time."""

    ratings: dict[int, float]  # movieId -> rating: training ratings, overridden by live ones
    liked: set[int]
    disliked: set[int]
    hidden: set[int]  # "not interested": never recommended again
    genres: tuple[str, ...] = ()  # stated at onboarding
    boost_sources: dict[int, float] | None = None  # movieId -> +1 (pull its similar movies up) / -1

    def fold_in_rows(self) -> tuple[np.ndarray, np.ndarray]:
        rows = dict(self.ratings)
        for m in self.liked:
            rows.setdefault(m, LIKE_RATING)
        for m in self.disliked:
            rows.setdefault(m, DISLIKE_RATING)
        ids = np.fromiter(rows, np.int64, len(rows))
        return ids, np.array([rows[m] for m in ids], np.float64)


@dataclass
class LiveList:
    movie_ids: np.ndarray  # int64, rank order
    scores: np.ndarray  # float32 blended affinity (after boosts)
    because: np.ndarray  # int64 seed movie id of the top-N model, -1 when none
    predicted: np.ndarray  # float64 predicted ratings (MF fold-in), clipped to the rating scale


def recommend_live(
    model: LiveModel,
    signals: UserSignals,
    n: int,
    neighbors: Mapping[int, list[tuple[int, float]]] | None = None,
    config: ScoringConfig = ScoringConfig(),
) -> LiveList:
    """A user's top ``n`` from ``signals``: the top-N model on their ratings and likes, minus
    everything rated, liked, disliked or hidden, with the similar movies of ``boost_sources``
    (their lists in ``neighbors``) pulled up or down and stated genres preferred."""
    inputs = dict(signals.ratings)
    for m in signals.liked:
        inputs[m] = max(inputs.get(m, 0.0), LIKE_RATING)
    ids = np.fromiter(inputs, np.int64, len(inputs))
    vals = np.array([inputs[m] for m in ids], np.float32)
    seen = set(inputs) | signals.disliked | signals.hidden
    exclude = model.columns(np.fromiter(seen, np.int64, len(seen)))
    model_ids = model.model_movie_ids()
    cols = model.columns(ids)

    boost = np.zeros(len(model_ids), np.float32)
    pairs = [
        (mid, sign * config.similar_decay**rank)
        for source, sign in (signals.boost_sources or {}).items()
        for rank, (mid, _) in enumerate((neighbors or {}).get(source, ()))
    ]
    if pairs:
        c = model.columns([p[0] for p in pairs])
        pos = np.where(c >= 0, model.topn.col_to_model_[np.maximum(c, 0)], -1)
        ok = pos >= 0
        np.add.at(
            boost, pos[ok], config.similar_boost * np.array([p[1] for p in pairs], np.float32)[ok]
        )
    share = None
    if signals.genres:
        mass = (
            _bits(np.array([model.genre_mask([g]) for g in signals.genres], np.uint32)).sum(axis=0)
            * config.stated_genre_mass
        )
        if len(ids):
            mass = mass + vals.astype(np.float64) @ _bits(model.genre_masks(ids))
        pref = mass / max(mass.sum(), 1e-9)
        share = (_bits(model.genre_masks(model_ids)) @ pref).astype(np.float32)
    cold = not (cols >= 0).any()

    def adjust(affinity: np.ndarray) -> None:
        if share is not None:
            positive = affinity > 0
            affinity[positive] *= 1.0 + config.genre_boost * share[positive]
            if cold:
                affinity[share == 0] *= config.cold_off_genre
        affinity += boost

    items, scores, because = model.topn.recommend_for_ratings(
        cols, vals, n=n, exclude=exclude, adjust=adjust
    )
    ok = items[0] >= 0
    movie_ids = np.where(ok, model.movie_ids[np.maximum(items[0], 0)], -1)[ok]
    because_ids = np.where(because[0] >= 0, model.movie_ids[np.maximum(because[0], 0)], -1)[ok]
    f_ids, f_vals = signals.fold_in_rows()
    vector, bias = model.mf.fold_in(
        pd.DataFrame({"movieId": f_ids, "rating": f_vals}), config.fold_in_min_weight
    )
    predicted = np.clip(model.mf.predict_folded(vector, bias, movie_ids), 0.5, 5.0)
    return LiveList(
        movie_ids.astype(np.int64), scores[0][ok], because_ids.astype(np.int64), predicted
    )


def _bits(masks: np.ndarray) -> np.ndarray:
    """(n, 32) 0/1 matrix of genre bit masks: column k is genre k."""
    as_bytes = np.ascontiguousarray(masks, "<u4").view(np.uint8).reshape(-1, 4)
    return np.unpackbits(as_bytes, axis=1, bitorder="little").astype(np.float64)

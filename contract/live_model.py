"""The model the API uses to re-score one user at request time (new users, live feedback).

A run publishes it with its version (``pipeline.publish.live_export`` builds it from the fitted
models), in the versioned collection ``livemodel``:

* the top-N model's arrays (a :class:`contract.scoring.TopNScorer`) with each EASE ``B`` matrix
  cut to the ``keep`` largest-magnitude entries per input item: the same blend, normalisation,
  head/tail re-rank and "because" seeds as the precomputed lists, at a fraction of the memory
  (the README's "Measured results" give how close its lists stay to the full model's);
* the rating model's item side (a :class:`contract.scoring.ItemFactors`), which gives a
  folded-in user's predicted ratings (the exact user half-step of ALS) and their taste in the
  top-N list (``TopNScorer.taste_items``, derived from it when loaded);
* the catalogue's genres (a bit mask per movie), for genre preferences and new users' clusters.

Stored as numpy arrays in chunks of at most ``CHUNK_BYTES`` (a MongoDB document holds 16 MB),
one meta document with the scalars and the training settings. Everything here is plain numpy:
the API process never imports scikit-learn, Dask or the training code for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
from bson.binary import Binary

from contract.arrays import lookup
from contract.scoring import ItemFactors, ListRules, TopNScorer, newest_first_recency

CHUNK_BYTES = 4 << 20
META_ID = "meta"
FORMAT = 1


@dataclass
class LiveModel:
    """What request-time scoring needs; see the module docstring."""

    movie_ids: np.ndarray  # int64, sorted: the rating matrix's columns (movies with ratings)
    topn: TopNScorer  # sparse weights; works on positions in ``movie_ids``
    mf: ItemFactors
    genres: tuple[str, ...]  # the genre vocabulary (bit k of a mask is genres[k])
    catalogue_ids: np.ndarray  # int64, sorted: every movie of the catalogue
    catalogue_genres: np.ndarray  # uint32 genre bit masks, per catalogue movie
    counts: np.ndarray  # int64 training ratings per matrix column (``movie_ids``)
    # The stored similar-movie lists (the movie documents' ``similar``) as CSR rows over
    # ``catalogue_ids``: the "because you liked" reasons of a re-score look them up in memory.
    similar_indptr: np.ndarray | None = None  # int64, len(catalogue_ids) + 1
    similar_ids: np.ndarray | None = None  # int64 movie ids
    similar_scores: np.ndarray | None = None  # float32
    # The training settings of the two models, kept in the artifact as the run used them.
    topn_config: dict[str, Any] | None = None
    mf_config: dict[str, Any] | None = None

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
        ``api.store.serving.ServingStore.similar_lists`` reads them; None when this model has none."""
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
        return self.movie_ids[self.topn.items]

    # --- storage --------------------------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        t = self.topn
        out = {
            "movie_ids": self.movie_ids,
            "catalogue_ids": self.catalogue_ids,
            "catalogue_genres": self.catalogue_genres,
            "topn.items": t.items,
            "topn.counts": self.counts,
            "topn.head_discount": t.head_discount,
            "topn.tail_discount": t.tail_discount,
            "topn.fallback": t.fallback,
            "mf.item_ids": self.mf.item_ids,
            "mf.item_factors": self.mf.item_factors,
            "mf.item_bias": self.mf.item_bias,
        }
        if self.similar_indptr is not None:
            out |= {
                "similar.indptr": self.similar_indptr,
                "similar.ids": self.similar_ids,
                "similar.scores": self.similar_scores,
            }
        for k, b in enumerate(t.weights):
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
            "topn_config": self.topn_config,
            "blend": [float(w) for w in t.blend],
            "n_weights": len(t.weights),
            "n_items": int(len(t.items)),
            "mf_config": self.mf_config,
            "global_mean": float(self.mf.global_mean),
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

        items = arrays["topn.items"]
        col_to_model = np.full(len(arrays["movie_ids"]), -1, np.int64)
        col_to_model[items] = np.arange(len(items))
        n = meta["n_items"]
        weights = [
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
        mf = ItemFactors(
            float(meta["global_mean"]),
            arrays["mf.item_ids"],
            arrays["mf.item_factors"],
            arrays["mf.item_bias"],
            float(meta["mf_config"]["regularization"]),
        )
        topn = TopNScorer(
            ListRules.from_config(meta["topn_config"]),
            items,
            col_to_model,
            weights,
            list(meta["blend"]),
            arrays["topn.head_discount"],
            arrays["topn.tail_discount"],
            arrays["topn.fallback"],
            taste_items(mf, arrays["movie_ids"][items]),
        )
        return cls(
            arrays["movie_ids"],
            topn,
            mf,
            tuple(meta["genres"]),
            arrays["catalogue_ids"],
            arrays["catalogue_genres"],
            arrays["topn.counts"],
            arrays.get("similar.indptr"),
            arrays.get("similar.ids"),
            arrays.get("similar.scores"),
            meta["topn_config"],
            meta["mf_config"],
        )


def taste_items(mf: ItemFactors, movie_ids: np.ndarray) -> np.ndarray:
    """The rating model's item factors of ``movie_ids`` (zeros for a movie it does not know):
    the top-N scorer's ``taste_items``, the same arrays the run's top-N model held."""
    idx = lookup(mf.item_ids, np.asarray(movie_ids, np.int64))
    out = np.zeros((len(idx), mf.item_factors.shape[1]), np.float32)
    out[idx >= 0] = mf.item_factors[idx[idx >= 0]]
    return out


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
    full_boosts: int = 5
    """Up to this many boost sources each count in full; more share that much boost between
    them, so a user who onboards with 50 liked movies gets a list of their taste as a whole,
    not the pile-up of 50 similar lists (``benchmarks.onboarding``)."""
    boost_min_rating: float = 4.0
    genre_boost: float = 1.0
    """Users who stated genres (onboarding): positive affinity times ``1 + genre_boost * p``, ``p``
    = the user's preference mass on the movie's genres (summed): each stated genre counts like a
    5-star rating of a movie of that genre alone, each rating ``r`` adds ``r`` to its movie's
    genres, and the masses are normalised to sum to 1."""
    stated_genre_mass: float = 5.0
    fold_in_min_weight: int = 20
    """The fold-in's ridge penalty counts at least this many ratings (``ItemFactors.fold_in``): one
    rating or a dislike must not swing every prediction (unregularised, one like of Star Wars
    and one dislike of Return of the Jedi predicted 0.5 for The Matrix)."""
    taste_min_ratings: int = 20
    """The top-N list reads the user's taste (``TopNConfig.taste_weight``, their fold-in's
    ``p_u``) only when they have at least this many ratings, likes and dislikes: below
    ``fold_in_min_weight`` the fold-in is held near the average, and its taste did not help a new
    user's first list (``benchmarks.onboarding --validate``)."""
    cold_off_genre: float = 0.25
    """A user with stated genres and no rating or like yet ranks popular movies; those with none
    of the stated genres count this much."""
    cold_tail: bool = False
    """Whether a user with no rated model item (their affinity is popularity) gets the long-tail
    re-rank's picks too. Off: with no evidence of taste, the tail picks are merely the least
    discounted popular movies, and the whole list is the head's (``benchmarks.onboarding``
    measures both)."""


@dataclass
class UserSignals:
    """Everything known about one user at request time."""

    ratings: dict[int, float]  # movieId -> rating: training ratings, overridden by live ones
    liked: set[int]
    disliked: set[int]
    hidden: set[int]  # "not interested": never recommended again
    genres: tuple[str, ...] = ()  # stated at onboarding
    boost_sources: dict[int, float] | None = None  # movieId -> +1 (pull its similar movies up) / -1
    newest_first: tuple[int, ...] = ()
    """The rated and liked movies, newest first, for the recency weights of the user's ratings
    (``ListRules.recency_weights``); empty: every rating weighs alike."""

    def seen(self) -> set[int]:
        """Every movie the user rated, liked, disliked or hid: never recommended to them."""
        return set(self.ratings) | self.liked | self.disliked | self.hidden

    def fold_in_rows(self) -> tuple[np.ndarray, np.ndarray]:
        rows = dict(self.ratings)
        for m in self.liked:
            rows.setdefault(m, LIKE_RATING)
        for m in self.disliked:
            rows.setdefault(m, DISLIKE_RATING)
        ids = np.fromiter(rows, np.int64, len(rows))
        return ids, np.array([rows[m] for m in ids], np.float64)

    def n_fold_in_rows(self) -> int:
        """``len(fold_in_rows()[0])`` (the movies rated, liked or disliked) without building the
        rows: a tenth of the time for a user with hundreds of ratings."""
        return len(self.ratings.keys() | self.liked | self.disliked)


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
    because: bool = True,
    folded: tuple[np.ndarray, float] | None = None,
) -> LiveList:
    """A user's top ``n`` from ``signals``: the top-N model on their ratings and likes, minus
    everything rated, liked, disliked or hidden, with the similar movies of ``boost_sources``
    (their lists in ``neighbors``) pulled up or down and stated genres preferred.
    ``because=False`` leaves the "because" seeds out (all -1): most of a one-user list's time.
    ``folded``: the user's :func:`fold_in`, when the caller has it already."""
    return recommend_live_many(model, [signals], n, [neighbors], config, because, [folded])[0]


def recommend_live_many(
    model: LiveModel,
    signals: Sequence[UserSignals],
    n: int,
    neighbors: Sequence[Mapping[int, list[tuple[int, float]]] | None] | None = None,
    config: ScoringConfig = ScoringConfig(),
    because: bool = True,
    folded: Sequence[tuple[np.ndarray, float] | None] | None = None,
) -> list[LiveList]:
    """:func:`recommend_live` of several users (``neighbors[k]`` and ``folded[k]`` are user
    ``k``'s): the same lists, scored together (``TopNScorer.for_rows``), so a group's members
    cost little more than one of them."""
    asks = [
        _ask(model, sig, (neighbors or [None] * len(signals))[k], config)
        for k, sig in enumerate(signals)
    ]
    # each user's factors in the rating model: their taste in the list, their predicted ratings
    folds = [
        mine if mine is not None else fold_in(model, signals[k], config)
        for k, mine in enumerate(folded or [None] * len(asks))
    ]
    out: list[LiveList | None] = [None] * len(asks)
    for cold in (False, True):  # a cold user's list has no long-tail picks (its own rules)
        users = [k for k, ask in enumerate(asks) if (ask.cold and not config.cold_tail) == cold]
        if not users:
            continue
        scorer = model.topn
        if cold:
            scorer = replace(scorer, rules=replace(scorer.rules, head_size=n))
        items, scores, seeds = scorer.for_rows(
            [(asks[k].cols, asks[k].vals) for k in users],
            n,
            [asks[k].exclude for k in users],
            [asks[k].adjust for k in users],
            because,
            [asks[k].recency for k in users],
            [
                folds[k][0] if signals[k].n_fold_in_rows() >= config.taste_min_ratings else None
                for k in users
            ],
        )
        for j, k in enumerate(users):
            ok = items[j] >= 0
            movie_ids = np.where(ok, model.movie_ids[np.maximum(items[j], 0)], -1)[ok]
            because_ids = np.where(seeds[j] >= 0, model.movie_ids[np.maximum(seeds[j], 0)], -1)
            out[k] = LiveList(
                movie_ids.astype(np.int64),
                scores[j][ok],
                because_ids[ok].astype(np.int64),
                predicted_ratings(model, folds[k], movie_ids),
            )
    return out


@dataclass
class _Ask:
    """One user's scoring request: their inputs on matrix columns, what to leave out, the
    adjustment of their affinity row, and whether they have no rated model item."""

    cols: np.ndarray
    vals: np.ndarray
    exclude: np.ndarray
    adjust: Callable[[np.ndarray], None]
    cold: bool
    recency: np.ndarray | None = None  # each input's (``contract.scoring.recency``), or None


def _ask(
    model: LiveModel,
    signals: UserSignals,
    neighbors: Mapping[int, list[tuple[int, float]]] | None,
    config: ScoringConfig,
) -> _Ask:
    inputs = dict(signals.ratings)
    for m in signals.liked:
        inputs[m] = max(inputs.get(m, 0.0), LIKE_RATING)
    ids = np.fromiter(inputs, np.int64, len(inputs))
    vals = np.array([inputs[m] for m in ids], np.float32)
    seen = signals.seen()
    exclude = model.columns(np.fromiter(seen, np.int64, len(seen)))
    model_ids = model.model_movie_ids()
    cols = model.columns(ids)
    recency = None
    if signals.newest_first and len(ids):
        place = {m: k for k, m in enumerate(dict.fromkeys(signals.newest_first))}
        order = np.argsort([place.get(m, len(place)) for m in ids.tolist()], kind="stable")
        recency = np.empty(len(ids), np.float32)
        recency[order] = newest_first_recency(len(ids))

    boost = np.zeros(len(model_ids), np.float32)
    sources = signals.boost_sources or {}
    share_of_each = min(1.0, config.full_boosts / max(len(sources), 1))
    pairs = [
        (mid, sign * share_of_each * config.similar_decay**rank)
        for source, sign in sources.items()
        for rank, (mid, _) in enumerate((neighbors or {}).get(source, ()))
    ]
    if pairs:
        c = model.columns([p[0] for p in pairs])
        pos = np.where(c >= 0, model.topn.col_to_model[np.maximum(c, 0)], -1)
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
    # no rated model item: the affinity is the model's fallback, popularity
    cold = not (model.topn.col_to_model[cols[cols >= 0]] >= 0).any()

    def adjust(affinity: np.ndarray) -> None:
        if share is not None:
            positive = affinity > 0
            affinity[positive] *= 1.0 + config.genre_boost * share[positive]
            if cold:
                affinity[share == 0] *= config.cold_off_genre
        affinity += boost

    return _Ask(cols, vals, exclude, adjust, cold, recency)


def fold_in(
    model: LiveModel, signals: UserSignals, config: ScoringConfig = ScoringConfig()
) -> tuple[np.ndarray, float]:
    """The user's vector and bias in the rating model (``ItemFactors.fold_in`` of their ratings,
    likes and dislikes): their predicted ratings are ``model.mf.predict_folded(vector, bias,
    movie_ids)``."""
    f_ids, f_vals = signals.fold_in_rows()
    return model.mf.fold_in(f_ids, f_vals, config.fold_in_min_weight)


def predicted_ratings(
    model: LiveModel, folded: tuple[np.ndarray, float], movie_ids: np.ndarray
) -> np.ndarray:
    """A folded-in user's predicted ratings of ``movie_ids``, clipped to the rating scale."""
    vector, bias = folded
    return np.clip(model.mf.predict_folded(vector, bias, movie_ids), 0.5, 5.0)


def _bits(masks: np.ndarray) -> np.ndarray:
    """(n, 32) 0/1 matrix of genre bit masks: column k is genre k."""
    as_bytes = np.ascontiguousarray(masks, "<u4").view(np.uint8).reshape(-1, 4)
    return np.unpackbits(as_bytes, axis=1, bitorder="little").astype(np.float64)

"""Similar movies: a blend of collaborative and content similarity.

Collaborative similarity
    Cosine of two movies' rating columns (value ``rating / 5``) with shrinkage,
    ``x_i . x_j / (|x_i| |x_j| + shrinkage)``: pairs backed by few co-ratings are
    pulled towards 0, so a movie rated by three people does not look "identical"
    to another that the same three people rated.

Content similarity
    Cosine of TF-IDF vectors (scikit-learn ``TfidfVectorizer``) of each movie's text
    (genres, user tags, TMDB keywords). It covers movies without any rating.

Blend
    ``(1 - content_weight) * collaborative + content_weight * content``. Movies with
    little rating evidence have small collaborative scores (shrinkage), so content
    decides for them; well-rated movies are ranked mostly by co-rating.

Neighbours are computed block by block (``block`` movies x all movies as dense
float32), keeping only the top ``n_neighbors`` of each row, so memory stays bounded
at any catalogue size.

"Because you liked" seeds
    :func:`neighbour_matrix` turns the similar lists into one sparse matrix (entry
    ``(i, j)`` = score of ``j`` in ``i``'s list) and :func:`similar_seeds` finds, for
    each recommended movie ``j`` of a block of users, the movie ``i`` the user liked
    whose similar list holds ``j`` (highest score; ties: higher rating, then more
    recent, then lower column). Both are vectorised: a block costs one pass over the
    block's liked ratings times ``n_neighbors``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from contract.arrays import lookup
from contract.products import dense_product
from contract.topk import top_positions
from pipeline.features.matrix import RatingMatrix, ranges
from pipeline.progress import progress
from pipeline.runtime import map_blocks


@dataclass(frozen=True)
class SimilarityConfig:
    """Settings of :class:`SimilarMovies`."""

    n_neighbors: int = 20
    """Neighbours kept per movie (itself excluded; only positive scores)."""
    content_weight: float = 0.3
    """Weight of the content cosine in the blend (0 = ratings only, 1 = content only)."""
    shrinkage: float = 20.0
    """Added to the cosine denominator of the collaborative similarity."""
    rating_scale: float = 5.0
    """Collaborative input value is ``rating / rating_scale``."""
    min_df: int = 1
    """TF-IDF: ignore terms in fewer movies than this."""
    max_features: int | None = 100_000
    """TF-IDF: vocabulary cap (most frequent terms)."""
    ngram_max: int = 1
    """TF-IDF: longest word n-gram."""
    block: int = 512
    """Movies per block when scoring (a few dense ``block x n_movies`` float32 tables at a
    time: 0.37 GiB traced at 512 x 62,423, 0.75 at 1,024)."""
    dense_terms: int = 64
    """The content cosine's most frequent terms (genres, common tags) are kept as a dense
    ``n_movies x dense_terms`` float32 table and multiplied by BLAS: they make the content
    scores dense, which a sparse product builds an entry at a time."""


class SimilarMovies:
    """Top-k similar movies by blended collaborative + content cosine.

    Fitted attributes: ``movie_ids_`` (sorted external ids: the union of the matrix
    columns and the content index), ``ratings_`` (movies x users, ``rating / scale``,
    CSR), ``rating_norms_``, ``tfidf_`` (movies x terms, L2-normalised rows, CSR),
    ``vectorizer_``.
    """

    def __init__(self, config: SimilarityConfig = SimilarityConfig()):
        self.config = config

    def fit(self, matrix: RatingMatrix, content_text: pd.Series) -> "SimilarMovies":
        cfg = self.config
        text = content_text.dropna()
        text_ids = np.asarray(text.index, dtype=np.int64)
        self.movie_ids_ = np.union1d(np.asarray(matrix.item_ids, dtype=np.int64), text_ids)
        n = len(self.movie_ids_)

        # collaborative: movies x users, rows aligned with movie_ids_
        item_pos = np.searchsorted(self.movie_ids_, matrix.item_ids)
        ratings = matrix.csr.tocsc().astype(np.float32)
        ratings.data /= cfg.rating_scale
        ratings = ratings.T.tocsr()  # matrix items x users
        perm = sp.csr_matrix(
            (np.ones(len(item_pos), np.float32), (item_pos, np.arange(len(item_pos)))),
            shape=(n, len(item_pos)),
        )
        self.ratings_ = (perm @ ratings).tocsr()
        self.rating_norms_ = np.sqrt(
            np.asarray(self.ratings_.multiply(self.ratings_).sum(axis=1)).ravel()
        )

        # content: TF-IDF rows aligned with movie_ids_ (movies without text stay empty)
        self.vectorizer_ = TfidfVectorizer(
            min_df=cfg.min_df,
            max_features=cfg.max_features,
            ngram_range=(1, cfg.ngram_max),
            sublinear_tf=True,
            dtype=np.float32,
        )
        docs = text.astype(str).to_numpy()
        try:
            tfidf = self.vectorizer_.fit_transform(docs)
        except ValueError:  # no usable term at all (empty or stop-word-only texts)
            tfidf = sp.csr_matrix((len(docs), 0), dtype=np.float32)
        rows = np.searchsorted(self.movie_ids_, text_ids)
        perm = sp.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, np.arange(len(rows)))), shape=(n, len(rows))
        )
        self.tfidf_ = (perm @ tfidf).tocsr()
        self._ratings_t = self.ratings_.T.tocsr()
        frequency = np.bincount(self.tfidf_.indices, minlength=self.tfidf_.shape[1])
        frequent = np.zeros(self.tfidf_.shape[1], bool)
        frequent[np.argsort(-frequency, kind="stable")[: cfg.dense_terms]] = True
        self._content_dense = self.tfidf_[:, np.flatnonzero(frequent)].toarray()
        self._content_rare = self.tfidf_[:, np.flatnonzero(~frequent)].tocsr()
        self._content_rare_t = self._content_rare.T.tocsr()
        return self

    def neighbors(self, movie_ids: np.ndarray) -> list[list[tuple[int, float]]]:
        """For each external movie id: ``[(movieId, score), ...]`` best first, itself
        excluded; an empty list for an unknown id."""
        ids = np.asarray(movie_ids, dtype=np.int64).reshape(-1)
        pos = lookup(self.movie_ids_, ids)
        out: list[list[tuple[int, float]]] = [[] for _ in ids]
        idx = np.flatnonzero(pos >= 0)
        for start in range(0, len(idx), self.config.block):
            chunk = idx[start : start + self.config.block]
            lengths, nbrs, scores = self._neighbour_arrays(pos[chunk])
            ends = np.cumsum(lengths)
            for i, lo, hi in zip(chunk, (ends - lengths).tolist(), ends.tolist()):
                out[i] = list(zip(nbrs[lo:hi].tolist(), scores[lo:hi].tolist()))
        return out

    def block_lists(
        self, lo: int, hi: int, own: "MovieRows | None" = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(lengths, neighbour ids, scores)`` of the movies at positions ``lo .. hi - 1``: each
        list best first (ties: lower id), only positive scores; ``SimilarLists.from_blocks``.
        ``own``: those movies' rows (:meth:`rows_of`), for a copy without them
        (:meth:`without_rows`)."""
        return self._neighbour_arrays(np.arange(lo, hi), own)

    def rows_of(self, lo: int, hi: int) -> "MovieRows":
        """The rating and rare-term rows of the movies at positions ``lo .. hi - 1``."""
        return MovieRows(self.ratings_[lo:hi], self._content_rare[lo:hi])

    def without_rows(self) -> "SimilarMovies":
        """A copy that shares everything a block scores against (the users x movies ratings,
        the term tables) and holds no movie's own rows: what each Dask worker needs when every
        task brings its block's rows (:meth:`rows_of`)."""
        out = copy.copy(self)
        out.ratings_ = out.tfidf_ = out.vectorizer_ = out._content_rare = None
        return out

    # ----------------------------------------------------------------- internals
    def block_scores(self, rows: np.ndarray, own: "MovieRows | None" = None) -> np.ndarray:
        """Blended similarity of the movies at positions ``rows`` to all movies (dense float32);
        ``own``: those movies' rows, when this copy does not hold them."""
        cfg = self.config
        own = own or MovieRows(self.ratings_[rows], self._content_rare[rows])
        # float32 and in place: each step is one pass over a block x catalogue table
        scores = _dense32(own.ratings, self._ratings_t)
        norms = self.rating_norms_.astype(np.float32)
        denom = np.multiply(norms[rows][:, None], norms[None, :], dtype=np.float32)
        denom += np.float32(cfg.shrinkage)
        np.divide(scores, denom, out=scores, where=denom > 0)
        scores[denom <= 0] = 0.0
        del denom
        scores *= np.float32(1.0 - cfg.content_weight)
        # the term tables (frequent columns, rare rows) together hold every TF-IDF term
        if cfg.content_weight > 0 and self._content_dense.shape[1] + self._content_rare_t.shape[0]:
            dense = self._content_dense
            content = dense[rows] @ dense.T
            content += _dense32(own.rare, self._content_rare_t)
            content *= np.float32(cfg.content_weight)
            scores += content
        scores[np.arange(len(rows)), rows] = -np.inf  # never its own neighbour
        return scores

    def _neighbour_arrays(
        self, rows: np.ndarray, own: "MovieRows | None" = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scores = self.block_scores(rows, own)
        k = min(self.config.n_neighbors, scores.shape[1] - 1)
        if k <= 0:
            return np.zeros(len(rows), np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
        part = top_positions(scores, k)  # best first, ties by lower position (= lower id)
        vals = np.take_along_axis(scores, part, axis=1)
        keep = vals > 0
        return (
            keep.sum(axis=1).astype(np.int64),
            self.movie_ids_[part[keep]],
            vals[keep].astype(np.float32),
        )


class SimilarLists(Mapping):
    """Every movie's similar list as CSR rows over ``movie_ids`` (sorted int64): ``indptr``,
    ``ids`` (neighbour movie ids, each list best first) and ``scores`` (float32). Read as a
    mapping movieId -> ``[(movieId, score), ...]``; about 12 bytes per entry, where a dict of
    such lists takes about ten times more (0.4 GiB at 62,423 movies x 64)."""

    def __init__(
        self, movie_ids: np.ndarray, indptr: np.ndarray, ids: np.ndarray, scores: np.ndarray
    ):
        self.movie_ids, self.indptr, self.ids, self.scores = movie_ids, indptr, ids, scores

    @classmethod
    def from_blocks(cls, movie_ids: np.ndarray, blocks) -> "SimilarLists":
        """From ``(lengths, ids, scores)`` blocks (:meth:`SimilarMovies.block_lists`) that cover
        ``movie_ids`` in order."""
        blocks = list(blocks) or [
            (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))
        ]
        lengths, ids, scores = (np.concatenate(column) for column in zip(*blocks))
        return cls(
            np.asarray(movie_ids, np.int64),
            np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            ids,
            scores,
        )

    def __getitem__(self, movie_id) -> list[tuple[int, float]]:
        p = int(lookup(self.movie_ids, [movie_id])[0])
        if p < 0:
            raise KeyError(movie_id)
        lo, hi = self.indptr[p], self.indptr[p + 1]
        return list(zip(self.ids[lo:hi].tolist(), self.scores[lo:hi].tolist()))

    def __iter__(self) -> Iterator[int]:
        return iter(self.movie_ids.tolist())

    def __len__(self) -> int:
        return len(self.movie_ids)


def list_arrays(
    similar: Mapping[int, Sequence[tuple[int, float]]], movie_ids
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indptr, ids, scores)``: the similar lists of ``movie_ids``, in that order, as CSR rows
    (an empty row for a movie without a list), from :class:`SimilarLists` without building
    tuples, or from any mapping of lists."""
    movie_ids = np.asarray(movie_ids, np.int64)
    if isinstance(similar, SimilarLists):
        pos = lookup(similar.movie_ids, movie_ids)
        lo = np.where(pos >= 0, similar.indptr[np.maximum(pos, 0)], 0)
        lengths = np.where(pos >= 0, similar.indptr[np.maximum(pos, 0) + 1] - lo, 0)
        at = ranges(lo, lengths)
        return (
            np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            similar.ids[at].astype(np.int64),
            similar.scores[at].astype(np.float32),
        )
    rows = [list(similar.get(int(m)) or ()) for m in movie_ids]
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    return (
        indptr,
        np.array([int(m) for r in rows for m, _ in r], np.int64),
        np.array([float(sc) for r in rows for _, sc in r], np.float32),
    )


@dataclass
class MovieRows:
    """Some movies' own rows of a :class:`SimilarMovies`: ratings (movies x users) and rare
    terms (movies x terms), shipped with the task that scores them."""

    ratings: sp.csr_matrix
    rare: sp.csr_matrix


def _block_lists(model: SimilarMovies, i: int, bounds: tuple[int, int], own: MovieRows):
    return i, model.block_lists(*bounds, own)


def _dense32(a: sp.csr_matrix, b: sp.csr_matrix) -> np.ndarray:
    """``a @ b`` as a dense float32 array, without a float64 copy."""
    return dense_product(a, b).astype(np.float32, copy=False)


def all_similar(model: SimilarMovies, client=None) -> SimilarLists:
    """Every movie's similar list, in movie id order: as Dask tasks over blocks of movies on
    the cluster of ``client`` (the fitted model goes to every worker once), else in this
    process. The work is quadratic in the number of movies (each block scores its movies
    against all of them), so on large catalogues it is worth the copies."""
    n, step = len(model.movie_ids_), model.config.block
    bounds = [(lo, min(lo + step, n)) for lo in range(0, n, step)]
    parts: list = [None] * len(bounds)
    with progress("similar movies (all)", n, unit="movies") as bar:
        if client is None:
            for i, (lo, hi) in enumerate(bounds):
                parts[i] = model.block_lists(lo, hi)
                bar.update(hi - lo)
        else:
            # the workers get the tables every block scores against; each task its own rows
            blocks = ((i, (lo, hi), model.rows_of(lo, hi)) for i, (lo, hi) in enumerate(bounds))
            for i, part in map_blocks(
                client, _block_lists, model.without_rows(), blocks, "similar-movies"
            ):
                parts[i] = part
                bar.update(bounds[i][1] - bounds[i][0])
    return SimilarLists.from_blocks(model.movie_ids_, parts)


# ------------------------------------------------------------------ "because" seeds
def neighbour_matrix(
    similar: Mapping[int, Sequence[tuple[int, float]]], item_ids: np.ndarray
) -> sp.csr_matrix:
    """The similar lists as a ``len(item_ids) x len(item_ids)`` float32 CSR matrix.

    ``similar`` maps a movie id to its ``[(movieId, score), ...]`` list (as
    :func:`all_similar` gives); ``item_ids`` are the sorted external ids of
    the matrix columns. Entry ``(i, j)`` is the score of ``item_ids[j]`` in the list of
    ``item_ids[i]``; movies that are not columns (e.g. never rated) are left out.
    """
    item_ids = np.asarray(item_ids, dtype=np.int64)
    n = len(item_ids)
    indptr, targets, scores = list_arrays(similar, item_ids)
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    cols = lookup(item_ids, targets)
    keep = (cols >= 0) & (scores > 0)
    out = sp.csr_matrix((scores[keep], (rows[keep], cols[keep])), shape=(n, n), dtype=np.float32)
    out.sum_duplicates()
    out.sort_indices()
    return out


def similar_seeds(
    neighbours: sp.csr_matrix,
    ratings: sp.csr_matrix,
    timestamps: np.ndarray | None,
    rows: np.ndarray,
    items: np.ndarray,
    min_rating: float,
    user_block: int = 512,
) -> np.ndarray:
    """The "because you liked" seed of each recommended item, from the similar lists.

    ``neighbours``: :func:`neighbour_matrix` over the columns of ``ratings`` (users x
    movies, raw ratings, CSR with sorted rows); ``timestamps`` aligned with
    ``ratings.data`` (or None); ``rows``: the users' rows in ``ratings``; ``items``:
    ``(len(rows), n)`` recommended columns, -1 for an empty slot.

    Returns ``(len(rows), n)`` columns: for ``items[u, k] = j``, the column ``i`` rated
    by user ``rows[u]`` at least ``min_rating`` with ``j`` in ``i``'s similar list and
    the highest score there (ties: higher rating, then more recent, then lower column);
    -1 when there is none. Taken ``user_block`` users at a time: the candidates of a block are
    every (user, liked seed, similar movie), tens of millions at 2,048 users.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    items = np.asarray(items, dtype=np.int64).reshape(len(rows), -1)
    if len(rows) > user_block:
        return np.concatenate(
            [
                similar_seeds(
                    neighbours,
                    ratings,
                    timestamps,
                    rows[s : s + user_block],
                    items[s : s + user_block],
                    min_rating,
                    user_block,
                )
                for s in range(0, len(rows), user_block)
            ]
        )
    out = np.full(items.shape, -1, dtype=np.int64)
    n_cols = np.int64(neighbours.shape[1])
    slot = np.flatnonzero(items.ravel() >= 0)
    if len(slot) == 0 or neighbours.nnz == 0:
        return out

    # the block's liked ratings: (user of the block, seed column, rating, timestamp)
    known = rows >= 0
    lengths = np.where(
        known, ratings.indptr[np.maximum(rows, 0) + 1] - ratings.indptr[np.maximum(rows, 0)], 0
    )
    entry = ranges(ratings.indptr[np.maximum(rows, 0)], lengths)
    user = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
    liked = ratings.data[entry] >= min_rating
    entry, user = entry[liked], user[liked]
    seed = ratings.indices[entry].astype(np.int64)

    # every (user, seed, neighbour j, score) of those seeds' similar lists
    degree = np.diff(neighbours.indptr)[seed]
    nb = ranges(neighbours.indptr[seed], degree)
    pick = np.repeat(np.arange(len(seed)), degree)
    key = user[pick] * n_cols + neighbours.indices[nb]

    # keep those whose neighbour j is recommended to that user
    slot_key = (slot // items.shape[1]) * n_cols + items.ravel()[slot]
    wanted = np.unique(slot_key)
    at = np.minimum(np.searchsorted(wanted, key), len(wanted) - 1)
    hit = wanted[at] == key
    key, nb, pick = key[hit], nb[hit], pick[hit]
    if len(key) == 0:
        return out

    # best seed per (user, j): highest score, then rating, then timestamp, then lower column
    ts = timestamps[entry[pick]] if timestamps is not None else np.zeros(len(pick), np.int64)
    order = np.lexsort((seed[pick], -ts, -ratings.data[entry[pick]], -neighbours.data[nb], key))
    key, best = key[order], seed[pick[order]]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    key, best = key[first], best[first]
    at = np.minimum(np.searchsorted(key, slot_key), len(key) - 1)
    found = key[at] == slot_key
    out.ravel()[slot[found]] = best[at[found]]
    return out

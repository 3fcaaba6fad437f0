"""The per-user phase: each user's top-N list, predicted ratings, reasons and user document.

This is the work that grows with the number of users. :func:`write_user_lists` runs it as Dask
tasks over blocks of users: the fitted models without any user's data go to the cluster once
(to one worker, and from it to the others as their tasks need them), each task brings its own
block of users (their ratings and rating-model state), scores them, builds the documents and
writes them to the staging collection itself, with one ``MongoClient`` per worker process. The
driver only counts what the tasks report, so no step holds every user's documents in one place,
and no worker holds every user's ratings.

A task that is run twice (a worker died after writing part of its block) writes the same
documents again: duplicate ``_id`` errors of an unordered insert are ignored, so a retried
block neither fails nor doubles a user.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from contract import schema
from pipeline.features.matrix import RatingMatrix
from pipeline.models.similarity import neighbour_matrix, similar_seeds
from pipeline.progress import progress
from pipeline.runtime import map_blocks, release_memory, to_cluster

log = logging.getLogger(__name__)


@dataclass
class ItemSide:
    """What every block of users needs: the fitted models (``topn``, ``rating``), the cluster
    favourites (cluster -> movie ids), the similar lists as a matrix over the columns (or
    None), titles (movie id -> display title), the fallback list of users without model items
    (``popular``) and the list settings. :meth:`UserListInputs.item_side` gives the copy
    shipped to every worker, whose models hold no user's data."""

    topn: object
    rating: object
    favourites: dict[int, frozenset]
    neighbours: sp.csr_matrix | None
    titles: dict[int, str]
    popular: np.ndarray
    version: str
    n: int
    min_rating: float


@dataclass
class UserBlock:
    """One block of users, shipped with its task: their rows of the training matrix (with
    timestamps), their rating-model state (``RatingModel.users``), clusters and statistics."""

    matrix: RatingMatrix
    users: object
    clusters: np.ndarray
    n_ratings: np.ndarray
    mean: np.ndarray


@dataclass
class UserListInputs:
    """Everything the per-user phase needs, as the driver holds it: the item side with the
    whole models, the training ``matrix`` with timestamps, each matrix row's cluster (-1:
    none) and activity statistics (``n_ratings``, ``mean``). :meth:`item_side` and
    :meth:`block` cut it into what goes to every worker once and what goes with each task."""

    items: ItemSide
    matrix: RatingMatrix
    clusters: np.ndarray
    n_ratings: np.ndarray
    mean: np.ndarray

    @classmethod
    def from_models(
        cls,
        models,
        labels: pd.Series,
        clusters: pd.DataFrame,
        titles: dict[int, str],
        version: str,
        n: int,
        similar: Mapping[int, list] | None = None,
        min_rating: float | None = None,
    ) -> "UserListInputs":
        """From :class:`pipeline.train.FittedModels`, the cluster ``labels`` (userId -> cluster),
        the cluster table (``top_movies`` per cluster) and the similar lists."""
        matrix = models.matrix
        stats = models.features.users.reindex(matrix.user_ids)
        items = ItemSide(
            topn=models.topn,
            rating=models.rating,
            favourites={
                int(c): frozenset(int(m["movieId"]) for m in row["top_movies"])
                for c, row in clusters.iterrows()
            },
            neighbours=neighbour_matrix(similar, matrix.item_ids) if similar else None,
            titles=titles,
            popular=models.popular_items(n),
            version=version,
            n=n,
            min_rating=models.topn.config.because_min_rating if min_rating is None else min_rating,
        )
        return cls(
            items,
            matrix,
            clusters=labels.reindex(matrix.user_ids).fillna(-1).to_numpy(np.int64),
            n_ratings=stats["n_ratings"].fillna(0).to_numpy(np.int64),
            mean=stats["mean"].fillna(0.0).to_numpy(np.float64),
        )

    @property
    def n_users(self) -> int:
        return len(self.matrix.user_ids)

    def item_side(self) -> ItemSide:
        return replace(
            self.items,
            topn=self.items.topn.without_users(),
            rating=self.items.rating.without_users(),
        )

    def block(self, lo: int, hi: int) -> UserBlock:
        """Matrix rows ``lo .. hi - 1``."""
        rows = self.matrix.rows(lo, hi)
        return UserBlock(
            rows,
            self.items.rating.users(rows.user_ids),
            self.clusters[lo:hi].copy(),
            self.n_ratings[lo:hi].copy(),
            self.mean[lo:hi].copy(),
        )


def recommend_rows(topn, matrix: RatingMatrix, popular: np.ndarray, rows: np.ndarray, n: int):
    """``(items, scores, because)`` of matrix ``rows`` (-1: a user the matrix does not know,
    who gets ``popular``); external movie ids, -1 for an empty slot."""
    items = np.full((len(rows), n), -1, np.int64)
    scores = np.zeros((len(rows), n), np.float32)
    because = np.full((len(rows), n), -1, np.int64)
    known = rows >= 0
    if known.any():
        cols, sc, bc = topn.recommend(rows[known], n=n, exclude_seen=True)
        k = cols.shape[1]
        items[known, :k], scores[known, :k], because[known, :k] = (
            _ids(matrix, cols),
            sc,
            _ids(matrix, bc),
        )
    if (~known).any():
        items[~known, : len(popular)] = popular[:n]
    return items, scores, because


def _ids(matrix: RatingMatrix, cols: np.ndarray) -> np.ndarray:
    return np.where(cols >= 0, matrix.item_ids[np.maximum(cols, 0)], -1)


def block_docs(items: ItemSide, block: UserBlock) -> list[dict]:
    """The user documents of the users of ``block``.

    The reason of a recommended movie ``j`` is, in this order: "because you liked ``i``"
    where ``i`` is a movie the user rated at least ``min_rating`` whose similar list holds
    ``j`` with the highest score (ties: higher rating, then more recent); else the top-N
    model's seed (the liked movie contributing most to ``j``'s score); else a favourite of
    the user's cluster; else a taste match.
    """
    matrix = block.matrix
    u = matrix.user_ids
    rows = np.arange(len(u), dtype=np.int64)
    taste = None  # the users' factors in the rating model, when the top-N list reads them
    if items.topn.taste_items_ is not None:
        taste = block.users.state.mf_factors[block.users.index(u)]  # every user is known
    cols, scores, seed_cols = items.topn.recommend_matrix(
        matrix.csr,
        n=items.n,
        exclude_seen=True,
        timestamps=matrix.timestamps,
        taste=taste,
    )
    recommended, because = _ids(matrix, cols), _ids(matrix, seed_cols)
    valid = recommended >= 0
    if items.neighbours is not None:
        seeds = similar_seeds(
            items.neighbours,
            matrix.csr,
            matrix.timestamps,
            rows,
            np.where(valid, cols, -1),
            items.min_rating,
        )
        because = np.where(seeds >= 0, matrix.item_ids[np.maximum(seeds, 0)], because)
    predicted = np.zeros(recommended.shape, np.float32)
    if valid.any():
        pairs = pd.DataFrame(
            {
                "userId": np.repeat(u, recommended.shape[1])[valid.ravel()],
                "movieId": recommended[valid],
            }
        )
        predicted[valid] = items.rating.predict(pairs, users=block.users)
    scores_r = np.round(scores.astype(np.float64), 5)
    predicted_r = np.round(predicted.astype(np.float64), 3)
    docs = []
    for r, user in enumerate(u.tolist()):
        cluster = int(block.clusters[r])
        favourites = items.favourites.get(cluster, frozenset())
        top = []
        for j in np.flatnonzero(valid[r]).tolist():
            m, b = int(recommended[r, j]), int(because[r, j])
            if b >= 0:
                reason = {
                    "kind": "because_you_liked",
                    "movieId": b,
                    "text": schema.because_you_liked(items.titles.get(b, b)),
                }
            elif m in favourites:
                reason = {
                    "kind": "cluster_favourite",
                    "text": schema.REASON_TEXTS["cluster_favourite"],
                }
            else:
                reason = {"kind": "taste_match", "text": schema.REASON_TEXTS["taste_match"]}
            top.append(
                {
                    "movieId": m,
                    "score": float(scores_r[r, j]),
                    "predicted_rating": float(predicted_r[r, j]),
                    "reason": reason,
                }
            )
        docs.append(
            {
                "_id": user,
                "cluster": cluster,
                "stats": {
                    "n_ratings": int(block.n_ratings[r]),
                    "mean": round(float(block.mean[r]), 4),
                },
                "ratings_packed": packed_ratings(matrix, r),
                "top": top,
                "model_version": items.version,
            }
        )
    return docs


def packed_ratings(matrix: RatingMatrix, row: int) -> dict:
    """Row ``row``'s ratings newest first (ties: column order) as three little-endian binaries:
    movieId int32, rating float32, timestamp int64 (0 without timestamps)."""
    cols, vals, ts = matrix.newest_first(row)
    times = ts if ts is not None else np.zeros(len(cols), np.int64)
    return {
        "movieId": matrix.item_ids[cols].astype("<i4").tobytes(),
        "rating": np.asarray(vals, "<f4").tobytes(),
        "timestamp": np.asarray(times, "<i8").tobytes(),
    }


def iter_user_docs(inputs: UserListInputs, block: int = 2048) -> Iterator[dict]:
    """Every user's document, block by block, in this process."""
    items = inputs.item_side()
    for lo in range(0, inputs.n_users, block):
        yield from block_docs(items, inputs.block(lo, min(lo + block, inputs.n_users)))


# --- on the Dask cluster ---------------------------------------------------------------------

_clients: dict[str, object] = {}
_clients_lock = threading.Lock()


def _client(url: str, options: Mapping[str, Any]):
    """This process's MongoClient for ``url``, created on first use (after any fork)."""
    import pymongo

    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = pymongo.MongoClient(url, **options)
        return client


def write_block(
    items: ItemSide,
    block: UserBlock,
    url: str,
    database: str,
    collection: str,
    options: Mapping[str, Any],
    batch_size: int = 1000,
) -> dict:
    """Build ``block``'s documents and insert them into ``database.collection`` (unordered;
    documents already there from an earlier try of this block are skipped).
    Returns ``{"users": n, "pid": this process's id, "seconds": s}``."""
    from pymongo.errors import BulkWriteError

    started = time.perf_counter()
    docs = block_docs(items, block)
    coll = _client(url, options)[database][collection]
    for s in range(0, len(docs), batch_size):
        try:
            coll.insert_many(docs[s : s + batch_size], ordered=False)
        except BulkWriteError as exc:  # a retried block: only duplicate keys are expected
            if any(
                e.get("code") != 11000 for e in exc.details.get("writeErrors", ())
            ) or exc.details.get("writeConcernErrors"):
                raise
    return {"users": len(docs), "pid": os.getpid(), "seconds": time.perf_counter() - started}


def write_user_lists(
    client,
    inputs: UserListInputs,
    url: str,
    database: str,
    collection: str,
    options: Mapping[str, Any],
    block: int = 2048,
    on_written: Callable[[int], None] | None = None,
) -> dict:
    """Run :func:`write_block` over every block of users on the cluster of ``client``.

    The item side goes to the cluster once; each task brings its own block of users (a few
    blocks per worker thread are in flight, so neither the scheduler nor a worker ever holds
    every user). ``options``: the workers' ``MongoClient`` options (``StoreConfig.client_options``).
    Takes ``inputs`` over: once the cluster has the item side, ``inputs.items``
    holds no top-N model, so this process no longer holds the top-N model; the caller drops its other
    references first. ``on_written(n)`` (optional) is called as each block's ``n`` documents
    are stored (the staging's count and lease: :meth:`pipeline.publish.store.Staging.added`).
    Returns ``{"users": total, "pids": worker process ids that wrote, "task_seconds": sum}``.
    On any failure the remaining tasks are cancelled. Dask cannot stop a task that is already
    running, so up to one block per worker thread may still be written after the caller's abort
    has dropped the staging collection; the next :meth:`pipeline.publish.store.Store.cleanup` drops
    whatever that recreates (a versioned collection of a version that is not retained).
    """
    shared = to_cluster(client, inputs.item_side())
    inputs.items = replace(inputs.items, topn=None)
    release_memory()
    blocks = (
        (inputs.block(lo, min(lo + block, inputs.n_users)), url, database, collection, options)
        for lo in range(0, inputs.n_users, block)
    )
    total, pids, task_s = 0, set(), 0.0
    with progress("user documents", inputs.n_users, unit="users") as bar:
        for out in map_blocks(client, write_block, shared, blocks, "user-documents"):
            total += out["users"]
            pids.add(out["pid"])
            task_s += out["seconds"]
            bar.update(out["users"])
            if on_written is not None:
                on_written(out["users"])
    del shared
    return {"users": total, "pids": sorted(pids), "task_seconds": round(task_s, 3)}

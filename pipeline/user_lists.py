"""The per-user phase: each user's top-N list, predicted ratings, reasons and user document.

This is the work that grows with the number of users. :func:`write_user_lists` runs it as Dask
tasks over blocks of users: the fitted models go to every worker once (``scatter(...,
broadcast=True)``), and each task scores its block, builds the documents and writes them to the
staging collection itself, with one ``MongoClient`` per worker process. The driver only counts
what the tasks report, so no step holds every user's documents in one place.

A task that is run twice (a worker died after writing part of its block) writes the same
documents again: duplicate ``_id`` errors of an unordered insert are ignored, so a retried
block neither fails nor doubles a user.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipeline.matrix import RatingMatrix
from pipeline.progress import progress
from pipeline.runtime import release_memory
from pipeline.similarity import neighbour_matrix, similar_seeds

log = logging.getLogger(__name__)

#: "Because you liked" and the other reason texts of the precomputed lists.
CLUSTER_FAVOURITE_TEXT = "A favourite of viewers with tastes like yours"
TASTE_MATCH_TEXT = "Matches the movies you rated"


@dataclass
class UserListInputs:
    """Everything a block of users needs, shipped once to each worker.

    ``topn``: the fitted top-N model (``recommend``); ``rating``: anything with
    ``predict(pairs)`` (the rating model); ``matrix``: training ratings with timestamps;
    ``clusters``: each matrix row's cluster (-1: none); ``n_ratings`` and ``mean``: each row's
    activity statistics; ``favourites``: cluster -> its favourite movie ids; ``neighbours``:
    the similar lists as a matrix over the columns (or None); ``titles``: movie id -> display
    title; ``popular``: the fallback list of users without model items.
    """

    topn: object
    rating: object
    matrix: RatingMatrix
    clusters: np.ndarray
    n_ratings: np.ndarray
    mean: np.ndarray
    favourites: dict[int, frozenset]
    neighbours: sp.csr_matrix | None
    titles: dict[int, str]
    popular: np.ndarray
    version: str
    n: int
    min_rating: float

    @classmethod
    def from_models(cls, models, labels: pd.Series, clusters: pd.DataFrame, titles: dict[int, str],
                    version: str, n: int, similar: dict[int, list] | None = None,
                    min_rating: float | None = None) -> "UserListInputs":
        """From :class:`pipeline.train.FittedModels`, the cluster ``labels`` (userId -> cluster),
        the cluster table (``top_movies`` per cluster) and the similar lists."""
        matrix = models.matrix
        stats = models.features.users.reindex(matrix.user_ids)
        return cls(
            topn=models.topn, rating=models.rating, matrix=matrix,
            clusters=labels.reindex(matrix.user_ids).fillna(-1).to_numpy(np.int64),
            n_ratings=stats["n_ratings"].fillna(0).to_numpy(np.int64),
            mean=stats["mean"].fillna(0.0).to_numpy(np.float64),
            favourites={int(c): frozenset(int(m["movieId"]) for m in row["top_movies"])
                        for c, row in clusters.iterrows()},
            neighbours=neighbour_matrix(similar, matrix.item_ids) if similar else None,
            titles=titles, popular=models.popular_items(n), version=version, n=n,
            min_rating=models.topn.config.because_min_rating if min_rating is None else min_rating)

    @property
    def n_users(self) -> int:
        return len(self.matrix.user_ids)


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
        items[known, :k] = np.where(cols >= 0, matrix.item_ids[np.maximum(cols, 0)], -1)
        scores[known, :k] = sc
        because[known, :k] = np.where(bc >= 0, matrix.item_ids[np.maximum(bc, 0)], -1)
    if (~known).any():
        items[~known, : len(popular)] = popular[:n]
    return items, scores, because


def block_docs(inputs: UserListInputs, lo: int, hi: int) -> list[dict]:
    """The user documents of matrix rows ``lo .. hi - 1``.

    The reason of a recommended movie ``j`` is, in this order: "because you liked ``i``"
    where ``i`` is a movie the user rated at least ``min_rating`` whose similar list holds
    ``j`` with the highest score (ties: higher rating, then more recent); else the top-N
    model's seed (the liked movie contributing most to ``j``'s score); else a favourite of
    the user's cluster; else a taste match.
    """
    matrix = inputs.matrix
    rows = np.arange(lo, hi, dtype=np.int64)
    u = matrix.user_ids[rows]
    items, scores, because = recommend_rows(inputs.topn, matrix, inputs.popular, rows, inputs.n)
    valid = items >= 0
    if inputs.neighbours is not None:
        seeds = similar_seeds(inputs.neighbours, matrix.csr, matrix.timestamps, rows,
                              np.where(valid, matrix.item_index(items), -1), inputs.min_rating)
        because = np.where(seeds >= 0, matrix.item_ids[np.maximum(seeds, 0)], because)
    predicted = np.zeros(items.shape, np.float32)
    if valid.any():
        pairs = pd.DataFrame({"userId": np.repeat(u, items.shape[1])[valid.ravel()], "movieId": items[valid]})
        predicted[valid] = inputs.rating.predict(pairs)
    scores_r = np.round(scores.astype(np.float64), 5)
    predicted_r = np.round(predicted.astype(np.float64), 3)
    docs = []
    for i, user in enumerate(u.tolist()):
        r = int(rows[i])
        cluster = int(inputs.clusters[r])
        favourites = inputs.favourites.get(cluster, frozenset())
        top = []
        for j in np.flatnonzero(valid[i]).tolist():
            m, b = int(items[i, j]), int(because[i, j])
            if b >= 0:
                reason = {"kind": "because_you_liked", "movieId": b,
                          "text": f"Because you liked {inputs.titles.get(b, b)}"}
            elif m in favourites:
                reason = {"kind": "cluster_favourite", "text": CLUSTER_FAVOURITE_TEXT}
            else:
                reason = {"kind": "taste_match", "text": TASTE_MATCH_TEXT}
            top.append({"movieId": m, "score": float(scores_r[i, j]),
                        "predicted_rating": float(predicted_r[i, j]), "reason": reason})
        docs.append({
            "_id": user, "cluster": cluster,
            "stats": {"n_ratings": int(inputs.n_ratings[r]), "mean": round(float(inputs.mean[r]), 4)},
            "ratings_packed": packed_ratings(matrix, r),
            "top": top, "model_version": inputs.version,
        })
    return docs


def packed_ratings(matrix: RatingMatrix, row: int) -> dict:
    """Row ``row``'s ratings newest first (ties: column order) as three little-endian binaries:
    movieId int32, rating float32, timestamp int64 (0 without timestamps)."""
    cols, vals, ts = matrix.row(row)
    order = np.argsort(-ts, kind="stable") if ts is not None else np.arange(len(cols))
    times = ts[order] if ts is not None else np.zeros(len(cols), np.int64)
    return {"movieId": matrix.item_ids[cols[order]].astype("<i4").tobytes(),
            "rating": np.asarray(vals[order], "<f4").tobytes(),
            "timestamp": np.asarray(times, "<i8").tobytes()}


def iter_user_docs(inputs: UserListInputs, block: int = 2048) -> Iterator[dict]:
    """Every user's document, block by block, in this process."""
    for lo in range(0, inputs.n_users, block):
        yield from block_docs(inputs, lo, min(lo + block, inputs.n_users))


# --- on the Dask cluster ---------------------------------------------------------------------

_clients: dict[str, object] = {}
_clients_lock = threading.Lock()


def _client(url: str):
    """This process's MongoClient for ``url``, created on first use (after any fork)."""
    import pymongo

    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = pymongo.MongoClient(url, serverSelectionTimeoutMS=30_000)
        return client


def write_block(inputs: UserListInputs, lo: int, hi: int, url: str, database: str, collection: str,
                batch_size: int = 1000) -> dict:
    """Build rows ``lo .. hi - 1``'s documents and insert them into ``database.collection``
    (unordered; documents already there from an earlier try of this block are skipped).
    Returns ``{"users": n, "pid": this process's id, "seconds": s}``."""
    from pymongo.errors import BulkWriteError

    started = time.perf_counter()
    docs = block_docs(inputs, lo, hi)
    coll = _client(url)[database][collection]
    for s in range(0, len(docs), batch_size):
        try:
            coll.insert_many(docs[s:s + batch_size], ordered=False)
        except BulkWriteError as exc:  # a retried block: only duplicate keys are expected
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", ())) or \
                    exc.details.get("writeConcernErrors"):
                raise
    return {"users": len(docs), "pid": os.getpid(), "seconds": time.perf_counter() - started}


def write_user_lists(client, inputs: UserListInputs, url: str, database: str, collection: str,
                     block: int = 2048, on_written: Callable[[int], None] | None = None) -> dict:
    """Run :func:`write_block` over every block of users on the cluster of ``client``.

    Takes ``inputs`` over: once every worker has its copy, its models are dropped from it
    (``topn`` and ``rating`` become None), so this process no longer holds them; the caller
    drops its other references first. ``on_written(n)`` (optional) is called as each block's
    ``n`` documents are stored (the staging's count and lease:
    :meth:`pipeline.store.Staging.added`).
    Returns ``{"users": total, "pids": worker process ids that wrote, "task_seconds": sum}``.
    On any failure the remaining tasks are cancelled. Dask cannot stop a task that is already
    running, so up to one block per worker may still be written after the caller's abort has
    dropped the staging collection; the next :meth:`pipeline.store.Store.cleanup` drops
    whatever that recreates (a versioned collection of a version that is not retained).
    """
    from distributed import as_completed

    shared = client.scatter(inputs, broadcast=True, hash=False)
    inputs.topn = inputs.rating = None
    release_memory()
    bounds = [(lo, min(lo + block, inputs.n_users)) for lo in range(0, inputs.n_users, block)]
    futures = [client.submit(write_block, shared, lo, hi, url, database, collection, pure=False,
                             key=f"user-documents-{lo}-{hi}-{os.getpid()}-{time.monotonic_ns()}")
               for lo, hi in bounds]
    total, pids, task_s = 0, set(), 0.0
    try:
        with progress("user documents", inputs.n_users, unit="users") as bar:
            for future in as_completed(futures):
                out = future.result()
                total += out["users"]
                pids.add(out["pid"])
                task_s += out["seconds"]
                bar.update(out["users"])
                if on_written is not None:
                    on_written(out["users"])
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        del shared
    return {"users": total, "pids": sorted(pids), "task_seconds": round(task_s, 3)}

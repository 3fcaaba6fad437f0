"""The live model a run publishes (``contract.live_model``), built from the fitted models."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, replace

import numpy as np

from contract.live_model import LiveModel, taste_items
from pipeline.models.mf import BiasedMF
from pipeline.models.similarity import list_arrays
from pipeline.models.topn import TopNRecommender


def build_live_model(
    topn: TopNRecommender,
    mf: BiasedMF,
    movie_ids: np.ndarray,
    genres: Iterable[str],
    catalogue: Mapping[int, Iterable[str]],
    similar: Mapping[int, Iterable[tuple[int, float]]] | None = None,
) -> LiveModel:
    """The live model of fitted models: the arrays of ``topn``, the top-N model cut to the
    weights the API keeps (``TopNRecommender.cut(keep)``: each ``B`` cut to the ``keep``
    largest-magnitude weights per input item, its tail calibrated on them), the rating model's
    item side (also the top-N list's taste factors, ``TopNConfig.taste_weight``), the catalogue's genre masks and the similar lists. ``catalogue`` maps every
    movieId to its genre names; ``similar`` maps movieIds to their stored similar lists
    ``[(movieId, score), ...]``."""
    genres = tuple(genres)
    if len(genres) > 32:
        raise ValueError("at most 32 genres fit the genre bit masks")
    ids = np.array(sorted(int(m) for m in catalogue), dtype=np.int64)
    bit = {g: 1 << k for k, g in enumerate(genres)}
    masks = np.array(
        [sum(bit.get(g, 0) for g in set(catalogue[int(m)])) for m in ids], dtype=np.uint32
    )
    indptr = sim_ids = sim_scores = None
    if similar is not None:
        indptr, sim_ids, sim_scores = list_arrays(similar, ids)
        sim_scores = np.array([round(sc, 4) for sc in sim_scores.tolist()], np.float32)  # as stored
    movie_ids = np.asarray(movie_ids, np.int64)
    items = mf.item_side()
    # the taste factors as the stored model derives them when loaded (LiveModel.from_docs)
    scorer = replace(topn.scorer, taste_items=taste_items(items, movie_ids[topn.items_]))
    return LiveModel(
        movie_ids,
        scorer,
        items,
        genres,
        ids,
        masks,
        topn.counts_,
        indptr,
        sim_ids,
        sim_scores,
        asdict(topn.config),
        asdict(mf.config),
    )

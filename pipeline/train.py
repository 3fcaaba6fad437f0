"""Fit every model of one run on one set of ratings (a training split, or all data)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.data.tmdb import movie_votes
from pipeline.features.matrix import RatingMatrix
from pipeline.features.tables import (
    TrainingFeatures,
    build_features,
    movie_terms,
    movie_text,
    term_matrix,
)
from pipeline.models.clustering import UserClustering
from pipeline.models.rating import RatingModel
from pipeline.models.similarity import SimilarMovies
from pipeline.models.topn import TopNRecommender
from pipeline.progress import Steps
from pipeline.publish.user_lists import recommend_rows
from pipeline.runtime import current_client


@dataclass
class FittedModels:
    features: TrainingFeatures
    matrix: RatingMatrix
    rating: RatingModel
    topn: TopNRecommender
    clustering: UserClustering | None = None
    similar: SimilarMovies | None = None

    def popular_items(self, n: int) -> np.ndarray:
        """Movie ids with the most training ratings (the fallback for users with no history)."""
        counts = self.features.movies["n_ratings"]
        return counts.sort_values(ascending=False, kind="stable").index.to_numpy(np.int64)[:n]


def fit_models(
    ratings,
    movies: pd.DataFrame,
    config,
    steps: Steps,
    *,
    tags=None,
    links=None,
    metadata=None,
    with_clusters: bool = True,
    with_similar: bool = True,
    release_ratings: bool = False,
) -> FittedModels:
    """Fit features, rating model, top-N model and (optionally) clusters and similar movies.

    ``ratings`` is a Dask DataFrame: the training part of a split, or every rating for the
    final refit. Nothing else is looked at, so nothing leaks from a test set. Every model after
    the features is fitted from the rating matrix built here; with ``release_ratings`` (the
    final refit: nothing reads the ratings again) the Dask cluster drops its persisted copy of
    them once that matrix is built, so the workers do not hold every rating through the fits.
    The top-N model reads each movie's genres and, with ``links`` and ``metadata`` (TMDB), its
    keywords; these also add each movie's TMDB vote to the features and its keywords to the
    similar movies' text (the user ``tags`` only to that text).
    """
    with steps.step("features"):
        features = build_features(ratings, movies, config.features, movie_votes(links, metadata))
    with steps.step("rating matrix"):
        matrix = RatingMatrix.from_dask(ratings)
    if release_ratings and (client := current_client()) is not None:
        from distributed import futures_of

        client.cancel(futures_of(ratings))
    clustering = None
    if with_clusters:
        with steps.step("spectral clustering"):
            clustering = UserClustering(config.clusters).fit(features.genre_profile)
    with steps.step("rating model (gradient boosting)"):
        rating = RatingModel(config.rating).fit(ratings, features, matrix)
    with steps.step("top-N model"):
        content = term_matrix(matrix.item_ids, movie_terms(movies, None, links, metadata))
        topn = TopNRecommender(config.topn).fit(matrix, content, taste=rating.mf_)
    similar = None
    if with_similar:
        with steps.step("similar movies"):
            text = movie_text(movies, tags, links, metadata)
            similar = SimilarMovies(config.similarity).fit(matrix, text)
    return FittedModels(features, matrix, rating, topn, clustering, similar)


def recommend_blocks(models: FittedModels, user_ids: np.ndarray, n: int, block: int = 4096):
    """Yield ``(user_ids, item_ids, scores, because_ids)`` blocks of top-``n`` lists.

    Users the matrix does not know get the most popular movies (``because`` = -1, score 0).
    ``item_ids`` and ``because_ids`` are external movie ids; -1 marks an empty slot.
    """
    user_ids = np.asarray(user_ids, np.int64)
    rows = models.matrix.user_index(user_ids)
    popular = models.popular_items(n)
    for lo in range(0, len(user_ids), block):
        yield (
            user_ids[lo : lo + block],
            *recommend_rows(models.topn, models.matrix, popular, rows[lo : lo + block], n),
        )

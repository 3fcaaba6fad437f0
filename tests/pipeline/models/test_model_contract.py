"""One protocol for every model (scikit-learn's), checked over all of them on the same small data:

* ``Model(config)`` stores its configuration and nothing else; ``fit(...)`` returns the model;
  what ``fit`` learns is in attributes whose names end in ``_`` (private helpers start with ``_``);
* the same configuration (hence the same seed) fitted twice gives the same output;
* a fitted model survives a pickle round trip (how it is saved, and shipped to the Dask workers)
  with the same output.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pipeline.features.matrix import RatingMatrix
from pipeline.features.tables import build_features, movie_text
from pipeline.models.biases import BiasConfig, Biases
from pipeline.models.clustering import ClusterConfig, UserClustering
from pipeline.models.item_knn import ItemKNN, ItemKNNConfig
from pipeline.models.mf import BiasedMF, BiasedMFConfig
from pipeline.models.rating import RatingModel, RatingModelConfig
from pipeline.models.similarity import SimilarityConfig, SimilarMovies
from pipeline.models.topn import TopNConfig, TopNRecommender
from tests.support.paths import BUNDLED


@dataclass(frozen=True)
class Case:
    """How to fit one model on the shared data, and what output to compare."""

    model: type
    config: Any
    fit_args: Callable[[dict], tuple]
    output: Callable[[Any, dict], list[np.ndarray]]


@pytest.fixture(scope="module")
def data() -> dict:
    """Bundled ratings of the users with an id divisible by 4 (about 25k ratings)."""
    ratings = pd.read_csv(BUNDLED / "ratings.csv")
    ratings = ratings[ratings.userId % 4 == 0].reset_index(drop=True)
    movies = pd.read_csv(BUNDLED / "movies.csv")
    movies["genres"] = movies["genres"].str.split("|")
    matrix = RatingMatrix.from_frame(ratings)
    train = dd.from_pandas(ratings, npartitions=2)
    features = build_features(train, movies)
    biases = Biases().fit(matrix)
    csr = matrix.csr.tocsr()
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
    residuals = sp.csr_matrix(
        (csr.data - biases.estimate(rows, csr.indices), csr.indices, csr.indptr), shape=csr.shape
    )
    pairs = ratings.sample(500, random_state=0)
    text = movie_text(movies[movies.movieId.isin(matrix.item_ids)])
    return {
        "matrix": matrix,
        "train": train,
        "features": features,
        "residuals": residuals,
        "pairs": pairs,
        "text": text,
        "rows": np.arange(0, matrix.shape[0], 7),
    }


def _estimates(model, d) -> list[np.ndarray]:
    m = d["matrix"]
    return [model.estimate(m.user_index(d["pairs"].userId), m.item_index(d["pairs"].movieId))]


CASES = {
    "biases": Case(Biases, BiasConfig(), lambda d: (d["matrix"],), _estimates),
    "mf": Case(
        BiasedMF,
        BiasedMFConfig(factors=8, iterations=3, seed=7),
        lambda d: (d["matrix"],),
        _estimates,
    ),
    "item_knn": Case(
        ItemKNN,
        ItemKNNConfig(candidates=20, max_pairs=200_000, seed=3),  # the pair budget samples users
        lambda d: (d["residuals"],),
        lambda model, d: [model.neighbours_, model.similarities_],
    ),
    "rating": Case(
        RatingModel,
        RatingModelConfig(
            mf=BiasedMFConfig(factors=8, iterations=3),
            knn=ItemKNNConfig(candidates=20),
            stack_folds=2,
            gbm_max_iter=20,
            seed=5,
        ),
        lambda d: (d["train"], d["features"]),
        lambda model, d: [model.predict(d["pairs"][["userId", "movieId", "timestamp"]])],
    ),
    "topn": Case(
        TopNRecommender,
        TopNConfig(min_item_ratings=2, calibration_users=50, seed=11),  # a sampled calibration
        lambda d: (d["matrix"],),
        lambda model, d: list(model.recommend(d["rows"], n=10)),
    ),
    "similarity": Case(
        SimilarMovies,
        SimilarityConfig(n_neighbors=5),
        lambda d: (d["matrix"], d["text"]),
        lambda model, d: list(model.block_lists(0, 200)),
    ),
    "clustering": Case(
        UserClustering,
        ClusterConfig(k_min=2, k_max=6, n_landmarks=40, seed=2),  # Nystroem landmarks: sampled
        lambda d: (d["features"].genre_profile,),
        lambda model, d: [model.labels_.to_numpy(), model.eigenvalues_],
    ),
}


@pytest.fixture(scope="module")
def fitted(data) -> dict:
    return {name: c.model(c.config).fit(*c.fit_args(data)) for name, c in CASES.items()}


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("name", CASES)
def test_init_stores_the_config_and_fit_returns_the_model(name, data, fitted):
    case = CASES[name]
    assert vars(case.model(case.config)) == {"config": case.config}
    model = fitted[name]
    assert isinstance(model, case.model) and model.config is case.config
    learned = [k for k in vars(model) if k != "config" and not k.startswith("_")]
    assert learned and all(k.endswith("_") for k in learned), learned
    assert case.model(case.config).fit(*case.fit_args(data)) is not model  # a new model each time


@pytest.mark.parametrize("name", CASES)
def test_the_same_config_gives_the_same_output(name, data, fitted):
    case = CASES[name]
    again = case.model(case.config).fit(*case.fit_args(data))
    _same(case.output(fitted[name], data), case.output(again, data))


@pytest.mark.parametrize("name", CASES)
def test_a_pickled_model_gives_the_same_output(name, data, fitted):
    case = CASES[name]
    loaded = pickle.loads(pickle.dumps(fitted[name], protocol=pickle.HIGHEST_PROTOCOL))
    _same(case.output(fitted[name], data), case.output(loaded, data))

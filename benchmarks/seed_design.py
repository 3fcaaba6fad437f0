"""The seed project's recommendation endpoint, rebuilt on this project's models: the baseline
that ``benchmarks.api_load`` measures the real API against.

Design (the anti-pattern of DESIGN.md: "scoring thousands of candidates with a model inside each
request"): per request, read the serving pointer and the user, load every movie that the users of
the user's cluster rated (the ``cluster`` index, then their ``ratings`` arrays), drop the ones the
user has seen, build the gradient-boosting rows of each remaining (user, movie) pair with
``pipeline.features.tables.rating_rows`` and the collaborative columns of the fitted
``pipeline.models.rating.RatingModel`` (``RatingModel.predict`` does both), score them, and return the
ten best with their titles. Same response shape as the real API.

The model is fitted ONCE, outside the server, on the same bundled data the pipeline loads::

    python -m benchmarks.seed_design fit --out /tmp/seed-model.pkl

and each gunicorn worker unpickles it when it starts (after the fork, so no OpenMP or client
state crosses a fork)::

    SEED_MODEL_PATH=/tmp/seed-model.pkl MONGODB_URL=mongodb://... \\
        gunicorn --bind 127.0.0.1:8001 --workers 2 "benchmarks.seed_design:create()"
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SeedDesignConfig:
    """mongodb_url: the store (database from the URL path, default ``movietime``).
    model_path: a pickled, fitted ``RatingModel`` (see :func:`fit_rating_model`).
    database: overrides the URL's database.
    max_n: largest ``n`` a request may ask for.
    """

    mongodb_url: str
    model_path: str
    database: str | None = None
    max_n: int = 100


def fit_rating_model(dataset: str = "ml-latest-small"):
    """The rating model (features + stacked gradient boosting) fitted on all ratings of ``dataset``,
    with the pipeline's default configuration, as the pipeline's refit does."""
    from pipeline.config import PipelineConfig
    from pipeline.data.movielens import load_movielens
    from pipeline.data.tmdb import bundle_or_none, movie_votes
    from pipeline.features.tables import build_features
    from pipeline.models.rating import RatingModel

    config = PipelineConfig(dataset=dataset)
    data = load_movielens(config.dataset, config.data)
    ratings = data.ratings.compute(scheduler="sync")
    config = config.for_size(len(ratings))
    votes = movie_votes(data.links, bundle_or_none(config.tmdb))
    features = build_features(ratings, data.movies, config.features, votes)
    return RatingModel(config.rating).fit(ratings, features)


def _rated_ids(doc: dict) -> list[int]:
    """The movie ids a user document holds: packed, or as ``ratings`` subdocuments (older versions)."""
    packed = doc.get("ratings_packed")
    if packed:
        return np.frombuffer(packed["movieId"], "<i4").tolist()
    return [r["movieId"] for r in doc.get("ratings", ())]


_RATED_IDS = {"ratings_packed.movieId": 1, "ratings.movieId": 1}


def cluster_candidates(users, user_id: int) -> tuple[dict | None, np.ndarray]:
    """The user's document and the movies rated in the user's cluster that the user has not rated."""
    user = users.find_one({"_id": user_id}, {"cluster": 1, **_RATED_IDS})
    if user is None:
        return None, np.empty(0, np.int64)
    seen = set(_rated_ids(user))
    movies: set[int] = set()
    for doc in users.find({"cluster": user["cluster"]}, _RATED_IDS):
        movies.update(_rated_ids(doc))
    return user, np.fromiter(sorted(movies - seen), np.int64)


def recommend(store, model, user_id: int, n: int) -> dict | None:
    """The seed design's answer for ``user_id`` (None when the user is unknown)."""
    import pandas as pd

    pointer = store.current()
    users = store.collection("users", pointer)
    user, candidates = cluster_candidates(users, user_id)
    if user is None:
        return None
    pairs = pd.DataFrame(
        {"userId": np.full(len(candidates), user_id, np.int64), "movieId": candidates}
    )
    scores = model.predict(pairs) if len(candidates) else np.empty(0)
    best = np.argsort(-scores, kind="stable")[:n]
    ids = [int(m) for m in candidates[best]]
    movies = store.collection("movies", pointer)
    details = {
        d["_id"]: d
        for d in movies.find(
            {"_id": {"$in": ids}}, {"title": 1, "year": 1, "genres": 1, "poster_url": 1}
        )
    }
    recs = [
        {
            "movieId": m,
            "title": details.get(m, {}).get("title"),
            "year": details.get(m, {}).get("year"),
            "genres": details.get(m, {}).get("genres", []),
            "poster_url": details.get(m, {}).get("poster_url"),
            "predicted_rating": round(float(s), 3),
        }
        for m, s in zip(ids, scores[best])
    ]
    return {
        "userId": user_id,
        "model_version": pointer["version"],
        "source": "seed-design",
        "recommendations": recs,
    }


def create_app(config: SeedDesignConfig):
    """A Bottle app with ``GET /user/<id>/recommendation?n=10``; the store client and the model
    are created on first use, i.e. inside the worker process."""
    import bottle
    import pymongo

    from pipeline.publish.store import Store

    app = bottle.Bottle()
    state: dict = {}

    def resources():
        if not state:
            with open(config.model_path, "rb") as fh:
                state["model"] = pickle.load(fh)
            client = pymongo.MongoClient(config.mongodb_url, serverSelectionTimeoutMS=5000)
            db = (
                client[config.database]
                if config.database
                else client.get_default_database(default="movietime")
            )
            state["store"] = Store(db)
        return state["store"], state["model"]

    def error(status: int, message: str):
        bottle.response.status = status
        bottle.response.content_type = "application/json"
        return json.dumps({"error": message})

    @app.get("/user/<user_id:int>/recommendation")
    def recommendation(user_id: int):
        try:
            n = int(bottle.request.query.get("n", 10))
        except ValueError:
            return error(400, "n must be an integer")
        if not 1 <= n <= config.max_n:
            return error(400, f"n must be within 1..{config.max_n}")
        store, model = resources()
        body = recommend(store, model, user_id, n)
        if body is None:
            return error(404, f"unknown user {user_id}")
        bottle.response.content_type = "application/json"
        return json.dumps(body)

    app.config["seed.resources"] = resources  # lets the server warm up before it takes traffic
    return app


def create():
    """gunicorn entry point: ``"benchmarks.seed_design:create()"`` with MONGODB_URL and
    SEED_MODEL_PATH in the environment. Loads the model before the worker takes requests."""
    app = create_app(
        SeedDesignConfig(
            mongodb_url=os.environ["MONGODB_URL"], model_path=os.environ["SEED_MODEL_PATH"]
        )
    )
    app.config["seed.resources"]()
    return app


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.seed_design",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit the rating model once and pickle it")
    fit.add_argument("--dataset", default="ml-latest-small")
    fit.add_argument("--out", required=True)
    args = p.parse_args(argv)
    started = time.perf_counter()
    model = fit_rating_model(args.dataset)
    Path(args.out).write_bytes(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
    print(
        f"rating model fitted in {time.perf_counter() - started:.1f} s -> {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

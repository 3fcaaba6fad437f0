"""The seed design of benchmarks/seed_design.py: candidates, scoring order and the HTTP route,
on a real store server with a hand-written served version and a scoring double."""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pandas as pd
import pytest

from benchmarks.seed_design import SeedDesignConfig, cluster_candidates, create_app, recommend
from pipeline.publish.store import Store

VERSION = "v1"


class ScoreByTable:
    """Scores (userId, movieId) pairs from a fixed table and records what it was asked."""

    def __init__(self, scores: dict[int, float]):
        self.scores, self.calls = scores, []

    def predict(self, pairs: pd.DataFrame) -> np.ndarray:
        self.calls.append(pairs.copy())
        return np.array([self.scores[int(m)] for m in pairs["movieId"]], np.float64)


@pytest.fixture
def store(db):
    names = {"users": f"users__{VERSION}", "movies": f"movies__{VERSION}"}
    db.serving.insert_one(
        {"_id": "current", "version": VERSION, "collections": names, "previous": None, "serial": 1}
    )
    rated = lambda *ids: [{"movieId": m, "rating": 4.0, "timestamp": 0} for m in ids]  # noqa: E731
    db[names["users"]].insert_many(
        [
            {"_id": 1, "cluster": 0, "ratings": rated(10, 11)},
            {"_id": 2, "cluster": 0, "ratings": rated(11, 12, 13)},
            {"_id": 3, "cluster": 0, "ratings": rated(14)},
            {
                "_id": 4,
                "cluster": 1,
                "ratings": rated(15, 16),
            },  # another cluster: never a candidate for 1
        ]
    )
    db[names["movies"]].insert_many(
        [
            {
                "_id": m,
                "title": f"Movie {m} (2000)",
                "year": 2000,
                "genres": ["Drama"],
                "poster_url": None,
            }
            for m in range(10, 17)
        ]
    )
    return Store(db)


def test_candidates_are_the_clusters_movies_the_user_has_not_rated(store):
    user, candidates = cluster_candidates(store.collection("users", store.current()), 1)
    assert user["cluster"] == 0
    assert candidates.tolist() == [12, 13, 14]
    assert cluster_candidates(store.collection("users", store.current()), 99)[0] is None


def test_recommend_scores_every_candidate_and_returns_the_best_first(store):
    model = ScoreByTable({12: 3.0, 13: 4.5, 14: 4.0})
    body = recommend(store, model, 1, n=2)
    assert [r["movieId"] for r in body["recommendations"]] == [13, 14]
    assert body["recommendations"][0]["title"] == "Movie 13 (2000)"
    assert body["recommendations"][0]["predicted_rating"] == 4.5
    assert body["userId"] == 1 and body["model_version"] == VERSION
    (pairs,) = model.calls
    assert pairs["userId"].tolist() == [1, 1, 1] and sorted(pairs["movieId"]) == [12, 13, 14]
    assert recommend(store, model, 99, n=2) is None


def _get(app, path: str, query: str = "") -> tuple[str, dict]:
    seen = {}
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
        "wsgi.input": io.BytesIO(),
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
    }
    body = b"".join(app(environ, lambda status, headers, exc=None: seen.update(status=status)))
    return seen["status"], json.loads(body)


def test_http_route(store, mongo_url, tmp_path):
    model_path = tmp_path / "model.pkl"
    model_path.write_bytes(pickle.dumps(ScoreByTable({12: 1.0, 13: 2.0, 14: 3.0})))
    app = create_app(
        SeedDesignConfig(mongodb_url=mongo_url, model_path=str(model_path), database=store.db.name)
    )
    status, body = _get(app, "/user/1/recommendation", "n=1")
    assert status.startswith("200") and [r["movieId"] for r in body["recommendations"]] == [14]
    assert _get(app, "/user/99/recommendation")[0].startswith("404")
    assert _get(app, "/user/1/recommendation", "n=0")[0].startswith("400")

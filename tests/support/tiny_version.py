"""A small but complete published version (three movies, a cluster, a few users), written with
the pipeline's own ``Store``: for tests of the API around a store that fails or changes."""

from __future__ import annotations

from pipeline.publish.store import Store

GENRES = ["Action", "Comedy", "Drama"]


def movie(mid: int, title: str, genres: list[str], year: int = 2000) -> dict:
    return {
        "_id": mid,
        "title": f"{title} ({year})",
        "name": title,
        "year": year,
        "genres": genres,
        "imdbId": None,
        "tmdbId": None,
        "poster_url": None,
        "stats": {"n_ratings": 10, "mean": 3.5, "shrunk_mean": 3.5, "popularity": 1.0 / mid},
        "similar": [{"movieId": m, "score": 0.5} for m in (1, 2, 3) if m != mid],
        "search": {"key": title.lower()},
    }


def user(uid: int, top: list[int]) -> dict:
    return {
        "_id": uid,
        "cluster": 0,
        "stats": {"n_ratings": 1, "mean": 4.0},
        "ratings": [{"movieId": 3, "rating": 4.0, "timestamp": 1_600_000_000}],
        "top": [
            {
                "movieId": m,
                "score": 1.0 - i / 10,
                "predicted_rating": 4.0,
                "reason": {"kind": "taste_match", "text": "Matches your taste"},
            }
            for i, m in enumerate(top)
        ],
        "model_version": "x",
    }


def publish(db, version: str, user_ids: tuple[int, ...] = (1, 2)) -> None:
    """A small but complete published version, written with the pipeline's own Store."""
    store = Store(db)
    with store.stage(version) as staging:
        staging.insert(
            "movies",
            [
                movie(1, "Alpha", ["Action"]),
                movie(2, "Beta", ["Comedy"]),
                movie(3, "Gamma", ["Drama", "Action"]),
            ],
        )
        staging.insert(
            "metadata",
            [{"_id": m, "title": f"M{m}", "keywords": [], "tags": []} for m in (1, 2, 3)],
        )
        staging.insert(
            "clusters",
            [
                {
                    "_id": 0,
                    "size": len(user_ids),
                    "persona": ["Action"],
                    "profile": {},
                    "top_movies": [{"movieId": 1, "score": 0.9}],
                }
            ],
        )
        staging.insert("users", [user(uid, [1, 2]) for uid in user_ids])
        staging.publish({"artifacts": {"genres": GENRES, "popular": [1, 2, 3]}})

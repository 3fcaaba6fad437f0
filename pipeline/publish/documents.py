"""Build the documents of the served collections (shapes in ``contract.schema``)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd

from contract.titles import display_name, search_key
from pipeline.data.tmdb import poster_url
from pipeline.publish.user_lists import UserListInputs, iter_user_docs
from pipeline.train import FittedModels


def _int_or_none(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) or pd.isna(v) else int(v)


def _float_or_none(v, digits=4):
    return None if v is None or pd.isna(v) else round(float(v), digits)


def _str_or_none(v):
    return None if v is None or (not isinstance(v, str) and pd.isna(v)) or v == "" else str(v)


def _names(v) -> list[str]:
    """A metadata list column's names (keywords, companies); [] when the movie has none."""
    return [str(x) for x in v] if isinstance(v, (list, np.ndarray)) else []


def catalogue(
    movies: pd.DataFrame, links: pd.DataFrame, metadata: pd.DataFrame | None
) -> pd.DataFrame:
    """movies + links + TMDB metadata, one row per movieId (the metadata columns may be missing)."""
    cat = movies.set_index("movieId")
    if links is not None and len(links):
        cat = cat.join(links.set_index("movieId")[["imdbId", "tmdbId"]], how="left")
    else:
        cat = cat.assign(imdbId=pd.NA, tmdbId=pd.NA)
    if metadata is not None and len(metadata):
        meta = metadata.drop_duplicates("tmdbId").set_index("tmdbId").add_prefix("tmdb_")
        cat = cat.join(meta, on="tmdbId", how="left")
    return cat


def display_title(row) -> str:
    """ "The Terminator (1984)" from MovieLens's "Terminator, The (1984)"."""
    name = display_name(row.get("name") or row["title"])
    year = _int_or_none(row.get("year"))
    return f"{name} ({year})" if year else name


def _poster(row) -> str | None:
    return poster_url(_str_or_none(row.get("tmdb_poster_path")))


def movie_docs(
    cat: pd.DataFrame,
    models: FittedModels,
    similar: Mapping[int, list],
    terms: Mapping[int, list[str]] | None = None,
) -> Iterator[dict]:
    """``terms``: each movie's terms a reason may show as evidence, rarest first
    (``pipeline.features.tables.telling_terms``)."""
    stats = models.features.movies
    terms = terms or {}
    for movie_id, row in cat.iterrows():
        s = stats.loc[movie_id] if movie_id in stats.index else None
        name = display_name(row.get("name") or row["title"])
        yield {
            "_id": int(movie_id),
            "title": row["title"],
            "name": name,
            "year": _int_or_none(row.get("year")),
            "genres": list(row["genres"]),
            "imdbId": _int_or_none(row.get("imdbId")),
            "tmdbId": _int_or_none(row.get("tmdbId")),
            "poster_url": _poster(row),
            "stats": {
                "n_ratings": int(s["n_ratings"]) if s is not None else 0,
                "mean": _float_or_none(s["mean"]) if s is not None else None,
                "shrunk_mean": _float_or_none(s["shrunk_mean"])
                if s is not None
                else models.features.global_mean,
                "popularity": _float_or_none(s["popularity"]) if s is not None else 0.0,
            },
            "similar": [
                {"movieId": int(m), "score": round(float(sc), 4)}
                for m, sc in similar.get(int(movie_id), [])
            ],
            "search": {"key": search_key(name)},
            "terms": list(terms.get(int(movie_id), ())),
        }


def metadata_docs(
    cat: pd.DataFrame, tags: pd.DataFrame | None, max_tags: int = 30
) -> Iterator[dict]:
    tag_lists: dict[int, list[str]] = {}
    if tags is not None and len(tags):
        t = tags.assign(tag=tags["tag"].astype(str).str.strip().str.lower())
        counts = t.groupby(["movieId", "tag"]).size().reset_index(name="n")
        counts = counts.sort_values(["movieId", "n", "tag"], ascending=[True, False, True])
        tag_lists = {int(m): g["tag"].head(max_tags).tolist() for m, g in counts.groupby("movieId")}
    for movie_id, row in cat.iterrows():
        has_tmdb = _str_or_none(row.get("tmdb_source")) is not None
        runtime = _float_or_none(row.get("tmdb_runtime"))
        yield {
            "_id": int(movie_id),
            "tmdbId": _int_or_none(row.get("tmdbId")),
            "imdbId": _int_or_none(row.get("imdbId")),
            "title": row["title"],
            "overview": _str_or_none(row.get("tmdb_overview")),
            "tagline": _str_or_none(row.get("tmdb_tagline")),
            "runtime": int(runtime) if runtime else None,
            "release_date": _str_or_none(row.get("tmdb_release_date")),
            "original_language": _str_or_none(row.get("tmdb_original_language")),
            "poster_path": _str_or_none(row.get("tmdb_poster_path")),
            "poster_url": _poster(row),
            "vote_average": _float_or_none(row.get("tmdb_vote_average")),
            "vote_count": _int_or_none(row.get("tmdb_vote_count")),
            "keywords": _names(row.get("tmdb_keywords")),
            "collection": _str_or_none(row.get("tmdb_collection")),
            "companies": _names(row.get("tmdb_companies")),
            "tags": tag_lists.get(int(movie_id), []),
            "source": str(row["tmdb_source"]) if has_tmdb else "movielens",
        }


def cluster_docs(clusters: pd.DataFrame) -> Iterator[dict]:
    for c, row in clusters.iterrows():
        yield {
            "_id": int(c),
            "size": int(row["size"]),
            "persona": list(row["persona"]),
            "profile": dict(row["profile"]),
            "top_movies": list(row["top_movies"]),
        }


def user_docs(
    models: FittedModels,
    labels: pd.Series,
    clusters: pd.DataFrame,
    titles: dict[int, str],
    version: str,
    n: int,
    block: int = 2048,
    similar: Mapping[int, list] | None = None,
    min_rating: float | None = None,
) -> Iterator[dict]:
    """Users with their activity, cluster and precomputed top-``n`` (scores, predicted ratings,
    reasons), built in this process (``pipeline.publish.user_lists.block_docs`` gives the reasons'
    order; ``pipeline.publish.user_lists.write_user_lists`` does the same on the Dask cluster).
    ``similar``: movieId -> ``[(movieId, score), ...]`` as stored in the movie documents;
    ``min_rating``: the lowest rating of a "because you liked" movie (default: the top-N
    model's ``because_min_rating``)."""
    inputs = UserListInputs.from_models(
        models, labels, clusters, titles, version, n, similar, min_rating
    )
    return iter_user_docs(inputs, block)

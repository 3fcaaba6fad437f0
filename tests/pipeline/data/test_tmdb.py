"""The bundled TMDB metadata, and the merge rules of its builder on tiny in-test files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.data.tmdb import (
    COLUMNS,
    POSTER_BASE,
    build_bundle,
    bundle_or_none,
    load_metadata,
    movie_votes,
    poster_url,
)
from tests.support.paths import REPO as ROOT

BUNDLE = ROOT / "resources" / "tmdb"
LINKS = ROOT / "resources" / "ml-latest-small" / "links.csv"
SOURCES = {"movies_metadata_rows1-5000", "movies_metadata_subset2831", "tmdb_5000_movies"}
KEYWORDS_ONLY = "keywords_only"


@pytest.fixture(scope="module")
def metadata() -> pd.DataFrame:
    return load_metadata(BUNDLE)


def test_bundle_schema_and_uniqueness(metadata):
    assert list(metadata.columns) == COLUMNS
    assert str(metadata["tmdbId"].dtype) == "int64"
    assert not metadata["tmdbId"].duplicated().any()
    assert set(metadata["source"]) == SOURCES | {KEYWORDS_ONLY}
    assert all(
        isinstance(k, list) and all(isinstance(w, str) for w in k) for k in metadata["keywords"]
    )
    assert all(len(k) == len(set(k)) for k in metadata["keywords"])
    assert all(isinstance(c, list) and len(c) == len(set(c)) for c in metadata["companies"])
    assert all(c is None or (isinstance(c, str) and c) for c in metadata["collection"])
    dates = metadata["release_date"].dropna()
    assert dates.str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    for col in ("imdb_id", "poster_path", "tagline", "overview"):
        assert all(v is None or (isinstance(v, str) and v) for v in metadata[col])


def test_toy_story_comes_from_the_verbatim_rows(metadata):
    toy = metadata.set_index("tmdbId").loc[862]
    assert toy["runtime"] == 81.0
    assert toy["poster_path"] == "/rhIRbceoE9lR4veEXuwCC2wARtG.jpg"
    assert poster_url(toy["poster_path"]) == POSTER_BASE + "/rhIRbceoE9lR4veEXuwCC2wARtG.jpg"
    assert (toy["release_date"], toy["vote_count"], toy["budget"]) == (
        "1995-10-30",
        5415,
        30_000_000,
    )
    assert toy["popularity"] == pytest.approx(21.946943)
    assert toy["source"] == "movies_metadata_rows1-5000"
    assert toy["imdb_id"] == "tt0114709"
    assert "toy" in toy["keywords"] and "jealousy" in toy["keywords"]
    assert toy["collection"] == "Toy Story Collection"
    assert toy["companies"] == ["Pixar Animation Studios"]


def test_coverage_of_ml_latest_small(metadata):
    links = pd.read_csv(LINKS, dtype={"tmdbId": "Int64"})
    with_rows = metadata[metadata["source"] != KEYWORDS_ONLY]
    covered = links["tmdbId"].isin(set(with_rows["tmdbId"])).fillna(False)
    assert int(covered.sum()) == 6234
    # movies without a metadata row still get their keywords
    only = metadata[metadata["source"] == KEYWORDS_ONLY]
    assert len(only) > 2000 and all(only["keywords"].map(len) > 0) and only["title"].isna().all()
    assert set(metadata["tmdbId"]) <= set(links["tmdbId"].dropna())
    # posters and IMDb ids exist only in The Movies Dataset rows
    tmdb5000 = metadata[metadata["source"] == "tmdb_5000_movies"]
    assert tmdb5000["poster_path"].isna().all() and tmdb5000["imdb_id"].isna().all()
    verbatim = metadata["source"].str.startswith("movies_metadata")
    assert metadata.loc[verbatim, "poster_path"].notna().mean() > 0.99


def test_movie_votes_join_through_links_and_treat_no_votes_as_unknown():
    links = pd.DataFrame({"movieId": [1, 2, 3, 4, 5], "tmdbId": [11, 12, 13, None, 12]})
    metadata = pd.DataFrame(
        {
            "tmdbId": [11, 12, 13, 13, 99],
            "vote_average": [7.5, 0.0, 6.0, 1.0, 9.0],
            "vote_count": pd.array([120, 0, 3, 5, 50], dtype="Int64"),
        }
    )
    votes = movie_votes(links, metadata)
    # movie 4 has no TMDB id, tmdbId 99 no movie; the first row of a repeated tmdbId counts
    assert votes.index.tolist() == [1, 2, 3, 5]
    assert votes.loc[1].tolist() == [7.5, 120.0] and votes.loc[3].tolist() == [6.0, 3.0]
    # TMDB publishes 0 for a movie nobody voted on: unknown, not a bad film
    assert pd.isna(votes.loc[2, "vote_average"]) and votes.loc[2, "vote_count"] == 0
    assert votes.loc[5].equals(votes.loc[2])
    assert movie_votes(links, None) is None and movie_votes(None, metadata) is None


def test_bundle_or_none(tmp_path, metadata):
    assert bundle_or_none(None) is None and bundle_or_none(tmp_path / "absent") is None
    assert bundle_or_none(BUNDLE).equals(metadata)


def test_poster_url_handles_missing():
    assert poster_url(None) is None and poster_url(float("nan")) is None and poster_url("") is None


def test_a_bundle_built_before_the_collection_and_companies_reads_as_having_none(
    metadata, tmp_path
):
    old = pd.read_csv(BUNDLE / "metadata.csv.gz", dtype=str, keep_default_na=False)
    old.drop(columns=["collection", "companies"]).to_csv(tmp_path / "metadata.csv.gz", index=False)
    got = load_metadata(tmp_path)
    assert list(got.columns) == COLUMNS
    assert got["collection"].isna().all() and (got["companies"].map(len) == 0).all()
    rest = [c for c in COLUMNS if c not in ("collection", "companies")]
    assert got[rest].equals(metadata[rest])


def _write(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def _movies_dataset_rows(rows):
    cols = [
        "adult",
        "belongs_to_collection",
        "budget",
        "genres",
        "homepage",
        "id",
        "imdb_id",
        "original_language",
        "original_title",
        "overview",
        "popularity",
        "poster_path",
        "production_companies",
        "production_countries",
        "release_date",
        "revenue",
        "runtime",
        "spoken_languages",
        "status",
        "tagline",
        "title",
        "video",
        "vote_average",
        "vote_count",
    ]
    out = []
    for tmdb_id, title, popularity in rows:
        row = dict.fromkeys(cols, "")
        row.update(
            id=tmdb_id,
            title=title,
            popularity=popularity,
            imdb_id=f"tt{tmdb_id:07d}",
            poster_path=f"/{tmdb_id}.jpg",
            runtime=90.0,
            release_date="2001-02-03",
            budget=10,
            revenue=20,
            vote_average=6.5,
            vote_count=100,
            overview="No overview found.",
        )
        out.append(row)
    return pd.DataFrame(out, columns=cols)


def test_build_applies_precedence_dedupes_and_unions_keywords(tmp_path):
    shared = tmp_path / "shared"
    verbatim = _movies_dataset_rows(
        [(1, "First", 1.5), (1, "First again", 9.0), (99, "Not in links", 1.0)]
    )
    # The Movies Dataset prints these as Python literals
    verbatim.loc[0, "belongs_to_collection"] = str({"id": 7, "name": "First Collection"})
    verbatim.loc[0, "production_companies"] = str(
        [
            {"name": "Studio A", "id": 1},
            {"name": "Studio A", "id": 1},
            {"name": "Studio C", "id": 3},
        ]
    )
    _write(shared / "tmdb" / "movies_metadata_rows1-5000.csv", verbatim)
    _write(
        shared / "tmdb" / "movies_metadata_subset2831.csv",
        _movies_dataset_rows([(1, "Subset copy", 2.0), (2, "Second", 14.686035999999998)]),
    )
    tmdb5000 = pd.DataFrame(
        {
            "budget": [5, 7],
            "genres": ["[]", "[]"],
            "homepage": ["", ""],
            "id": [2, 3],
            "keywords": [
                json.dumps([{"id": 1, "name": "space"}]),
                json.dumps([{"id": 2, "name": "robot"}, {"id": 3, "name": "love"}]),
            ],
            "original_language": ["en", "fr"],
            "original_title": ["x", "y"],
            "overview": ["o2", "o3"],
            "popularity": [50.0, 60.0],
            "production_companies": ["[]", json.dumps([{"name": "Studio B", "id": 2}])],
            "production_countries": ["[]", "[]"],
            "release_date": ["2000-01-01", ""],
            "revenue": [0, 0],
            "runtime": [100, 110],
            "spoken_languages": ["[]", "[]"],
            "status": ["Released", "Released"],
            "tagline": ["", "t3"],
            "title": ["Second (5000)", "Third"],
            "vote_average": [7.0, 8.0],
            "vote_count": [10, 20],
        }
    )
    _write(shared / "tmdb" / "tmdb_5000_movies.csv", tmdb5000)
    _write(
        shared / "the-movies-dataset" / "keywords.csv",
        pd.DataFrame(
            {
                "id": [1, 1, 3, 2],
                "keywords": [
                    str([{"id": 9, "name": "hero"}]),
                    str([{"id": 8, "name": "ignored duplicate"}]),
                    str([{"id": 3, "name": "love"}, {"id": 4, "name": "paris"}]),
                    "[]",
                ],
            }
        ),
    )
    links = tmp_path / "links.csv"
    links.write_text(
        "movieId,imdbId,tmdbId\n10,0000001,1\n20,0000002,2\n30,0000003,3\n40,0000004,\n50,0000005,3\n"
    )

    counts = build_bundle(shared, links, tmp_path / "out")
    got = load_metadata(tmp_path / "out").set_index("tmdbId")

    assert list(got.index) == [1, 2, 3]
    assert (
        counts["rows"] == 3
        and counts["movies_covered"] == 4
        and counts["links_without_tmdbId"] == 1
    )
    assert counts["rows_by_source"] == {
        "movies_metadata_rows1-5000": 1,
        "movies_metadata_subset2831": 1,
        "tmdb_5000_movies": 1,
    }
    assert (got.loc[1, "title"], got.loc[1, "source"]) == ("First", "movies_metadata_rows1-5000")
    assert (got.loc[2, "title"], got.loc[2, "source"]) == ("Second", "movies_metadata_subset2831")
    assert got.loc[2, "popularity"] == 14.686036  # re-save noise rounded away
    assert (got.loc[3, "title"], got.loc[3, "source"]) == ("Third", "tmdb_5000_movies")
    assert got.loc[3, "poster_path"] is None and got.loc[3, "release_date"] is None
    assert got.loc[1, "overview"] is None  # TMDB placeholder text
    assert got.loc[1, "keywords"] == ["hero"]
    assert got.loc[2, "keywords"] == ["space"]
    assert got.loc[3, "keywords"] == ["love", "paris", "robot"]
    assert got["collection"].tolist() == ["First Collection", None, None]
    assert got["companies"].tolist() == [["Studio A", "Studio C"], [], ["Studio B"]]
    assert (counts["rows_with_collection"], counts["rows_with_companies"]) == (1, 2)

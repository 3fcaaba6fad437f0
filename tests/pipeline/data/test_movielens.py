"""Every MovieLens layout reads into one schema; named sets are fetched and verified offline."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import dask.dataframe as dd
import pandas as pd
import pytest

from pipeline.data.fetch import fetch
from pipeline.data.layouts import split_title
from pipeline.data.movielens import MovieLensData, load_movielens
from pipeline.data.source import DatasetConfig, DatasetError, detect_layout
from tests.support.paths import TEST_DATA as DATA

LAYOUTS = {"ml-csv": "csv", "ml-1m": "dat", "ml-10m": "dat", "ml-100k": "100k"}
RATING_DTYPES = {"userId": "int32", "movieId": "int32", "rating": "float32", "timestamp": "int64"}


def _check_schema(data: MovieLensData) -> pd.DataFrame:
    assert isinstance(data.ratings, dd.DataFrame)
    ratings = data.ratings.compute()
    assert list(ratings.columns) == list(RATING_DTYPES)
    assert {c: str(t) for c, t in ratings.dtypes.items()} == RATING_DTYPES

    movies = data.movies
    assert list(movies.columns) == ["movieId", "title", "name", "year", "genres"]
    assert str(movies["movieId"].dtype) == "int64"
    assert str(movies["year"].dtype) == "Int64"
    assert pd.api.types.is_string_dtype(movies["title"]) and pd.api.types.is_string_dtype(
        movies["name"]
    )
    assert all(isinstance(g, list) and all(isinstance(x, str) for x in g) for g in movies["genres"])
    assert not any("(no genres listed)" in g or "unknown" in g for g in movies["genres"])

    tags = data.tags
    assert list(tags.columns) == ["userId", "movieId", "tag", "timestamp"]
    assert [str(tags[c].dtype) for c in ("userId", "movieId", "timestamp")] == ["int64"] * 3
    assert pd.api.types.is_string_dtype(tags["tag"])

    links = data.links
    assert list(links.columns) == ["movieId", "imdbId", "tmdbId"]
    assert [str(t) for t in links.dtypes] == ["int64", "Int64", "Int64"]
    return ratings


@pytest.mark.parametrize("folder", sorted(LAYOUTS))
def test_every_layout_reads_into_the_same_schema(folder):
    path = DATA / folder
    assert detect_layout(path) == LAYOUTS[folder]
    data = load_movielens(path)
    assert data.name == folder
    ratings = _check_schema(data)
    assert len(ratings) > 0
    assert ratings["rating"].between(0.5, 5.0).all()
    # every fixture has a latin-1 / UTF-8 accented title that must survive decoding
    assert data.movies["title"].str.startswith("Amélie").any()
    toy = data.movies.set_index("movieId").loc[1]
    assert (toy["title"], toy["name"], toy["year"]) == ("Toy Story (1995)", "Toy Story", 1995)


def test_csv_layout_details():
    data = load_movielens(DATA / "ml-csv")
    ratings = data.ratings.compute()
    assert ratings.iloc[1].tolist() == [1, 2, 3.5, 964981247]
    movies = data.movies.set_index("movieId")
    assert movies.loc[11, "name"] == "American President, The"  # quoted title with a comma
    assert pd.isna(movies.loc[40697, "year"]) and movies.loc[40697, "name"] == "Babylon 5"
    assert movies.loc[171749, "year"] == 2006 and movies.loc[171749, "genres"] == []
    assert not movies["title"].str.endswith("\r").any()
    assert data.tags["tag"].tolist() == [
        "funny",
        "quirky, French",
        "NA",
    ]  # "NA" is a tag, not a gap
    links = data.links.set_index("movieId")
    assert links.loc[1, "imdbId"] == 114709 and links.loc[1, "tmdbId"] == 862
    assert pd.isna(links.loc[40697, "tmdbId"])


def test_dat_layouts_decode_latin1_and_utf8_and_half_stars():
    one_m = load_movielens(DATA / "ml-1m")
    assert one_m.movies.set_index("movieId").loc[3, "title"] == "Amélie (2001)"  # latin-1 bytes
    assert one_m.movies.set_index("movieId").loc[1, "genres"] == [
        "Animation",
        "Children's",
        "Comedy",
    ]
    assert one_m.tags.empty and one_m.links.empty
    ten_m = load_movielens(DATA / "ml-10m")
    assert (
        ten_m.movies.set_index("movieId").loc[4973, "name"].startswith("Amélie (Fabuleux")
    )  # UTF-8 bytes
    assert sorted(ten_m.ratings.compute()["rating"].tolist()) == [2.5, 3.0, 4.5, 5.0]
    assert ten_m.tags["tag"].tolist() == ["excellent!", "Pixar: animation"]


def test_100k_genre_flags_and_year_fallback():
    data = load_movielens(DATA / "ml-100k")
    movies = data.movies.set_index("movieId")
    assert movies.loc[2, "genres"] == ["Action", "Adventure", "Thriller"]
    assert movies.loc[267, "genres"] == [] and pd.isna(movies.loc[267, "year"])
    assert movies.loc[4, "year"] == 1997  # no year in the title: taken from the release date
    assert movies.loc[3, "title"] == "Amélie (2001)"


@pytest.mark.parametrize("folder", ["ml-csv", "ml-1m", "ml-100k"])
def test_small_blocks_stream_the_same_ratings(folder):
    whole = load_movielens(DATA / folder).ratings.compute().reset_index(drop=True)
    parts = load_movielens(DATA / folder, DatasetConfig(blocksize="40B")).ratings
    assert parts.npartitions > 1
    pd.testing.assert_frame_equal(parts.compute().reset_index(drop=True), whole)


def test_bundled_name_resolves_from_the_package_not_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = load_movielens("ml-latest-small")
    assert data.name == "ml-latest-small"
    assert len(data.movies) == 9742 and len(data.links) == 9742 and len(data.tags) == 3683
    assert data.ratings.shape[0].compute() == 100836
    assert (data.movies["genres"].str.len() == 0).sum() == 34


def test_split_title():
    assert split_title("Heat (1995)") == ("Heat", 1995)
    assert split_title("Misérables, Les (1995) ") == ("Misérables, Les", 1995)
    assert split_title("Fawlty Towers (1975-1979)") == ("Fawlty Towers", 1975)
    assert split_title("Babylon 5") == ("Babylon 5", None)
    assert split_title("1984 (1956)") == ("1984", 1956)


def test_unknown_source_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="neither a folder nor a known"):
        load_movielens(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no MovieLens layout"):
        load_movielens(tmp_path)


# ---------------------------------------------------------------- fetching (no network)


def _fake_zip(path: Path, top: str = "ml-latest") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for f in sorted((DATA / "ml-csv").iterdir()):
            zf.write(f, f"{top}/{f.name}")
    return path


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_no_download_names_the_path_and_url(tmp_path):
    config = DatasetConfig(cache_dir=str(tmp_path / "cache"), download=False)
    with pytest.raises(DatasetError) as err:
        load_movielens("ml-25m", config)
    message = str(err.value)
    assert str(tmp_path / "cache" / "ml-25m.zip") in message
    assert "https://files.grouplens.org/datasets/movielens/ml-25m.zip" in message


def test_offline_download_failure_says_where_to_put_the_zip(tmp_path):
    config = DatasetConfig(
        cache_dir=str(tmp_path / "cache"), base_url=(tmp_path / "offline").as_uri()
    )
    with pytest.raises(DatasetError) as err:
        fetch("ml-1m", config)
    message = str(err.value)
    assert "download failed" in message and str(tmp_path / "cache" / "ml-1m.zip") in message
    assert not (tmp_path / "cache" / "ml-1m.zip").exists()
    assert not (tmp_path / "cache" / "ml-1m.zip.part").exists()


def test_pinned_checksum_mismatch_is_refused(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    _fake_zip(cache / "ml-1m.zip", "ml-1m")  # a real zip, but not the GroupLens bytes
    with pytest.raises(DatasetError, match="checksum mismatch") as err:
        load_movielens("ml-1m", DatasetConfig(cache_dir=str(cache), download=False))
    assert "c4d9eecfca2ab87c1945afe126590906" in str(err.value)
    assert not (cache / "ml-1m").exists()


def test_download_verifies_against_published_md5_and_caches(tmp_path):
    server = tmp_path / "server"
    server.mkdir()
    zip_path = _fake_zip(server / "ml-latest.zip")
    (server / "ml-latest.zip.md5").write_text(f"{_md5(zip_path)}  ml-latest.zip\n")
    config = DatasetConfig(cache_dir=str(tmp_path / "cache"), base_url=server.as_uri())

    data = load_movielens("ml-latest", config)
    assert data.name == "ml-latest"
    _check_schema(data)
    assert len(data.movies) == 6
    # served from the cache once unzipped: the "server" can go away
    for f in server.iterdir():
        f.unlink()
    folder = fetch("ml-latest", DatasetConfig(cache_dir=str(tmp_path / "cache"), download=False))
    assert (folder / "ratings.csv").is_file()


def test_published_md5_mismatch_is_refused(tmp_path):
    server = tmp_path / "server"
    server.mkdir()
    _fake_zip(server / "ml-latest.zip")
    (server / "ml-latest.zip.md5").write_text("0" * 32 + "  ml-latest.zip\n")
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match="checksum mismatch"):
        fetch("ml-latest", DatasetConfig(cache_dir=str(cache), base_url=server.as_uri()))
    assert not (cache / "ml-latest").exists()


def test_corrupt_zip_with_matching_md5_is_refused(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    bad = cache / "ml-latest.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    (cache / "ml-latest.zip.md5").write_text(_md5(bad) + "\n")
    with pytest.raises(DatasetError, match="not a readable zip"):
        fetch("ml-latest", DatasetConfig(cache_dir=str(cache), download=False))
    assert not (cache / "ml-latest").exists()

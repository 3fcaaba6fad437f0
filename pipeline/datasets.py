"""Read every MovieLens layout into one schema.

``load_movielens(source)`` accepts a folder (the layout is detected from the files in
it) or the name of a published set:

* ``"ml-latest-small"``: the copy bundled in ``resources/ml-latest-small`` of this repo;
* ``"ml-100k"``, ``"ml-1m"``, ``"ml-10m"``, ``"ml-20m"``, ``"ml-25m"``, ``"ml-32m"``,
  ``"ml-latest"``: GroupLens zips, downloaded on first use into ``cache_dir``, checked
  against their MD5 and unzipped there (see :func:`fetch`).

Layouts read:

* CSV (latest-small, latest, 20m, 25m, 32m): ``ratings.csv``, ``movies.csv``,
  ``tags.csv``, ``links.csv``; LF or CRLF line endings.
* ``::``-separated ``.dat`` (1m, 10m): ``ratings.dat``, ``movies.dat`` and, for 10m,
  ``tags.dat``. Text is decoded as UTF-8 when valid, else latin-1 (1m is latin-1).
* 100k: tab-separated ``u.data``, pipe-separated latin-1 ``u.item`` with 19 genre flags
  whose names are in ``u.genre``.

Every layout comes out as :class:`MovieLensData`: ratings as a Dask DataFrame read in
``blocksize`` pieces (never one pandas frame of all ratings), the small tables as
pandas. Genre names are kept as published (``Children's`` in 100k/1m, ``Children``
later); ``(no genres listed)`` and 100k's ``unknown`` become an empty list.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

BASE_URL = "https://files.grouplens.org/datasets/movielens"
BUNDLED = "ml-latest-small"

# MD5 of each published zip, as GroupLens lists in <name>.zip.md5 beside it. These
# releases are frozen; ml-latest changes over time, so its MD5 is read from the
# published .md5 file instead of being pinned.
PINNED_MD5 = {
    "ml-100k": "0e33842e24a9c977be4e0107933c0723",
    "ml-1m": "c4d9eecfca2ab87c1945afe126590906",
    "ml-10m": "ce571fd55effeba0271552578f2648bd",
    "ml-20m": "cd245b17a1ae2cc31bb14903e1204af3",
    "ml-25m": "6b51fb2759a8657d3bfcbfc42b592ada",
    "ml-32m": "d472be332d4daa821edc399621853b57",
}
NAMED_SETS = (BUNDLED, *PINNED_MD5, "ml-latest")

RATING_COLUMNS = ["userId", "movieId", "rating", "timestamp"]
RATING_DTYPES = {"userId": "int32", "movieId": "int32", "rating": "float32", "timestamp": "int64"}
NO_GENRES = {"(no genres listed)", "unknown", ""}

_YEAR_AT_END = re.compile(r"^(?P<name>.*?)\s*\((?P<year>\d{4})(?:\s*[-\u2013]\s*(?:\d{4})?)?\)\s*$")
_COMPLETE_MARKER = ".complete"


class DatasetError(RuntimeError):
    """A data set cannot be found, fetched, verified or read."""


@dataclass(frozen=True)
class DatasetConfig:
    """Where named sets live and how ratings are read.

    ``cache_dir``: folder for downloaded zips and their unzipped contents; a relative
    path is taken from the repository root (where ``.gitignore`` lists ``data-cache/``).
    ``blocksize``: Dask ``read_csv``/``read_bytes`` block size for the ratings file.
    ``download``: allow downloading named sets that are not in the cache.
    ``base_url``: where the GroupLens zips are published.
    ``timeout``: seconds before a stalled download is given up.
    """

    cache_dir: str = "data-cache"
    blocksize: str = "64MB"
    download: bool = True
    base_url: str = BASE_URL
    timeout: float = 60.0


@dataclass
class MovieLensData:
    """One MovieLens data set in the common schema (see the module docstring)."""

    name: str
    ratings: dd.DataFrame
    movies: pd.DataFrame
    tags: pd.DataFrame
    links: pd.DataFrame
    path: Path | None = None  # the folder the files were read from


def repo_root() -> Path:
    """The repository root, found from this package's location."""
    return Path(__file__).resolve().parent.parent


def bundled_path() -> Path:
    return repo_root() / "resources" / BUNDLED


def load_movielens(source: str | os.PathLike, config: DatasetConfig = DatasetConfig()) -> MovieLensData:
    """Load a MovieLens folder or named set into :class:`MovieLensData`."""
    text = os.fspath(source)
    if text in NAMED_SETS:
        folder, name = fetch(text, config), text
    else:
        folder = Path(text)
        if not folder.is_dir():
            raise DatasetError(
                f"{text!r} is neither a folder nor a known data set name ({', '.join(NAMED_SETS)})"
            )
        name = folder.resolve().name
    folder = _data_folder(folder)
    layout = detect_layout(folder)
    reader = {"csv": _read_csv_layout, "dat": _read_dat_layout, "100k": _read_100k_layout}[layout]
    ratings, movies, tags, links = reader(folder, config)
    return MovieLensData(name=name, ratings=ratings, movies=movies, tags=tags, links=links, path=folder)


def detect_layout(folder: Path) -> str:
    """``"csv"``, ``"dat"`` or ``"100k"`` from the files present in ``folder``."""
    has = lambda f: (folder / f).is_file()  # noqa: E731
    if has("ratings.csv") and has("movies.csv"):
        return "csv"
    if has("ratings.dat") and has("movies.dat"):
        return "dat"
    if has("u.data") and has("u.item"):
        return "100k"
    found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    raise DatasetError(
        f"no MovieLens layout recognised in {folder}: expected ratings.csv+movies.csv, "
        f"ratings.dat+movies.dat or u.data+u.item; found {found}"
    )


def _data_folder(folder: Path) -> Path:
    """``folder`` itself, or its only subfolder holding a layout (an unzipped archive)."""
    try:
        detect_layout(folder)
        return folder
    except DatasetError:
        subs = [p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")]
        for sub in subs:
            try:
                detect_layout(sub)
                return sub
            except DatasetError:
                continue
        raise


# --------------------------------------------------------------------------- fetching


def fetch(name: str, config: DatasetConfig) -> Path:
    """Local folder of a named set: download, verify the MD5, unzip and cache as needed.

    Layout of ``cache_dir``: ``<name>.zip`` (kept), ``<name>.zip.md5`` (for sets
    without a pinned MD5) and ``<name>/`` (the unzipped archive, with a ``.complete``
    marker written last). A zip whose MD5 does not match is never unzipped.
    """
    if name == BUNDLED:
        path = bundled_path()
        if not path.is_dir():
            raise DatasetError(f"the bundled {BUNDLED} is missing: expected it at {path}")
        return path
    if name not in NAMED_SETS:
        raise DatasetError(f"unknown data set {name!r}; known: {', '.join(NAMED_SETS)}")

    cache = _cache_dir(config)
    target = cache / name
    if (target / _COMPLETE_MARKER).is_file():
        return _data_folder(target)

    zip_path = cache / f"{name}.zip"
    url = f"{config.base_url.rstrip('/')}/{name}.zip"
    if not zip_path.is_file():
        if not config.download:
            raise DatasetError(_manual_help(name, zip_path, url, "downloading is switched off"))
        cache.mkdir(parents=True, exist_ok=True)
        _download(url, zip_path, config, name)
    expected = _expected_md5(name, zip_path, url, config)
    actual = md5_of(zip_path)
    if actual != expected:
        raise DatasetError(
            f"checksum mismatch for {zip_path}: MD5 is {actual}, the published MD5 is {expected}. "
            f"The file is corrupt or not the GroupLens release; it was not used. Delete it and "
            f"run again to download it afresh, or put a good copy from {url} there."
        )
    _unzip(zip_path, target, expected)
    return _data_folder(target)


def md5_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _cache_dir(config: DatasetConfig) -> Path:
    path = Path(config.cache_dir).expanduser()
    return path if path.is_absolute() else repo_root() / path


def _manual_help(name: str, zip_path: Path, url: str, why: str) -> str:
    extra = "" if name in PINNED_MD5 else f" together with its checksum file {url}.md5 as {zip_path}.md5"
    return (
        f"MovieLens set {name!r} is not in the cache and cannot be downloaded ({why}). "
        f"Download {url} by hand and put it at {zip_path}{extra}; it is checked and unzipped on the next run."
    )


def _download(url: str, dest: Path, config: DatasetConfig, name: str) -> None:
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=config.timeout) as resp, open(part, "wb") as out:
            shutil.copyfileobj(resp, out, length=1 << 20)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        part.unlink(missing_ok=True)
        raise DatasetError(_manual_help(name, dest, url, f"download failed: {exc}")) from exc
    part.replace(dest)


def _expected_md5(name: str, zip_path: Path, url: str, config: DatasetConfig) -> str:
    if name in PINNED_MD5:
        return PINNED_MD5[name]
    md5_path = zip_path.with_name(zip_path.name + ".md5")
    if not md5_path.is_file():
        if not config.download:
            raise DatasetError(
                f"{zip_path} is present but its checksum file is not: put {url}.md5 at {md5_path} "
                f"(downloading is switched off)"
            )
        _download(url + ".md5", md5_path, config, name)
    text = md5_path.read_text(encoding="ascii", errors="replace").strip()
    match = re.match(r"^([0-9a-fA-F]{32})\b", text)
    if not match:
        md5_path.unlink(missing_ok=True)
        raise DatasetError(f"{md5_path} does not hold an MD5 (starts {text[:40]!r}); it was removed")
    return match.group(1).lower()


def _unzip(zip_path: Path, target: Path, md5: str) -> None:
    tmp = target.with_name(target.name + ".unzipping")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            root = tmp.resolve()
            for member in archive.namelist():
                dest = (tmp / member).resolve()
                if dest != root and root not in dest.parents:
                    raise DatasetError(f"{zip_path} holds an unsafe path {member!r}; not unzipped")
            bad = archive.testzip()
            if bad is not None:
                raise DatasetError(f"{zip_path} is corrupt (bad CRC in {bad}); not unzipped")
            archive.extractall(tmp)
    except zipfile.BadZipFile as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetError(f"{zip_path} is not a readable zip: {exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _data_folder(tmp)  # fails clearly if the archive holds no MovieLens layout
    shutil.rmtree(target, ignore_errors=True)
    tmp.replace(target)
    (target / _COMPLETE_MARKER).write_text(md5 + "\n", encoding="ascii")


# --------------------------------------------------------------------------- readers


def _decode(data: bytes) -> str:
    """UTF-8 when the bytes are valid UTF-8, else latin-1 (1m/100k are latin-1)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _text(path: Path) -> io.StringIO:
    return io.StringIO(_decode(path.read_bytes()))


def _ratings_meta() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in RATING_DTYPES.items()})


def _typed_ratings(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[RATING_COLUMNS].astype(RATING_DTYPES)


def _read_csv_layout(folder: Path, config: DatasetConfig):
    ratings = dd.read_csv(
        folder / "ratings.csv",
        blocksize=config.blocksize,
        usecols=RATING_COLUMNS,
        dtype={"userId": "int32", "movieId": "int32", "rating": "float32", "timestamp": "int64"},
    )[RATING_COLUMNS]
    raw = pd.read_csv(_text(folder / "movies.csv"), dtype={"movieId": "int64", "title": str, "genres": str},
                      keep_default_na=False)
    movies = _movies_frame(raw["movieId"], raw["title"], raw["genres"].str.split("|"))
    tags = _empty_tags()
    if (folder / "tags.csv").is_file():
        tags = _tags_frame(pd.read_csv(_text(folder / "tags.csv"), dtype={"tag": str}, keep_default_na=False))
    links = _empty_links()
    if (folder / "links.csv").is_file():
        links = _links_frame(pd.read_csv(folder / "links.csv", dtype={"imdbId": "Int64", "tmdbId": "Int64"}))
    return ratings, movies, tags, links


def _read_dat_layout(folder: Path, config: DatasetConfig):
    ratings = _read_dat_ratings(folder / "ratings.dat", config.blocksize)
    fields = _split_dat(folder / "movies.dat", 3)
    movies = _movies_frame(
        pd.Series([int(f[0]) for f in fields], dtype="int64"),
        pd.Series([f[1] for f in fields], dtype=str),
        [f[2].split("|") for f in fields],
    )
    tags = _empty_tags()
    if (folder / "tags.dat").is_file():
        rows = _split_dat(folder / "tags.dat", 4)
        tags = _tags_frame(pd.DataFrame(rows, columns=["userId", "movieId", "tag", "timestamp"]))
    return ratings, movies, tags, _empty_links()


def _read_100k_layout(folder: Path, config: DatasetConfig):
    ratings = dd.read_csv(
        folder / "u.data",
        sep="\t",
        header=None,
        names=RATING_COLUMNS,
        blocksize=config.blocksize,
        dtype={"userId": "int32", "movieId": "int32", "rating": "float32", "timestamp": "int64"},
    )
    genre_names = _100k_genres(folder)
    cols = ["movieId", "title", "release_date", "video_release_date", "url", *genre_names]
    raw = pd.read_csv(_text(folder / "u.item"), sep="|", header=None, names=cols, dtype=str,
                      keep_default_na=False, quoting=3)
    flags = raw[genre_names].astype("int8").to_numpy()
    names = np.asarray(genre_names, dtype=object)
    genres = [list(names[row.astype(bool)]) for row in flags]
    release_year = pd.to_datetime(raw["release_date"], format="%d-%b-%Y", errors="coerce").dt.year
    movies = _movies_frame(raw["movieId"].astype("int64"), raw["title"], genres,
                           fallback_year=release_year.astype("Int64"))
    return ratings, movies, _empty_tags(), _empty_links()


DEFAULT_100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
]


def _100k_genres(folder: Path) -> list[str]:
    path = folder / "u.genre"
    if not path.is_file():
        return list(DEFAULT_100K_GENRES)
    pairs = []
    for line in _decode(path.read_bytes()).splitlines():
        if "|" in line:
            name, index = line.rsplit("|", 1)
            pairs.append((int(index), name))
    return [name for _, name in sorted(pairs)]


def _split_dat(path: Path, n_fields: int) -> list[list[str]]:
    """Lines of a ``::`` file as ``n_fields`` strings; extra ``::`` stay in the middle field."""
    rows = []
    for line in _decode(path.read_bytes()).splitlines():
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) < n_fields:
            raise DatasetError(f"{path}: line {line!r} has fewer than {n_fields} '::' fields")
        if n_fields == 3:
            rows.append([parts[0], "::".join(parts[1:-1]), parts[-1]])
        else:  # userId::movieId::tag::timestamp
            rows.append([parts[0], parts[1], "::".join(parts[2:-1]), parts[-1]])
    return rows


def _read_dat_ratings(path: Path, blocksize: str) -> dd.DataFrame:
    """``::`` ratings streamed block by block: each block's bytes become a pandas frame."""
    from dask.bytes import read_bytes

    _, blocks = read_bytes(os.fspath(path), delimiter=b"\n", blocksize=blocksize, sample=False)
    parts = [dask.delayed(_parse_dat_ratings_block)(block) for block in blocks[0]]
    return dd.from_delayed(parts, meta=_ratings_meta(), verify_meta=False)


def _parse_dat_ratings_block(data: bytes) -> pd.DataFrame:
    data = data.replace(b"::", b"\t")
    if not data.strip():
        return _ratings_meta()
    frame = pd.read_csv(io.BytesIO(data), sep="\t", header=None, names=RATING_COLUMNS, engine="c")
    return _typed_ratings(frame)


def split_title(title: str) -> tuple[str, int | None]:
    """``"Heat (1995)"`` -> ``("Heat", 1995)``; a title without a trailing year keeps it all."""
    match = _YEAR_AT_END.match(title)
    if match is None:
        return title.strip(), None
    return match.group("name"), int(match.group("year"))


def _movies_frame(movie_ids, titles, genre_lists, fallback_year=None) -> pd.DataFrame:
    titles = pd.Series(titles, dtype=str).reset_index(drop=True)
    split = [split_title(t) for t in titles]
    year = pd.Series([y for _, y in split], dtype="Int64")
    if fallback_year is not None:
        year = year.fillna(pd.Series(fallback_year, dtype="Int64").reset_index(drop=True))
    genres = [[g.strip() for g in gl if g.strip() not in NO_GENRES] for gl in genre_lists]
    frame = pd.DataFrame({
        "movieId": pd.Series(movie_ids, dtype="int64").reset_index(drop=True),
        "title": titles,
        "name": pd.Series([n for n, _ in split], dtype=str),
        "year": year,
    })
    frame["genres"] = pd.Series(genres, dtype=object)
    return frame


def _tags_frame(raw: pd.DataFrame) -> pd.DataFrame:
    raw = raw[raw["tag"].astype(str).str.strip() != ""]
    return pd.DataFrame({
        "userId": raw["userId"].astype("int64").to_numpy(),
        "movieId": raw["movieId"].astype("int64").to_numpy(),
        "tag": pd.Series(raw["tag"].to_numpy(), dtype=str),
        "timestamp": raw["timestamp"].astype("int64").to_numpy(),
    })


def _links_frame(raw: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "movieId": raw["movieId"].astype("int64").to_numpy(),
        "imdbId": pd.array(raw["imdbId"], dtype="Int64"),
        "tmdbId": pd.array(raw["tmdbId"], dtype="Int64"),
    })


def _empty_tags() -> pd.DataFrame:
    return pd.DataFrame({
        "userId": pd.Series([], dtype="int64"),
        "movieId": pd.Series([], dtype="int64"),
        "tag": pd.Series([], dtype=str),
        "timestamp": pd.Series([], dtype="int64"),
    })


def _empty_links() -> pd.DataFrame:
    return pd.DataFrame({
        "movieId": pd.Series([], dtype="int64"),
        "imdbId": pd.Series([], dtype="Int64"),
        "tmdbId": pd.Series([], dtype="Int64"),
    })

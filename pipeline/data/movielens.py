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

Every row is validated as it is read, and :attr:`MovieLensData.quality` says what was dropped
from each file and why (logged too, e.g. ``ratings.csv: dropped 12 of 100,848 rows: 5 out of
range, 4 duplicates, 3 unknown movie``):

* ratings: undecodable bytes, malformed lines (wrong number of fields, non-numeric or
  non-positive ids), ratings off the layout's scale (0.5..5 in half stars; whole stars 1..5
  for 100k and 1m), missing/negative timestamps, movies not in the movies file, and a
  (user, movie) rated twice (the latest rating is kept; on a tie, the last line);
* movies: malformed lines, a repeated movieId (the first is kept); a title with bytes that
  are not text keeps its row, with U+FFFD for those bytes (counted as repaired);
* links: malformed lines, imdbId/tmdbId that are not ids, unknown or repeated movies;
* tags: undecodable, malformed, empty, or for an unknown movie.

A file that cannot be read as a whole (I/O error, header without the needed columns) or has no
valid row is refused with a :class:`DatasetError` naming the file and the reason. The ratings
are persisted on the Dask cluster by :func:`load_movielens`, already checked.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import logging
import os
import re
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
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

log = logging.getLogger("pipeline.data.movielens")


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
    quality: dict = field(
        default_factory=dict
    )  # what was dropped per file and why (see the readers)


def repo_root() -> Path:
    """The repository root, found from this package's location."""
    return Path(__file__).resolve().parents[2]  # pipeline/data/movielens.py


def bundled_path() -> Path:
    return repo_root() / "resources" / BUNDLED


def load_movielens(
    source: str | os.PathLike, config: DatasetConfig = DatasetConfig()
) -> MovieLensData:
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
    ratings, movies, tags, links, tables = reader(folder, config)
    quality = _finish_quality(tables)
    for level, line in quality_lines(quality):
        log.log(level, "%s", line)
    return MovieLensData(
        name=name,
        ratings=ratings,
        movies=movies,
        tags=tags,
        links=links,
        path=folder,
        quality=quality,
    )


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
    extra = (
        ""
        if name in PINNED_MD5
        else f" together with its checksum file {url}.md5 as {zip_path}.md5"
    )
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
        raise DatasetError(
            f"{md5_path} does not hold an MD5 (starts {text[:40]!r}); it was removed"
        )
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
#
# The readers validate as they read. Every file gets a report in ``MovieLensData.quality``:
# ``{"file", "rows" (data lines read), "kept", "dropped": {reason: n}}`` with the reasons of
# QUALITY_REASONS (a row is counted once, under the first reason that applies, in that order);
# movies also have ``"repaired": {"bad_encoding": n}`` (titles kept with U+FFFD for bytes that
# are not text). A file that cannot be read as a whole, or has no valid row, is refused with a
# DatasetError naming it, before anything is loaded anywhere. Ratings are checked block by block
# on the Dask workers; only per-block counts and user ids come back to the client.

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

#: Why rows are dropped, per file, in the order the checks apply.
QUALITY_REASONS = {
    "ratings": (
        "bad_encoding",
        "malformed",
        "out_of_range",
        "bad_timestamp",
        "unknown_movie",
        "duplicate",
    ),
    "movies": ("malformed", "duplicate"),
    "links": ("bad_encoding", "malformed", "bad_id", "unknown_movie", "duplicate"),
    "tags": ("bad_encoding", "malformed", "empty", "unknown_movie"),
}
_REASON_TEXT = {
    "bad_encoding": "undecodable",
    "malformed": "malformed",
    "out_of_range": "out of range",
    "bad_timestamp": "missing/negative timestamp",
    "unknown_movie": "unknown movie",
    "duplicate": "duplicates",
    "bad_id": "bad ids",
    "empty": "empty",
}
#: Ratings allowed per layout: (lowest, highest, step). 100k and 1m use whole stars.
HALF_STARS = (0.5, 5.0, 0.5)
WHOLE_STARS = (1.0, 5.0, 1.0)


def _table_report(table: str, file: str) -> dict:
    report = {
        "file": file,
        "rows": 0,
        "kept": 0,
        "dropped": dict.fromkeys(QUALITY_REASONS[table], 0),
    }
    if table == "movies":
        report["repaired"] = {"bad_encoding": 0}
    return report


def _drop(report: dict, reason: str, n: int = 1) -> None:
    report["dropped"][reason] += int(n)


def _finish_quality(tables: dict) -> dict:
    """The tables' reports with the totals over all files first."""
    for report in tables.values():
        report["kept"] = report["rows"] - sum(report["dropped"].values())
    return {
        "dropped": sum(sum(r["dropped"].values()) for r in tables.values()),
        "repaired": sum(sum(r.get("repaired", {}).values()) for r in tables.values()),
        **tables,
    }


def quality_lines(quality: dict) -> list[tuple[int, str]]:
    """(log level, line) per file: what was dropped and why, e.g. ``ratings.csv: dropped 12 of
    100,848 rows: 5 out of range, 4 duplicates, 3 unknown movie``."""
    lines = []
    for table in QUALITY_REASONS:
        report = quality.get(table)
        if not report:
            continue
        dropped = sum(report["dropped"].values())
        if dropped:
            why = ", ".join(f"{n:,} {_REASON_TEXT[r]}" for r, n in report["dropped"].items() if n)
            lines.append(
                (
                    logging.WARNING,
                    f"{report['file']}: dropped {dropped:,} of {report['rows']:,} rows: {why}",
                )
            )
        else:
            lines.append((logging.INFO, f"{report['file']}: {report['rows']:,} rows, none dropped"))
        repaired = report.get("repaired", {}).get("bad_encoding", 0)
        if repaired:
            lines.append(
                (
                    logging.WARNING,
                    f"{report['file']}: {repaired:,} rows kept with undecodable bytes "
                    f"replaced by U+FFFD",
                )
            )
    return lines


def _refuse_if_empty(path: Path, report: dict) -> None:
    if report["rows"] - sum(report["dropped"].values()) > 0:
        return
    why = ", ".join(f"{n:,} {_REASON_TEXT[r]}" for r, n in report["dropped"].items() if n)
    raise DatasetError(
        f"{path}: refused: no valid rows ({report['rows']:,} data rows read"
        f"{': ' + why if why else ''}); nothing was loaded"
    )


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: refused: the file cannot be read ({exc})") from exc


def _split_text(text: str) -> list[str]:
    return [line.rstrip("\r") for line in text.split("\n")]


def _text_lines(data: bytes, latin1_ok: bool) -> tuple[list[str], set[int]]:
    """A text file's lines (no line ends) and the indices of the lines whose bytes are not text.

    UTF-8 when the whole file is valid UTF-8. Otherwise, with ``latin1_ok`` (the ``.dat`` and
    100k layouts, published in latin-1), a file whose non-ASCII lines are mostly not UTF-8 is
    latin-1 and decodes without loss. What is left is a UTF-8 file with damaged lines: each is
    decoded with U+FFFD for its bad bytes, and reported.
    """
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return _split_text(data.decode("utf-8")), set()
    except UnicodeDecodeError:
        pass
    raw = data.split(b"\n")
    bad, good = set(), 0
    for i, line in enumerate(raw):
        if not line.isascii():
            try:
                line.decode("utf-8")
                good += 1
            except UnicodeDecodeError:
                bad.add(i)
    if latin1_ok and len(bad) > good:
        return _split_text(data.decode("latin-1")), set()
    return [line.decode("utf-8", errors="replace").rstrip("\r") for line in raw], bad


def _int(text: str, lo: int = 1, hi: int = INT32_MAX) -> int | None:
    """``text`` as an integer in ``lo..hi`` (``"862.0"`` is 862, as pandas writes an id column
    with gaps), else None."""
    text = text.strip()
    whole, dot, fraction = text.partition(".")
    if dot and fraction.strip("0") == "":
        text = whole
    if not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if lo <= value <= hi else None


def _split_csv(line: str) -> list[str] | None:
    if '"' not in line:
        return line.split(",")
    try:
        return next(csv.reader([line], strict=True))
    except (csv.Error, StopIteration):
        return None


Records = list[
    tuple[list[str] | None, bool]
]  # per data line: its fields (None: malformed), undecodable bytes


def _csv_records(path: Path, columns: tuple[str, ...]) -> Records:
    """A CSV file with a header, as ``columns``; each line is split on its own, so a broken
    quote cannot swallow the lines after it."""
    lines, bad = _text_lines(_read_file(path), latin1_ok=False)
    numbered = [(i, line) for i, line in enumerate(lines) if line]
    if not numbered:
        raise DatasetError(f"{path}: refused: the file is empty (no header line)")
    names = [n.strip() for n in (_split_csv(numbered[0][1]) or [])]
    missing = [c for c in columns if c not in names]
    if missing:
        raise DatasetError(
            f"{path}: refused: its header {numbered[0][1][:200]!r} lacks the column(s) "
            f"{', '.join(missing)}"
        )
    where = [names.index(c) for c in columns]
    records: Records = []
    for i, line in numbered[1:]:
        fields = _split_csv(line)
        ok = fields is not None and len(fields) == len(names)
        records.append(([fields[j] for j in where] if ok else None, i in bad))
    return records


def _dat_records(path: Path, n_fields: int, text_field: int) -> Records:
    """A ``::`` file as ``n_fields`` strings; extra ``::`` stay in field ``text_field`` (a title, a tag)."""
    lines, bad = _text_lines(_read_file(path), latin1_ok=True)
    records: Records = []
    for i, line in enumerate(lines):
        if not line:
            continue
        parts = line.split("::")
        if len(parts) < n_fields:
            records.append((None, i in bad))
            continue
        end = text_field + len(parts) - n_fields + 1
        records.append(
            (parts[:text_field] + ["::".join(parts[text_field:end])] + parts[end:], i in bad)
        )
    return records


def _keep_movie(
    fields: list[str] | None, bad_bytes: bool, seen: set[int], report: dict
) -> int | None:
    """The movie id of a valid, first-seen movie row, else None (and the reason counted)."""
    report["rows"] += 1
    movie_id = _int(fields[0]) if fields is not None else None
    if movie_id is None or not fields[1].strip():
        _drop(report, "malformed")
        return None
    if movie_id in seen:
        _drop(report, "duplicate")
        return None
    seen.add(movie_id)
    report["repaired"]["bad_encoding"] += bool(bad_bytes)
    return movie_id


def _movies_from(records: Records, path: Path, report: dict):
    ids, titles, genres, seen = [], [], [], set()
    for fields, bad_bytes in records:
        movie_id = _keep_movie(fields, bad_bytes, seen, report)
        if movie_id is not None:
            ids.append(movie_id)
            titles.append(fields[1])
            genres.append(fields[2].split("|"))
    _refuse_if_empty(path, report)
    return _movies_frame(pd.Series(ids, dtype="int64"), titles, genres)


def _tags_from(records: Records, movie_ids: set[int], report: dict) -> pd.DataFrame:
    rows = []
    for fields, bad_bytes in records:
        report["rows"] += 1
        parsed = (
            None
            if fields is None
            else (_int(fields[0]), _int(fields[1]), _int(fields[3], 0, INT64_MAX))
        )
        if bad_bytes:
            _drop(report, "bad_encoding")
        elif parsed is None or None in parsed:
            _drop(report, "malformed")
        elif not fields[2].strip():
            _drop(report, "empty")
        elif parsed[1] not in movie_ids:
            _drop(report, "unknown_movie")
        else:
            rows.append((parsed[0], parsed[1], fields[2], parsed[2]))
    if not rows:
        return _empty_tags()
    return _tags_frame(pd.DataFrame(rows, columns=["userId", "movieId", "tag", "timestamp"]))


_BAD = object()


def _link_id(text: str):
    """An imdbId/tmdbId: an int, None when empty, _BAD otherwise."""
    if not text.strip():
        return None
    value = _int(text, 0, INT64_MAX)
    return _BAD if value is None else value


def _links_from(records: Records, movie_ids: set[int], report: dict) -> pd.DataFrame:
    rows, seen = [], set()
    for fields, bad_bytes in records:
        report["rows"] += 1
        movie_id = _int(fields[0]) if fields is not None else None
        ids = (_link_id(fields[1]), _link_id(fields[2])) if movie_id is not None else ()
        if bad_bytes:
            _drop(report, "bad_encoding")
        elif movie_id is None:
            _drop(report, "malformed")
        elif _BAD in ids:
            _drop(report, "bad_id")
        elif movie_id not in movie_ids:
            _drop(report, "unknown_movie")
        elif movie_id in seen:
            _drop(report, "duplicate")
        else:
            seen.add(movie_id)
            rows.append((movie_id, *ids))
    if not rows:
        return _empty_links()
    raw = pd.DataFrame(rows, columns=["movieId", "imdbId", "tmdbId"])
    return _links_frame(raw.astype({"imdbId": "Int64", "tmdbId": "Int64"}))


def _ratings_meta() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in RATING_DTYPES.items()})


def _read_csv_layout(folder: Path, config: DatasetConfig):
    movies_rep = _table_report("movies", "movies.csv")
    movies = _movies_from(
        _csv_records(folder / "movies.csv", ("movieId", "title", "genres")),
        folder / "movies.csv",
        movies_rep,
    )
    movie_ids = set(movies["movieId"].tolist())
    tables = {"movies": movies_rep}
    tags = _empty_tags()
    if (folder / "tags.csv").is_file():
        tables["tags"] = _table_report("tags", "tags.csv")
        tags = _tags_from(
            _csv_records(folder / "tags.csv", ("userId", "movieId", "tag", "timestamp")),
            movie_ids,
            tables["tags"],
        )
    links = _empty_links()
    if (folder / "links.csv").is_file():
        tables["links"] = _table_report("links", "links.csv")
        links = _links_from(
            _csv_records(folder / "links.csv", ("movieId", "imdbId", "tmdbId")),
            movie_ids,
            tables["links"],
        )
    names = _csv_header(folder / "ratings.csv")
    tables["ratings"] = _table_report("ratings", "ratings.csv")
    fmt = _RatingsFormat(
        str(folder / "ratings.csv"),
        sep=b",",
        names=names,
        header=True,
        quoted=True,
        scale=HALF_STARS,
    )
    ratings = _read_ratings(
        folder / "ratings.csv", fmt, config.blocksize, movies["movieId"], tables["ratings"]
    )
    return ratings, movies, tags, links, tables


def _read_dat_layout(folder: Path, config: DatasetConfig):
    tables = {"movies": _table_report("movies", "movies.dat")}
    movies = _movies_from(
        _dat_records(folder / "movies.dat", 3, 1), folder / "movies.dat", tables["movies"]
    )
    tags = _empty_tags()
    if (folder / "tags.dat").is_file():
        tables["tags"] = _table_report("tags", "tags.dat")
        tags = _tags_from(
            _dat_records(folder / "tags.dat", 4, 2), set(movies["movieId"].tolist()), tables["tags"]
        )
    # 1m (the release with users.dat) has whole stars; 10m has half stars.
    scale = WHOLE_STARS if (folder / "users.dat").is_file() else HALF_STARS
    tables["ratings"] = _table_report("ratings", "ratings.dat")
    fmt = _RatingsFormat(
        str(folder / "ratings.dat"),
        sep=b"\t",
        names=tuple(RATING_COLUMNS),
        header=False,
        dat=True,
        scale=scale,
    )
    ratings = _read_ratings(
        folder / "ratings.dat", fmt, config.blocksize, movies["movieId"], tables["ratings"]
    )
    return ratings, movies, tags, _empty_links(), tables


def _read_100k_layout(folder: Path, config: DatasetConfig):
    genre_names = _100k_genres(folder)
    report = _table_report("movies", "u.item")
    lines, bad = _text_lines(_read_file(folder / "u.item"), latin1_ok=True)
    ids, titles, genres, dates, seen = [], [], [], [], set()
    names = np.asarray(genre_names, dtype=object)
    for i, line in enumerate(lines):
        if not line:
            continue
        fields = line.split("|")
        flags = fields[5:]
        if len(fields) != 5 + len(genre_names) or not all(f in ("0", "1") for f in flags):
            fields = None
        movie_id = _keep_movie(fields, i in bad, seen, report)
        if movie_id is not None:
            ids.append(movie_id)
            titles.append(fields[1])
            genres.append(list(names[np.asarray(flags) == "1"]))
            dates.append(fields[2])
    _refuse_if_empty(folder / "u.item", report)
    release_year = pd.to_datetime(
        pd.Series(dates, dtype=str), format="%d-%b-%Y", errors="coerce"
    ).dt.year
    movies = _movies_frame(
        pd.Series(ids, dtype="int64"), titles, genres, fallback_year=release_year.astype("Int64")
    )
    tables = {"movies": report, "ratings": _table_report("ratings", "u.data")}
    fmt = _RatingsFormat(
        str(folder / "u.data"),
        sep=b"\t",
        names=tuple(RATING_COLUMNS),
        header=False,
        scale=WHOLE_STARS,
    )
    ratings = _read_ratings(
        folder / "u.data", fmt, config.blocksize, movies["movieId"], tables["ratings"]
    )
    return ratings, movies, _empty_tags(), _empty_links(), tables


DEFAULT_100K_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]


def _100k_genres(folder: Path) -> list[str]:
    path = folder / "u.genre"
    if not path.is_file():
        return list(DEFAULT_100K_GENRES)
    pairs = []
    lines, _ = _text_lines(_read_file(path), latin1_ok=True)
    for line in lines:
        if "|" in line:
            name, index = line.rsplit("|", 1)
            if _int(index, 0) is None:
                raise DatasetError(f"{path}: refused: line {line!r} is not 'genre|index'")
            pairs.append((int(index), name))
    return [name for _, name in sorted(pairs)]


# ---------------------------------------------------------------- ratings, block by block


@dataclass(frozen=True)
class _RatingsFormat:
    """How the lines of a ratings file look."""

    file: str  # for messages
    sep: bytes  # the field separator, one byte (``::`` is turned into a tab first)
    names: tuple[str, ...]  # the fields of a line, in order
    header: bool = False  # the file's first line is a header
    dat: bool = False  # ``::``-separated
    quoted: bool = False  # CSV quoting
    scale: tuple[float, float, float] = HALF_STARS


def _csv_header(path: Path) -> tuple[str, ...]:
    try:
        with open(path, "rb") as fh:
            first = fh.readline(1 << 16)
    except OSError as exc:
        raise DatasetError(f"{path}: refused: the file cannot be read ({exc})") from exc
    text = first.removeprefix(codecs.BOM_UTF8).decode("utf-8", errors="replace").strip()
    if not text:
        raise DatasetError(f"{path}: refused: the file is empty (no header line)")
    names = tuple(n.strip() for n in (_split_csv(text) or []))
    missing = [c for c in RATING_COLUMNS if c not in names]
    if missing:
        raise DatasetError(
            f"{path}: refused: its header {text[:200]!r} lacks the column(s) {', '.join(missing)}"
        )
    return names


def _read_ratings(
    path: Path, fmt: _RatingsFormat, blocksize, movie_ids, report: dict
) -> dd.DataFrame:
    """The valid ratings of ``path`` as a persisted Dask DataFrame; the counts go to ``report``.

    Each block is parsed and checked on a worker (:func:`_parse_ratings_block`), which drops a
    repeated (user, movie) inside the block. A repeat across blocks is found from the blocks'
    user ids: only the rows of users seen in several blocks are compared (none when the file is
    sorted by user, as published), and only the repeated rows come back to decide which is kept.
    """
    from dask.bytes import read_bytes

    try:
        _, blocks = read_bytes(os.fspath(path), delimiter=b"\n", blocksize=blocksize, sample=False)
    except OSError as exc:
        raise DatasetError(f"{path}: refused: the file cannot be read ({exc})") from exc
    ids = dask.delayed(np.unique(np.asarray(movie_ids, np.int64)), pure=True)
    parsed = dask.persist(
        *[
            dask.delayed(_parse_ratings_block, pure=True)(block, fmt, i == 0, ids)
            for i, block in enumerate(blocks[0])
        ]
    )
    infos = dask.compute(*[p[1] for p in parsed])
    frames = [p[0] for p in parsed]
    for info in infos:
        report["rows"] += info["rows"]
        for reason, n in info["dropped"].items():
            _drop(report, reason, n)
    frames, repeated = _drop_repeats_across_blocks(frames, [info["users"] for info in infos])
    _drop(report, "duplicate", repeated)
    _refuse_if_empty(path, report)
    return dd.from_delayed(frames, meta=_ratings_meta(), verify_meta=False).persist()


def _parse_ratings_block(data: bytes, fmt: _RatingsFormat, first: bool, movie_ids: np.ndarray):
    """One block of a ratings file -> (valid ratings, {"rows", "dropped", "users"})."""
    dropped = dict.fromkeys(QUALITY_REASONS["ratings"], 0)
    if first and fmt.header:
        end = data.find(b"\n")
        data = b"" if end < 0 else data[end + 1 :]
    if not data.isascii():  # numbers only: a line with other bytes cannot be a rating
        data = _drop_non_ascii_lines(data, dropped)
    if fmt.dat:
        data = data.replace(b"::", b"\t")
    frame = _parse_clean_block(data, fmt)
    if frame is None:  # some line is malformed: count and drop those lines, then parse the rest
        data = _drop_malformed_lines(data, fmt, dropped)
        frame = _parse_fields(data, fmt)
    rows = len(frame) + dropped["malformed"] + dropped["bad_encoding"]
    u, m, r, t = (_numeric(frame[c]) for c in RATING_COLUMNS)
    lo, hi, step = fmt.scale
    with np.errstate(invalid="ignore"):
        valid_id = lambda x: (x >= 1) & (x <= INT32_MAX) & (x == np.floor(x))  # noqa: E731  (NaN: False)
        bad = ~(valid_id(u) & valid_id(m)) | np.isnan(r)
        checks = (
            ("malformed", bad),
            ("out_of_range", ~((r >= lo) & (r <= hi) & (r / step == np.rint(r / step)))),
            ("bad_timestamp", ~(np.isfinite(t) & (t >= 0) & (t < 2.0**62) & (t == np.floor(t)))),
        )
    keep = np.ones(len(frame), bool)
    for reason, fails in checks:
        dropped[reason] += int((keep & fails).sum())
        keep &= ~fails
    m_int = np.where(keep, m, 0).astype(np.int64)
    unknown = keep & ~_is_known(m_int, movie_ids)
    dropped["unknown_movie"] += int(unknown.sum())
    keep &= ~unknown
    u, m, r, t = u[keep].astype(np.int64), m_int[keep], r[keep], t[keep].astype(np.int64)
    key = (u << 32) | m
    increasing = bool(
        (key[1:] > key[:-1]).all()
    )  # the published files are sorted: no repeat possible
    if (
        not increasing and pd.Index(key).has_duplicates
    ):  # keep the latest rating; on a tie, the last line
        order = np.lexsort((np.arange(len(key)), t, key))
        last = np.ones(len(order), bool)
        last[:-1] = key[order][1:] != key[order][:-1]
        winners = np.sort(order[last])
        dropped["duplicate"] += len(key) - len(winners)
        u, m, r, t = u[winners], m[winners], r[winners], t[winners]
    out = pd.DataFrame(
        {
            "userId": u.astype(np.int32),
            "movieId": m.astype(np.int32),
            "rating": r.astype(np.float32),
            "timestamp": t,
        }
    )
    return out, {"rows": rows, "dropped": dropped, "users": pd.unique(out["userId"].to_numpy())}


def _numeric(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        return column.to_numpy(np.float64, na_value=np.nan)
    return pd.to_numeric(column, errors="coerce").to_numpy(np.float64, na_value=np.nan)


_STRICT_DTYPES = {"userId": "int64", "movieId": "int64", "rating": "float64", "timestamp": "int64"}


def _parse_fields(data: bytes, fmt: _RatingsFormat, dtype: dict | None = None) -> pd.DataFrame:
    if not data or data.isspace():
        return pd.DataFrame({name: pd.Series([], dtype="float64") for name in fmt.names})
    try:
        return pd.read_csv(
            io.BytesIO(data),
            sep=fmt.sep.decode(),
            header=None,
            names=list(fmt.names),
            dtype=dtype,
            engine="c",
            quoting=csv.QUOTE_MINIMAL if fmt.quoted else csv.QUOTE_NONE,
        )
    except ValueError as exc:  # pandas' ParserError is a ValueError
        raise DatasetError(f"{fmt.file}: refused: a block cannot be parsed ({exc})") from exc


def _parse_clean_block(data: bytes, fmt: _RatingsFormat) -> pd.DataFrame | None:
    """The fast path: the block parsed with integer ids and timestamps when every line has all
    its fields, numeric; else None. (Declared dtypes make the parse several times faster.)"""
    n_lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    if n_lines == 0:
        return _parse_fields(b"", fmt)
    try:
        frame = _parse_fields(data, fmt, _STRICT_DTYPES)
    except (
        DatasetError
    ):  # a field that is not an integer (or a number, for the rating), a line too long
        return None
    if (
        len(frame) != n_lines
        or not isinstance(frame.index, pd.RangeIndex)
        or frame["rating"].isna().any()
    ):
        return (
            None  # blank lines, every line too long, a broken quote joining lines, an empty rating
        )
    return frame


def _drop_non_ascii_lines(data: bytes, dropped: dict) -> bytes:
    keep = []
    for line in data.split(b"\n"):
        if line.isascii():
            keep.append(line)
            continue
        try:
            line.decode("utf-8")
            dropped["malformed"] += 1
        except UnicodeDecodeError:
            dropped["bad_encoding"] += 1
    return b"\n".join(keep)


def _drop_malformed_lines(data: bytes, fmt: _RatingsFormat, dropped: dict) -> bytes:
    """``data`` without its lines that do not have exactly the file's fields (or, with CSV
    quoting, have an unclosed quote); blank lines stay (the parser skips them)."""
    arr = np.frombuffer(data, np.uint8)
    if not len(arr):
        return data
    ends = np.flatnonzero(arr == 10)
    if arr[-1] != 10:
        ends = np.append(ends, len(arr))  # the last line has no line end
    starts = np.concatenate(([0], ends[:-1] + 1))
    length = ends - starts
    has_cr = np.zeros(len(ends), bool)
    has_cr[length > 0] = arr[ends[length > 0] - 1] == 13
    length = length - has_cr

    def per_line(byte: int) -> np.ndarray:
        pos = np.flatnonzero(arr == byte)
        return np.searchsorted(pos, ends) - np.searchsorted(pos, starts)

    bad = per_line(fmt.sep[0]) != len(fmt.names) - 1
    if fmt.quoted:
        bad |= per_line(ord('"')) % 2 == 1
    bad &= length > 0
    dropped["malformed"] += int(bad.sum())
    if not bad.any():
        return data
    span = np.diff(np.minimum(np.concatenate(([0], ends + 1)), len(arr)))
    return arr[np.repeat(~bad, span)].tobytes()


def _is_known(movie_ids: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``movie_ids`` (>= 0) that are in the sorted ``known``: through a dense mask when the ids are small."""
    top = int(known[-1]) if len(known) else -1
    if top < 1 << 26:
        mask = np.zeros(top + 2, bool)
        mask[known] = True
        return mask[np.minimum(movie_ids, top + 1)]
    return _in_sorted(movie_ids, known)


def _in_sorted(values: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    if not len(sorted_ids):
        return np.zeros(len(values), bool)
    pos = np.minimum(np.searchsorted(sorted_ids, values), len(sorted_ids) - 1)
    return sorted_ids[pos] == values


def _drop_repeats_across_blocks(frames: list, users: list[np.ndarray]) -> tuple[list, int]:
    """Drop a (user, movie) rated in several blocks, keeping its latest rating (on a tie, the
    last in the file). Returns the frames and the number of rows dropped."""
    if len(frames) < 2:
        return frames, 0
    every = np.concatenate([np.asarray(u, np.int64) for u in users])
    ids, count = np.unique(every, return_counts=True)
    shared = ids[count > 1]
    if not len(shared):
        return frames, 0
    shared = dask.delayed(shared, pure=True)
    keys = np.sort(
        np.concatenate(dask.compute(*[dask.delayed(_keys_of_users)(f, shared) for f in frames]))
    )
    repeated = np.unique(keys[1:][keys[1:] == keys[:-1]])
    if not len(repeated):
        return frames, 0
    found = dask.compute(*[dask.delayed(_rows_with_keys)(f, repeated) for f in frames])
    key = np.concatenate([k for k, _, _ in found])
    ts = np.concatenate([t for _, t, _ in found])
    pos = np.concatenate([p for _, _, p in found])
    block = np.concatenate([np.full(len(k), i) for i, (k, _, _) in enumerate(found)])
    order = np.lexsort((pos, block, ts, key))
    last = np.ones(len(order), bool)
    last[:-1] = key[order][1:] != key[order][:-1]
    losers = order[~last]
    out = list(frames)
    for i in np.unique(block[losers]):
        out[i] = dask.delayed(_drop_positions)(frames[i], pos[losers][block[losers] == i])
    return out, len(losers)


def _rating_keys(frame: pd.DataFrame) -> np.ndarray:
    return (frame["userId"].to_numpy(np.int64) << 32) | frame["movieId"].to_numpy(np.int64)


def _keys_of_users(frame: pd.DataFrame, users: np.ndarray) -> np.ndarray:
    return _rating_keys(frame)[_in_sorted(frame["userId"].to_numpy(np.int64), users)]


def _rows_with_keys(frame: pd.DataFrame, keys: np.ndarray):
    key = _rating_keys(frame)
    where = np.flatnonzero(_in_sorted(key, keys))
    return key[where], frame["timestamp"].to_numpy(np.int64)[where], where


def _drop_positions(frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    keep = np.ones(len(frame), bool)
    keep[positions] = False
    return frame[keep].reset_index(drop=True)


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
    frame = pd.DataFrame(
        {
            "movieId": pd.Series(movie_ids, dtype="int64").reset_index(drop=True),
            "title": titles,
            "name": pd.Series([n for n, _ in split], dtype=str),
            "year": year,
        }
    )
    frame["genres"] = pd.Series(genres, dtype=object)
    return frame


def _tags_frame(raw: pd.DataFrame) -> pd.DataFrame:
    raw = raw[raw["tag"].astype(str).str.strip() != ""]
    return pd.DataFrame(
        {
            "userId": raw["userId"].astype("int64").to_numpy(),
            "movieId": raw["movieId"].astype("int64").to_numpy(),
            "tag": pd.Series(raw["tag"].to_numpy(), dtype=str),
            "timestamp": raw["timestamp"].astype("int64").to_numpy(),
        }
    )


def _links_frame(raw: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "movieId": raw["movieId"].astype("int64").to_numpy(),
            "imdbId": pd.array(raw["imdbId"], dtype="Int64"),
            "tmdbId": pd.array(raw["tmdbId"], dtype="Int64"),
        }
    )


def _empty_tags() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "userId": pd.Series([], dtype="int64"),
            "movieId": pd.Series([], dtype="int64"),
            "tag": pd.Series([], dtype=str),
            "timestamp": pd.Series([], dtype="int64"),
        }
    )


def _empty_links() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "movieId": pd.Series([], dtype="int64"),
            "imdbId": pd.Series([], dtype="Int64"),
            "tmdbId": pd.Series([], dtype="Int64"),
        }
    )

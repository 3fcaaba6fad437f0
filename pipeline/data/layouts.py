"""The readers of the three MovieLens layouts (CSV, ``::``-separated ``.dat``, 100k), which
validate as they read (``pipeline.data.quality`` counts what they drop). Ratings are checked
block by block on the Dask workers; only per-block counts and user ids come back to the client."""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from pipeline.data.quality import QUALITY_REASONS, drop, refuse_if_empty, table_report
from pipeline.data.source import DatasetConfig, DatasetError

RATING_COLUMNS = ["userId", "movieId", "rating", "timestamp"]

RATING_DTYPES = {"userId": "int32", "movieId": "int32", "rating": "float32", "timestamp": "int64"}

NO_GENRES = {"(no genres listed)", "unknown", ""}

_YEAR_AT_END = re.compile(r"^(?P<name>.*?)\s*\((?P<year>\d{4})(?:\s*[-\u2013]\s*(?:\d{4})?)?\)\s*$")

INT32_MAX = 2**31 - 1

INT64_MAX = 2**63 - 1

#: Ratings allowed per layout: (lowest, highest, step). 100k and 1m use whole stars.
HALF_STARS = (0.5, 5.0, 0.5)

WHOLE_STARS = (1.0, 5.0, 1.0)


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
        drop(report, "malformed")
        return None
    if movie_id in seen:
        drop(report, "duplicate")
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
    refuse_if_empty(path, report)
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
            drop(report, "bad_encoding")
        elif parsed is None or None in parsed:
            drop(report, "malformed")
        elif not fields[2].strip():
            drop(report, "empty")
        elif parsed[1] not in movie_ids:
            drop(report, "unknown_movie")
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
            drop(report, "bad_encoding")
        elif movie_id is None:
            drop(report, "malformed")
        elif _BAD in ids:
            drop(report, "bad_id")
        elif movie_id not in movie_ids:
            drop(report, "unknown_movie")
        elif movie_id in seen:
            drop(report, "duplicate")
        else:
            seen.add(movie_id)
            rows.append((movie_id, *ids))
    if not rows:
        return _empty_links()
    raw = pd.DataFrame(rows, columns=["movieId", "imdbId", "tmdbId"])
    return _links_frame(raw.astype({"imdbId": "Int64", "tmdbId": "Int64"}))


def _ratings_meta() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in RATING_DTYPES.items()})


def read_csv_layout(folder: Path, config: DatasetConfig):
    movies_rep = table_report("movies", "movies.csv")
    movies = _movies_from(
        _csv_records(folder / "movies.csv", ("movieId", "title", "genres")),
        folder / "movies.csv",
        movies_rep,
    )
    movie_ids = set(movies["movieId"].tolist())
    tables = {"movies": movies_rep}
    tags = _empty_tags()
    if (folder / "tags.csv").is_file():
        tables["tags"] = table_report("tags", "tags.csv")
        tags = _tags_from(
            _csv_records(folder / "tags.csv", ("userId", "movieId", "tag", "timestamp")),
            movie_ids,
            tables["tags"],
        )
    links = _empty_links()
    if (folder / "links.csv").is_file():
        tables["links"] = table_report("links", "links.csv")
        links = _links_from(
            _csv_records(folder / "links.csv", ("movieId", "imdbId", "tmdbId")),
            movie_ids,
            tables["links"],
        )
    names = _csv_header(folder / "ratings.csv")
    tables["ratings"] = table_report("ratings", "ratings.csv")
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


def read_dat_layout(folder: Path, config: DatasetConfig):
    tables = {"movies": table_report("movies", "movies.dat")}
    movies = _movies_from(
        _dat_records(folder / "movies.dat", 3, 1), folder / "movies.dat", tables["movies"]
    )
    tags = _empty_tags()
    if (folder / "tags.dat").is_file():
        tables["tags"] = table_report("tags", "tags.dat")
        tags = _tags_from(
            _dat_records(folder / "tags.dat", 4, 2), set(movies["movieId"].tolist()), tables["tags"]
        )
    # 1m (the release with users.dat) has whole stars; 10m has half stars.
    scale = WHOLE_STARS if (folder / "users.dat").is_file() else HALF_STARS
    tables["ratings"] = table_report("ratings", "ratings.dat")
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


def read_100k_layout(folder: Path, config: DatasetConfig):
    genre_names = _100k_genres(folder)
    report = table_report("movies", "u.item")
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
    refuse_if_empty(folder / "u.item", report)
    release_year = pd.to_datetime(
        pd.Series(dates, dtype=str), format="%d-%b-%Y", errors="coerce"
    ).dt.year
    movies = _movies_frame(
        pd.Series(ids, dtype="int64"), titles, genres, fallback_year=release_year.astype("Int64")
    )
    tables = {"movies": report, "ratings": table_report("ratings", "u.data")}
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
            drop(report, reason, n)
    frames, repeated = _drop_repeats_across_blocks(frames, [info["users"] for info in infos])
    drop(report, "duplicate", repeated)
    refuse_if_empty(path, report)
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

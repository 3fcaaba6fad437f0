"""TMDB metadata for the ml-latest-small movies: build the bundled file once, load it.

The bundle ``resources/tmdb/metadata.csv.gz`` is built by hand from the reference
copies described in ``shared/data/SOURCES.md`` (which project code never reads at run
time) with::

    python -m pipeline.data.tmdb build --shared ../shared/data --out resources/tmdb

Rows come from three files, first match wins per TMDB id (see ``SOURCES``):
the verbatim first 5,000 rows of The Movies Dataset ``movies_metadata.csv``, then the
re-saved subset of the same file, then the Kaggle TMDB 5000 export. Keywords are the
union of The Movies Dataset ``keywords.csv`` and TMDB 5000's ``keywords`` column; the
collection (a franchise: "Toy Story Collection") exists only in The Movies Dataset, the
production companies in every file. Each
row records its ``source``: popularity and vote counts were scraped on different dates
by the two publishers (popularity is even on another scale), so compare them only
within one source.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.data.source import bundled_path

POSTER_BASE = "https://image.tmdb.org/t/p/w342"
METADATA_FILE = "metadata.csv.gz"

# (source label, file under shared/data/tmdb), highest precedence first.
SOURCES = (
    ("movies_metadata_rows1-5000", "movies_metadata_rows1-5000.csv"),
    ("movies_metadata_subset2831", "movies_metadata_subset2831.csv"),
    ("tmdb_5000_movies", "tmdb_5000_movies.csv"),
)
KEYWORDS_FILE = ("the-movies-dataset", "keywords.csv")
KEYWORDS_ONLY = "keywords_only"  # source label of rows that have keywords but no metadata row

COLUMNS = [
    "tmdbId",
    "imdb_id",
    "title",
    "overview",
    "tagline",
    "runtime",
    "release_date",
    "original_language",
    "poster_path",
    "vote_average",
    "vote_count",
    "popularity",
    "budget",
    "revenue",
    "keywords",
    "collection",
    "companies",
    "source",
]
TEXT_COLUMNS = [
    "imdb_id",
    "title",
    "overview",
    "tagline",
    "release_date",
    "original_language",
    "poster_path",
]
FLOAT_COLUMNS = ["runtime", "vote_average", "popularity"]
INT_COLUMNS = ["vote_count", "budget", "revenue"]
LIST_COLUMNS = ["keywords", "companies"]  # JSON lists of str in the file
# TMDB's placeholder texts for a missing overview.
NO_OVERVIEW = {"No overview found.", "No overview yet."}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def poster_url(poster_path: str | None) -> str | None:
    """Full w342 poster URL for a ``poster_path``, or None."""
    if (
        poster_path is None
        or (isinstance(poster_path, float) and math.isnan(poster_path))
        or not poster_path
    ):
        return None
    return POSTER_BASE + poster_path


# --------------------------------------------------------------------------- loading


def load_metadata(folder: str | os.PathLike) -> pd.DataFrame:
    """The bundled metadata, one row per ``tmdbId`` (``folder`` or the file itself).

    Columns: tmdbId int64; imdb_id, title, overview, tagline, release_date
    ("YYYY-MM-DD"), original_language, poster_path: str or None; runtime,
    vote_average, popularity: float; vote_count, budget, revenue: Int64 (0 means
    unknown for runtime/budget/revenue, as TMDB publishes it); keywords: list[str];
    collection: str or None (the franchise); companies: list[str] (production companies);
    source: str. A bundle built before the collection and companies reads as having none.
    """
    path = Path(folder)
    if path.is_dir():
        path = path / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no TMDB metadata at {path}; build it with `python -m pipeline.data.tmdb build`"
        )
    # the collection is text in the bundle (not in TEXT_COLUMNS: the sources print an object)
    texts = [*TEXT_COLUMNS, "collection"]
    raw = pd.read_csv(
        path, dtype={c: str for c in [*texts, *LIST_COLUMNS, "source"]}, keep_default_na=False
    )
    for col in ["collection", *LIST_COLUMNS]:  # a bundle built before them
        if col not in raw:
            raw[col] = ""
    frame = pd.DataFrame({"tmdbId": raw["tmdbId"].astype("int64")})
    for col in texts:
        frame[col] = pd.Series([v if v != "" else None for v in raw[col]], dtype=object)
    for col in FLOAT_COLUMNS:
        frame[col] = pd.to_numeric(raw[col], errors="coerce").astype("float64")
    for col in INT_COLUMNS:
        frame[col] = pd.to_numeric(raw[col], errors="coerce").astype("Int64")
    for col in LIST_COLUMNS:
        frame[col] = pd.Series([json.loads(v) if v else [] for v in raw[col]], dtype=object)
    frame["source"] = raw["source"].astype(str)
    return frame[COLUMNS]


def by_movie(links: pd.DataFrame, metadata: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``metadata``'s ``columns`` for each movie of ``links`` (movieId -> tmdbId) with a metadata
    row: index movieId, sorted; the first row of a repeated tmdbId, the first link of a repeated
    movieId."""
    tmdb = links[["movieId", "tmdbId"]].dropna()
    tmdb = tmdb.assign(
        movieId=tmdb["movieId"].astype("int64"), tmdbId=tmdb["tmdbId"].astype("int64")
    )
    rows = metadata[["tmdbId", *columns]].dropna(subset=["tmdbId"]).drop_duplicates("tmdbId")
    rows = rows.assign(tmdbId=rows["tmdbId"].astype("int64"))
    joined = tmdb.merge(rows, on="tmdbId", how="inner").drop_duplicates("movieId")
    return joined.set_index("movieId")[columns].sort_index()


def movie_votes(links: pd.DataFrame | None, metadata: pd.DataFrame | None) -> pd.DataFrame | None:
    """TMDB's audience vote of each movie matched through ``links`` (``by_movie``): index
    movieId, ``vote_average`` (0-10; NaN when TMDB has no vote, where it publishes 0) and
    ``vote_count``, both float. None without links or metadata."""
    if links is None or metadata is None or not len(links) or not len(metadata):
        return None
    votes = by_movie(links, metadata, ["vote_average", "vote_count"])
    count = pd.to_numeric(votes["vote_count"], errors="coerce").astype("float64")
    average = pd.to_numeric(votes["vote_average"], errors="coerce").astype("float64")
    return votes.assign(vote_average=average.where(count > 0), vote_count=count)


def bundle_or_none(folder: str | os.PathLike | None) -> pd.DataFrame | None:
    """``load_metadata(folder)``, or None when ``folder`` is None or not a folder (no TMDB)."""
    return load_metadata(folder) if folder and Path(folder).is_dir() else None


# --------------------------------------------------------------------------- building


def build_bundle(shared_data: Path, links_csv: Path, out_dir: Path) -> dict:
    """Merge the TMDB sources for the movies in ``links_csv``; write ``out_dir/metadata.csv.gz``.

    Returns the counts that the README reports.
    """
    shared_data, out_dir = Path(shared_data), Path(out_dir)
    links = pd.read_csv(links_csv, dtype={"tmdbId": "Int64"})
    wanted = set(links["tmdbId"].dropna().astype("int64"))

    frames, per_source_matched = [], {}
    for label, filename in SOURCES:
        part = _read_source(shared_data / "tmdb" / filename, label)
        part = part[part["tmdbId"].isin(wanted)]
        per_source_matched[label] = int(part["tmdbId"].nunique())
        frames.append(part)
    merged = pd.concat(frames, ignore_index=True)
    # precedence = order of SOURCES; within a file the first row of an id wins
    merged = merged.drop_duplicates("tmdbId", keep="first").sort_values("tmdbId", kind="stable")
    merged = merged.reset_index(drop=True)

    tmdb5000_keywords = _tmdb5000_keywords(shared_data / "tmdb" / "tmdb_5000_movies.csv")
    movies_dataset_keywords = _movies_dataset_keywords(shared_data.joinpath(*KEYWORDS_FILE), wanted)
    # Movies with keywords but no metadata row still get their keywords (source "keywords_only").
    keyword_only = sorted(
        t for t, k in movies_dataset_keywords.items() if k and t not in set(merged["tmdbId"])
    )
    if keyword_only:
        extra = pd.DataFrame(
            {"tmdbId": pd.Series(keyword_only, dtype="int64"), "source": KEYWORDS_ONLY}
        )
        merged = pd.concat([merged, extra], ignore_index=True).sort_values("tmdbId", kind="stable")
        merged = merged.reset_index(drop=True)
    merged["keywords"] = pd.Series(
        [
            _union(movies_dataset_keywords.get(t, []), tmdb5000_keywords.get(t, []))
            for t in merged["tmdbId"]
        ],
        dtype=object,
    )
    # (rows with keywords only have neither)
    merged["collection"] = [c if isinstance(c, str) else None for c in merged["collection"]]
    merged["companies"] = [c if isinstance(c, list) else [] for c in merged["companies"]]
    merged = merged[COLUMNS]

    out_dir.mkdir(parents=True, exist_ok=True)
    out = merged.copy()
    for col in LIST_COLUMNS:
        out[col] = [json.dumps(k, ensure_ascii=False) for k in out[col]]
    # mtime=0 so that rebuilding from the same inputs gives the same bytes
    with (
        open(out_dir / METADATA_FILE, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
    ):
        gz.write(out.to_csv(index=False, lineterminator="\n").encode("utf-8"))

    covered = (
        links["tmdbId"]
        .isin(set(merged.loc[merged["source"] != KEYWORDS_ONLY, "tmdbId"]))
        .fillna(False)
    )
    return {
        "links_rows": int(len(links)),
        "links_without_tmdbId": int(links["tmdbId"].isna().sum()),
        "distinct_tmdbIds_in_links": len(wanted),
        "matched_per_source_file": per_source_matched,
        "rows": int(len(merged)),
        "rows_by_source": {
            k: int(v) for k, v in merged["source"].value_counts().sort_index().items()
        },
        "movies_covered": int(covered.sum()),
        "rows_with_keywords": int(sum(1 for k in merged["keywords"] if k)),
        "rows_with_poster": int(merged["poster_path"].notna().sum()),
        "rows_with_collection": int(merged["collection"].notna().sum()),
        "rows_with_companies": int(sum(1 for c in merged["companies"] if c)),
    }


def _read_source(path: Path, label: str) -> pd.DataFrame:
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    ids = pd.to_numeric(raw["id"], errors="coerce")
    raw = raw[ids.notna()].copy()
    frame = pd.DataFrame({"tmdbId": ids[ids.notna()].astype("int64").to_numpy()})
    for col in TEXT_COLUMNS:
        values = raw[col] if col in raw.columns else pd.Series([""] * len(raw))
        frame[col] = pd.Series([_clean_text(v) for v in values], dtype=object)
    frame["overview"] = pd.Series(
        [None if v in NO_OVERVIEW else v for v in frame["overview"]], dtype=object
    )
    frame["release_date"] = pd.Series(
        [v if isinstance(v, str) and _DATE.match(v) else None for v in frame["release_date"]],
        dtype=object,
    )
    for col in FLOAT_COLUMNS:
        frame[col] = pd.to_numeric(raw[col], errors="coerce").to_numpy(np.float64)
    if label == "movies_metadata_subset2831":
        # the re-saved subset prints some floats with binary noise (14.686035999999998);
        # The Movies Dataset publishes popularity with 6 decimals, so round it back
        frame["popularity"] = frame["popularity"].round(6)
    for col in INT_COLUMNS:
        frame[col] = pd.array(pd.to_numeric(raw[col], errors="coerce").round(), dtype="Int64")
    frame["collection"] = pd.Series(
        [_named(v) for v in raw.get("belongs_to_collection", [""] * len(raw))], dtype=object
    )
    frame["companies"] = pd.Series(
        [_names(v) for v in raw.get("production_companies", [""] * len(raw))], dtype=object
    )
    frame["source"] = label
    return frame


def _literal(text: str):
    """A JSON or Python-literal value (the two publishers' formats), None when it is neither."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return None


def _named(text: str) -> str | None:
    """The ``name`` of a ``{"id": .., "name": ..}`` object (TMDB's collection), or None."""
    value = _literal(text)
    name = value.get("name") if isinstance(value, dict) else None
    return _clean_text(name) if isinstance(name, str) else None


def _names(text: str) -> list[str]:
    """The distinct ``name``s of a list of ``{"id": .., "name": ..}`` objects (TMDB's keywords
    and production companies), in order."""
    value = _literal(text)
    if not isinstance(value, list):
        return []
    names = (_clean_text(v.get("name")) for v in value if isinstance(v, dict))
    return _union([n for n in names if isinstance(n, str)], [])


def _clean_text(value) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _movies_dataset_keywords(path: Path, ids: set[int]) -> dict[int, list[str]]:
    """Keyword names per TMDB id from The Movies Dataset (Python-literal lists), first row per id."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    raw["id"] = pd.to_numeric(raw["id"], errors="coerce")
    raw = raw.dropna(subset=["id"]).drop_duplicates("id", keep="first")
    out = {}
    for tmdb_id, text in zip(raw["id"].astype("int64"), raw["keywords"]):
        if tmdb_id in ids and text not in ("", "[]"):
            out[int(tmdb_id)] = _names(text)
    return out


def _tmdb5000_keywords(path: Path) -> dict[int, list[str]]:
    """Keyword names per TMDB id from TMDB 5000's JSON ``keywords`` column."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=["id", "keywords"])
    out: dict[int, list[str]] = {}
    for tmdb_id, text in zip(raw["id"].astype("int64"), raw["keywords"]):
        if text and text != "[]":
            out.setdefault(int(tmdb_id), _names(text))
    return out


def _union(first: list[str], second: list[str]) -> list[str]:
    """Keywords of ``first`` in order, then those of ``second`` not already present."""
    seen, out = set(), []
    for word in [*first, *second]:
        word = word.strip()
        if word and word not in seen:
            seen.add(word)
            out.append(word)
    return out


# --------------------------------------------------------------------------- script


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.data.tmdb", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the bundled TMDB metadata file")
    build.add_argument(
        "--shared",
        type=Path,
        required=True,
        help="the shared/data folder (holds tmdb/, the-movies-dataset/)",
    )
    build.add_argument("--out", type=Path, default=Path("resources/tmdb"), help="output folder")
    build.add_argument(
        "--links",
        type=Path,
        default=None,
        help="MovieLens links.csv (default: the bundled ml-latest-small)",
    )
    args = parser.parse_args(argv)
    links = args.links or bundled_path() / "links.csv"
    counts = build_bundle(args.shared, links, args.out)
    json.dump(counts, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

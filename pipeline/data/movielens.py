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

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import dask.dataframe as dd
import pandas as pd

from pipeline.data.fetch import fetch
from pipeline.data.layouts import read_100k_layout, read_csv_layout, read_dat_layout
from pipeline.data.quality import finish_quality, quality_lines
from pipeline.data.source import NAMED_SETS, DatasetConfig, DatasetError, data_folder, detect_layout

log = logging.getLogger(__name__)


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
    folder = data_folder(folder)
    layout = detect_layout(folder)
    reader = {"csv": read_csv_layout, "dat": read_dat_layout, "100k": read_100k_layout}[layout]
    ratings, movies, tags, links, tables = reader(folder, config)
    quality = finish_quality(tables)
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

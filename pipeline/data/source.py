"""Where a MovieLens set comes from: the named sets, the settings of reading them, the layout of a
folder, and the one error every data-set failure raises."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


def repo_root() -> Path:
    """The repository root, found from this package's location."""
    return Path(__file__).resolve().parents[2]  # pipeline/data/source.py


def bundled_path() -> Path:
    return repo_root() / "resources" / BUNDLED


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


def data_folder(folder: Path) -> Path:
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

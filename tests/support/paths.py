"""Where the tests find the repository and its data."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "resources" / "ml-latest-small"  # the bundled MovieLens set
TMDB = REPO / "resources" / "tmdb"  # the bundled TMDB metadata
TEST_DATA = REPO / "tests" / "data"  # small files in each MovieLens layout

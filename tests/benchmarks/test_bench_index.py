"""``python -m benchmarks`` (``make bench``) lists every benchmark with its first docstring line."""

from __future__ import annotations

import subprocess
import sys

from tests.support.paths import REPO


def test_the_index_lists_every_benchmark():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    names = sorted(p.stem for p in (REPO / "benchmarks").glob("[!_]*.py"))
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert listed == names and "end_to_end" in names
    assert "Time and memory of the whole pipeline" in out

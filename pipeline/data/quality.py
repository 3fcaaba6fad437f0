"""What the readers dropped from each file and why.

Every file gets a report in ``MovieLensData.quality``: ``{"file", "rows" (data lines read),
"kept", "dropped": {reason: n}}`` with the reasons of ``QUALITY_REASONS`` (a row is counted once,
under the first reason that applies, in that order); movies also have ``"repaired":
{"bad_encoding": n}`` (titles kept with U+FFFD for bytes that are not text). A file that cannot
be read as a whole, or has no valid row, is refused with a ``DatasetError`` naming it, before
anything is loaded anywhere."""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.data.source import DatasetError

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


def table_report(table: str, file: str) -> dict:
    report = {
        "file": file,
        "rows": 0,
        "kept": 0,
        "dropped": dict.fromkeys(QUALITY_REASONS[table], 0),
    }
    if table == "movies":
        report["repaired"] = {"bad_encoding": 0}
    return report


def drop(report: dict, reason: str, n: int = 1) -> None:
    report["dropped"][reason] += int(n)


def finish_quality(tables: dict) -> dict:
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


def refuse_if_empty(path: Path, report: dict) -> None:
    if report["rows"] - sum(report["dropped"].values()) > 0:
        return
    why = ", ".join(f"{n:,} {_REASON_TEXT[r]}" for r, n in report["dropped"].items() if n)
    raise DatasetError(
        f"{path}: refused: no valid rows ({report['rows']:,} data rows read"
        f"{': ' + why if why else ''}); nothing was loaded"
    )

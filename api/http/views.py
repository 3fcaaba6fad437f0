"""How stored documents are shown in responses (field names, paging envelope)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any


def movie_summary(movie_id: int, details: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fields shown wherever a movie appears; a movie missing from the catalogue keeps its
    id with null details rather than vanishing."""
    d = details or {}
    return {
        "movieId": int(movie_id),
        "title": d.get("title"),
        "name": d.get("name"),
        "year": d.get("year"),
        "genres": list(d.get("genres") or []),
        "poster_url": d.get("poster_url"),
    }


def movie_stats(details: Mapping[str, Any] | None) -> dict[str, Any]:
    stats = (details or {}).get("stats") or {}
    return {
        "n_ratings": stats.get("n_ratings"),
        "mean_rating": stats.get("mean"),
        "popularity": stats.get("popularity"),
    }


def has_genre(details: Mapping[str, Any] | None, genre: str | None) -> bool:
    return genre is None or (details is not None and genre in (details.get("genres") or ()))


def page_slice(total: int, page: int, per_page: int) -> slice:
    start = (page - 1) * per_page
    return slice(min(start, total), min(start + per_page, total))


def paged(
    items: Sequence[Any], total: int, page: int, per_page: int, **extra: Any
) -> dict[str, Any]:
    return {
        **extra,
        "page": page,
        "per_page": per_page,
        "total": total,
        "pages": (total + per_page - 1) // per_page,
        "items": list(items),
    }


def iso_time(value: Any) -> str | None:
    """A unix timestamp (seconds) or datetime as ISO 8601 UTC ("2000-07-30T18:45:03Z")."""
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        try:
            dt = datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

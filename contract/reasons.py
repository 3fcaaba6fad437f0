"""Reasons with their evidence: what a recommendation's reason rests on, taken from the data.

A "because you liked" reason shows the terms the two movies share (genres, user tags and TMDB
keywords that other movies have too, the rarest first: each movie document's ``terms``), as
"Because you liked Heat (1995): also heist movie, one last job and crime epic". A cluster or
taste reason shows the genres of the movie that drive the user's taste group (its persona), a
genre match the genres the user picked that the movie has. The evidence is also given as data:
``reason.evidence``. A reason with nothing to show keeps its plain text and has no evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

SHOWN = 3  # terms a reason shows at most


def shared_terms(terms: Sequence[str], other: Iterable[str], k: int = SHOWN) -> list[str]:
    """The first ``k`` of ``terms`` (in their order: the rarest first) that ``other`` has too."""
    others = set(other)
    return [t for t in terms if t in others][:k]


def evidence(
    reason: Mapping[str, Any],
    item_genres: Sequence[str],
    item_terms: Sequence[str],
    seed_terms: Iterable[str] = (),
    persona: Sequence[str] = (),
    stated: Sequence[str] = (),
) -> list[str]:
    """What ``reason`` rests on for a movie of ``item_genres`` and ``item_terms``: the terms it
    shares with the liked movie (``seed_terms``) for a "because you liked" reason, the genres of
    the user's cluster ``persona`` it has for a cluster or taste reason, the ``stated`` genres it
    has for a genre match; nothing for any other kind."""
    kind = reason.get("kind")
    if kind == "because_you_liked" and reason.get("movieId") is not None:
        return shared_terms(item_terms, seed_terms)
    if kind in ("cluster_favourite", "taste_match"):
        return [g for g in persona if g in item_genres][:SHOWN]
    if kind == "genre_match":
        return [g for g in stated if g in item_genres][:SHOWN]
    return []


def explained(reason: Mapping[str, Any], evidence: Sequence[str]) -> dict[str, Any]:
    """A copy of ``reason`` with ``evidence`` as data and in its text (unchanged when empty)."""
    out = dict(reason)
    if evidence:
        also = "also " if reason.get("kind") == "because_you_liked" else ""
        out["text"] = f"{reason['text']}: {also}{_listed(evidence)}"
        out["evidence"] = list(evidence)
    return out


def _listed(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"

"""A list for a group watching together, from each member's own list.

Each member's own list is the one they are served alone, its top ``CANDIDATES`` kept: scored
by the live model on their ratings, likes, dislikes and stated genres
(``contract.live_model.recommend_live``), or, for a data-set user with no live state, their
published list (both: :func:`as_members`). The group's candidates are the movies
of those lists that no member has rated, liked, disliked or hidden. Each candidate gets every member's predicted rating (the rating model's fold-in of that
member) and a score by ``rule``:

* ``"no-misery"`` (served): the mean over members of the candidate's place in their list
  (``1 - rank / CANDIDATES``; 0 when it is not in it), among the candidates no member is
  predicted to rate below ``misery`` (or below their own mean rating, when that is lower:
  :func:`misery_floors`). A movie comes from one member's taste at least and is disliked by
  nobody (Masthoff's "average without misery").
* ``"average"``: the same mean, without the veto;
* ``"least-misery"``: the lowest predicted rating of any member.

Ties go to the higher mean predicted rating, then the lower movie id. ``benchmarks.groups``
compares the rules, and popularity, on held-out ratings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from contract.live_model import (
    LiveList,
    LiveModel,
    ScoringConfig,
    UserSignals,
    fold_in,
    predicted_ratings,
    recommend_live_many,
)

CANDIDATES = 50  # each member's list that the group's candidates come from
MISERY = 3.0  # a member predicted to rate a movie below this vetoes it (the 0.5-5 scale)
RULES = ("no-misery", "average", "least-misery")


@dataclass
class GroupList:
    movie_ids: np.ndarray  # int64, rank order
    scores: np.ndarray  # float64 group score
    predicted: np.ndarray  # float64 (movies, members): each member's predicted rating
    places: np.ndarray  # float64 (movies, members): 1 - rank / CANDIDATES in their list, else 0


@dataclass
class Member:
    """One member as the group sees them: their signals, their own list (no "because" seeds)
    and their fold-in in the rating model. It depends on the member alone, so a server may keep
    it until the member's next write (``api.routes.groups``)."""

    signals: UserSignals
    own: LiveList
    folded: tuple[np.ndarray, float]


def as_members(
    model: LiveModel,
    signals: Sequence[UserSignals],
    neighbors: Sequence[Mapping[int, list[tuple[int, float]]] | None] | None = None,
    config: ScoringConfig = ScoringConfig(),
    published: Sequence[Sequence[int] | None] | None = None,
) -> list[Member]:
    """Each user of ``signals`` as a group sees them. User ``k``'s own list: ``published[k]``
    when given (the list published for a data-set user with no live state, what they are
    served alone), its first ``CANDIDATES`` kept; else scored by the live model
    (``neighbors[k]``: the similar lists of their boost sources), those users together."""
    published = published or [None] * len(signals)
    neighbors = neighbors or [None] * len(signals)
    folded = [fold_in(model, sig, config) for sig in signals]
    scored = [k for k, ids in enumerate(published) if ids is None]
    lists = recommend_live_many(
        model,
        [signals[k] for k in scored],
        CANDIDATES,
        [neighbors[k] for k in scored],
        config,
        because=False,
        folded=[folded[k] for k in scored],
    )
    own = dict(zip(scored, lists))
    for k, ids in enumerate(published):
        if ids is not None:
            ids = np.asarray(ids, np.int64)[:CANDIDATES]
            own[k] = LiveList(
                ids,
                np.zeros(len(ids), np.float32),
                np.full(len(ids), -1, np.int64),
                predicted_ratings(model, folded[k], ids),
            )
    return [Member(sig, own[k], folded[k]) for k, sig in enumerate(signals)]


def misery_floors(members: Sequence[Member], misery: float = MISERY) -> np.ndarray:
    """Each member's veto: ``misery``, or their own mean rating when it is lower. A member who
    rates everything low (a mean of 2, say) is predicted below 3 for nearly every movie: an
    absolute veto would leave their group nothing, where their own mean still tells what they
    like less than usual."""
    return np.array(
        [
            min(misery, float(np.mean(list(m.signals.ratings.values()))))
            if m.signals.ratings
            else misery
            for m in members
        ]
    )


def recommend_group(
    model: LiveModel,
    members: Sequence[UserSignals | Member],
    n: int,
    neighbors: Mapping[int, list[tuple[int, float]]] | None = None,
    rule: str = "no-misery",
    misery: float = MISERY,
    config: ScoringConfig = ScoringConfig(),
) -> GroupList:
    """The group's top ``n`` (fewer when the veto leaves fewer); see the module docstring.
    ``members``: their signals, or their :func:`as_members` when the caller keeps those."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    raw = [k for k, m in enumerate(members) if not isinstance(m, Member)]  # scored together
    scored = iter(as_members(model, [members[k] for k in raw], [neighbors] * len(raw), config))
    members = [next(scored) if k in raw else m for k, m in enumerate(members)]
    seen = set().union(*(m.signals.seen() for m in members))
    order: dict[int, None] = {}
    for m in members:
        order.update((int(i), None) for i in m.own.movie_ids if int(i) not in seen)
    ids = np.fromiter(order, np.int64, len(order))
    places = np.zeros((len(ids), len(members)))
    where = {i: k for k, i in enumerate(ids.tolist())}
    for j, m in enumerate(members):
        for rank, i in enumerate(m.own.movie_ids.tolist()):
            if i in where:
                places[where[i], j] = 1.0 - rank / CANDIDATES
    predicted = np.empty((len(ids), len(members)))
    for j, m in enumerate(members):
        predicted[:, j] = predicted_ratings(model, m.folded, ids)
    if rule == "least-misery":
        scores = predicted.min(axis=1) if len(members) else np.zeros(len(ids))
        keep = np.ones(len(ids), bool)
    else:
        scores = places.mean(axis=1)
        keep = (
            (predicted >= misery_floors(members, misery)).all(axis=1)
            if rule == "no-misery"
            else np.ones(len(ids), bool)
        )
    mean_rating = predicted.mean(axis=1) if len(members) else np.zeros(len(ids))
    pick = np.flatnonzero(keep)
    pick = pick[np.lexsort((ids[pick], -mean_rating[pick], -scores[pick]))][:n]
    return GroupList(ids[pick], scores[pick], predicted[pick], places[pick])

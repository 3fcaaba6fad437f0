"""The API's feedback events as training ratings for the next run.

The API appends every rating, like, dislike and "not interested" of a user to the ``events`` of
the user's ``profiles`` document (see ``contract.schema.ProfileDoc``). A run replays each user's
events in order and turns them into rating rows for the final refit (the evaluation splits stay
on the data set alone, so reported metrics are reproducible):

* a ``rating`` event gives that rating (a later one replaces it);
* a ``like`` / ``dislike`` gives ``LIKE_RATING`` / ``DISLIKE_RATING`` unless the user also rated
  the movie (an explicit rating wins);
* ``not_interested`` is not a statement about taste: it trains nothing (the API keeps hiding
  the movie).

Events on movies the data set does not have are dropped and counted in the log.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import dask.dataframe as dd
import numpy as np
import pandas as pd

from contract import schema
from contract.live_model import DISLIKE_RATING, LIKE_RATING

log = logging.getLogger(__name__)

COLUMNS = ("userId", "movieId", "rating", "timestamp")


def replay(events_by_user) -> pd.DataFrame:
    """Rating rows from ``(userId, events)`` pairs (events in the order they were applied)."""
    rows: dict[tuple[int, int], tuple[float, int, bool]] = {}  # -> rating, timestamp, explicit
    for user_id, events in events_by_user:
        for ev in events or ():
            kind, movie = ev.get("type"), ev.get("movieId")
            if not isinstance(movie, int) or isinstance(movie, bool):
                continue
            at = ev.get("at")
            ts = int(_epoch(at))
            key = (int(user_id), movie)
            if kind == "rating" and isinstance(ev.get("rating"), (int, float)):
                rows[key] = (float(ev["rating"]), ts, True)
            elif kind in ("like", "dislike"):
                if key in rows and rows[key][2]:
                    continue
                rows[key] = (LIKE_RATING if kind == "like" else DISLIKE_RATING, ts, False)
    if not rows:
        return pd.DataFrame(
            {c: pd.Series(dtype="int64" if c != "rating" else "float64") for c in COLUMNS}
        )
    keys = np.array(list(rows), dtype=np.int64).reshape(-1, 2)
    vals = list(rows.values())
    return pd.DataFrame(
        {
            "userId": keys[:, 0],
            "movieId": keys[:, 1],
            "rating": np.array([v[0] for v in vals], np.float64),
            "timestamp": np.array([v[1] for v in vals], np.int64),
        }
    )


def read_feedback(db) -> pd.DataFrame:
    """Rating rows from every profile in ``db`` (empty when there are none)."""
    cursor = db[schema.PROFILES].find({}, {"events": 1})
    return replay((doc["_id"], doc.get("events")) for doc in cursor)


def with_feedback(
    ratings: dd.DataFrame, feedback: pd.DataFrame, movie_ids
) -> tuple[dd.DataFrame, dict]:
    """``ratings`` with ``feedback`` rows added; a feedback row replaces the data set's rating of
    the same user and movie. Returns the ratings and counts for the log and the model doc."""
    known = feedback["movieId"].isin(np.asarray(movie_ids, np.int64))
    dropped = int((~known).sum())
    feedback = feedback[known]
    counts = {
        "rows": int(len(feedback)),
        "users": int(feedback["userId"].nunique()),
        "dropped_unknown_movie": dropped,
    }
    if dropped:
        log.warning(
            "feedback: %d events on movies the data set does not have were dropped", dropped
        )
    if feedback.empty:
        return ratings, counts
    pairs = pd.MultiIndex.from_frame(feedback[["userId", "movieId"]])

    def drop_replaced(part: pd.DataFrame) -> pd.DataFrame:
        hit = pd.MultiIndex.from_frame(part[["userId", "movieId"]]).isin(pairs)
        return part[~hit]

    kept = ratings.map_partitions(drop_replaced, meta=ratings._meta)
    extra = feedback.astype({c: ratings._meta[c].dtype for c in COLUMNS if c in ratings._meta})
    extra = (
        extra[list(ratings._meta.columns)]
        if set(ratings._meta.columns) <= set(extra.columns)
        else extra
    )
    merged = dd.concat([kept, dd.from_pandas(extra, npartitions=1)])
    log.info(
        "feedback: %d rating rows from %d users added to the training ratings",
        counts["rows"],
        counts["users"],
    )
    return merged, counts


def _epoch(value) -> float:
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return dt.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    return 0.0

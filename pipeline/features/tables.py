"""Leakage-free features: statistics fit on the training ratings of a split only.

``build_features`` reduces the training ratings with Dask (one pass: each partition becomes small
per-user and per-movie sum tables, never one pandas frame of all ratings) into pandas tables:
per-user and per-movie rating statistics, the movie catalogue's genre dummies, and each user's
genre-preference profile.
``rating_rows`` turns (userId, movieId[, timestamp]) pairs into model-ready rows using only those
tables, so training rows and serving rows are built by the same code.

Every aggregate is a sum of exactly representable numbers (MovieLens ratings are multiples of 0.5,
so their sums and sums of squares are exact in float64), which makes the features independent of
how the ratings are partitioned or ordered: a rating outside ``train`` cannot change them, bit for
bit (``tests/pipeline/features/test_tables.py`` checks this).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.preprocessing import MultiLabelBinarizer

from contract.arrays import lookup
from contract.clusters import genre_share_profile
from pipeline.data.tmdb import by_movie

NO_GENRES = "(no genres listed)"
# catalogue facts from outside the ratings: TMDB's vote (``pipeline.data.tmdb.movie_votes``)
VOTE_COLUMNS = ("vote_average", "vote_count")
TMDB_TERMS = ("keywords", "collection", "companies")  # metadata columns that are movie terms
# the terms a reason may show as evidence: not the production companies, whose names ("syncopy",
# "los hooligans productions") tell most people nothing
EVIDENCE_TERMS = ("keywords", "collection")
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class FeatureConfig:
    """Parameters of the training statistics.

    damping: pseudo-count of the shrunk means: ``(sum + damping * mu) / (n + damping)``, so a
        user or movie with few ratings sits near the global mean ``mu``.
    vote_damping: ridge penalty of a user's vote slope (``TrainingFeatures.users``), in squared
        TMDB vote points: a user whose rated movies' votes spread little keeps a slope near 0.
        60 was chosen on validation carves of the peer benchmark's random90 training part
        (README, "Measured results").
    """

    damping: float = 10.0
    vote_damping: float = 60.0


@dataclass
class TrainingFeatures:
    """Statistics of one training set (see ``build_features``).

    global_mean: mean training rating.
    genres: the genre vocabulary (sorted), the order of every genre column and profile entry.
    users: index userId; n_ratings, mean, shrunk_mean, std (population), first_ts, last_ts,
        vote_mean (mean TMDB vote of the movies they rated that have one; NaN none) and
        vote_slope (how much more they rate a movie per TMDB vote point: the ridge slope of
        their ratings on those movies' votes, ``FeatureConfig.vote_damping``; NaN below 2 such
        movies).
    movies: index movieId, every movie of the catalogue (plus any rated movie missing from it);
        n_ratings, mean (NaN when unrated), shrunk_mean (global mean when unrated),
        popularity = log1p(n) / log1p(max n) in [0, 1], year (float, NaN unknown), g_<Genre>
        dummies, vote_average and vote_count (TMDB's audience vote, ``VOTE_COLUMNS``; NaN unknown).
    genre_profile: index userId, one column per genre; see ``genre_share_profile``.
    genre_prior: the population's rating-weighted genre share (the profile's reference point).
    config: the FeatureConfig used.
    """

    global_mean: float
    genres: list[str]
    users: pd.DataFrame
    movies: pd.DataFrame
    genre_profile: pd.DataFrame
    genre_prior: pd.Series
    config: FeatureConfig

    @property
    def genre_columns(self) -> list[str]:
        return [genre_column(g) for g in self.genres]


def genre_column(genre: str) -> str:
    return f"g_{genre}"


def _genre_list(value) -> list[str]:
    """Genres of one movie: a list/array of names or a ``A|B`` string; drops the no-genre marker."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        items = value.split("|")
    elif isinstance(value, Iterable):
        items = list(value)
    else:
        return []
    return [str(g) for g in items if g and str(g) != NO_GENRES]


def genre_vocabulary(movies: pd.DataFrame) -> list[str]:
    """Sorted genre names that occur in ``movies['genres']``."""
    seen: set[str] = set()
    for value in movies["genres"]:
        seen.update(_genre_list(value))
    return sorted(seen)


def movie_genres(movies: pd.DataFrame) -> dict[int, list[str]]:
    """movieId -> its genre names, as the pipeline reads the ``genres`` column."""
    return {int(m): _genre_list(v) for m, v in zip(movies["movieId"], movies["genres"])}


def genre_dummies(movies: pd.DataFrame, genres: list[str] | None = None) -> pd.DataFrame:
    """0/1 float32 matrix, index movieId, one ``g_<Genre>`` column per genre of the vocabulary.

    Genres outside ``genres`` (when given) are ignored; a movie without genres is all zeros.
    """
    vocab = genre_vocabulary(movies) if genres is None else list(genres)
    position = {g: k for k, g in enumerate(vocab)}
    values = np.zeros((len(movies), len(vocab)), dtype=np.float32)
    for row, value in enumerate(movies["genres"]):
        for g in _genre_list(value):
            k = position.get(g)
            if k is not None:
                values[row, k] = 1.0
    index = pd.Index(movies["movieId"].to_numpy(np.int64), name="movieId")
    return pd.DataFrame(values, index=index, columns=[genre_column(g) for g in vocab])


def _shrunk(total: np.ndarray, count: np.ndarray, mu: float, damping: float) -> np.ndarray:
    return (total + damping * mu) / (count + damping)


def _user_partition(
    part: pd.DataFrame, movie_ids: np.ndarray, weights: np.ndarray, votes: np.ndarray
) -> pd.DataFrame:
    """Per-user sums of one partition: count, rating sum, sum of squares, time range, genre mass
    and the sums of the vote taste (``_VOTE_SUMS``) over the rated movies with a TMDB vote.

    The genre mass is a sparse (users x movies) rating matrix times the movies' genre dummies,
    so no rows x genres array is ever built. ``votes`` are the movies' TMDB votes in tenths
    (integers, NaN unknown), aligned with ``movie_ids``, so every sum stays exact.
    """
    import scipy.sparse as sp

    r = part["rating"].to_numpy(np.float64)
    users, codes = np.unique(part["userId"].to_numpy(np.int64), return_inverse=True)
    n_genres = weights.shape[1]
    vote = np.full(len(part), np.nan)
    if len(movie_ids):
        movie = part["movieId"].to_numpy(np.int64)
        pos = np.clip(np.searchsorted(movie_ids, movie), 0, len(movie_ids) - 1)
        known = movie_ids[pos] == movie
        rated = sp.csr_matrix(
            (r[known], (codes[known], pos[known])), shape=(len(users), len(movie_ids))
        )
        genre_mass = rated @ weights
        mass = rated @ weights.sum(axis=1)
        vote[known] = votes[pos[known]]
    else:
        genre_mass, mass = np.zeros((len(users), n_genres)), np.zeros(len(users))
    frame = pd.DataFrame(
        np.asarray(genre_mass, np.float64).reshape(len(users), n_genres),
        index=pd.Index(users, name="userId"),
        columns=[f"w{k}" for k in range(n_genres)],
    )
    frame["n"] = np.bincount(codes, minlength=len(users)).astype(np.int64)
    frame["s"] = np.bincount(codes, r, len(users))
    frame["ss"] = np.bincount(codes, r * r, len(users))
    frame["mass"] = np.asarray(mass, np.float64).ravel()
    voted = ~np.isnan(vote)
    c, v, rv = codes[voted], vote[voted], r[voted]
    for name, values in zip(_VOTE_SUMS, (None, v, v * v, rv, rv * v)):
        frame[name] = np.bincount(c, values, len(users)).astype(np.float64)
    ts = pd.Series(part["timestamp"].to_numpy()).groupby(codes)
    frame["t0"] = ts.min().reindex(range(len(users))).to_numpy()
    frame["t1"] = ts.max().reindex(range(len(users))).to_numpy()
    return frame


# per-user sums over the rated movies with a TMDB vote v (tenths): count, v, v^2, rating, rating*v
_VOTE_SUMS = ("v_n", "v_sum", "v_sq", "v_r", "v_rv")


def _tenths(vote_average: pd.Series) -> np.ndarray:
    """TMDB votes (published with one decimal) as whole tenths, NaN kept: exact sums."""
    return np.round(vote_average.to_numpy(np.float64) * 10.0)


def _vote_taste(sums: pd.DataFrame, damping: float) -> tuple[np.ndarray, np.ndarray]:
    """(vote_mean, vote_slope) of each row of user sums, in TMDB vote points (see
    ``TrainingFeatures.users``)."""
    n, sv, svv, sr, srv = (sums[c].to_numpy(np.float64) for c in _VOTE_SUMS)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sv / n  # tenths
        sxy = (srv - sr * mean) / 10.0
        sxx = (svv - sv * mean) / 100.0
        slope = sxy / (np.maximum(sxx, 0.0) + damping)
    return np.where(n > 0, mean / 10.0, np.nan), np.where(n > 1, slope, np.nan)


def _movie_partition(part: pd.DataFrame) -> pd.DataFrame:
    r = part["rating"].to_numpy(np.float64)
    frame = pd.DataFrame(
        {"movieId": part["movieId"].to_numpy(np.int64), "n": 1, "s": r, "ss": r * r}
    )
    return frame.groupby("movieId").sum()


def _combine(parts: list[pd.DataFrame], how: dict[str, str]) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(
            {c: pd.Series(dtype="float64") for c in how}, index=pd.Index([], dtype="int64")
        )
    return pd.concat(parts).groupby(level=0).agg(how).sort_index()


def build_features(
    train,
    movies: pd.DataFrame,
    config: FeatureConfig = FeatureConfig(),
    votes: pd.DataFrame | None = None,
) -> TrainingFeatures:
    """Fit all statistics on ``train``: the training ratings (userId, movieId, rating, timestamp).

    ``train`` is a Dask DataFrame (or a pandas DataFrame, or an iterable of pandas chunks). Each
    partition is reduced to per-user and per-movie sums (one small pandas frame each) and the
    sums are combined in pandas, so peak memory is one partition plus the per-key tables.
    ``movies`` (movieId, genres, year) only supplies the catalogue, and ``votes`` (index movieId,
    ``VOTE_COLUMNS``; ``pipeline.data.tmdb.movie_votes``) TMDB's vote of its movies: neither is
    fit on.
    """
    vocab = genre_vocabulary(movies)
    catalogue = genre_dummies(movies, vocab)
    catalogue = catalogue[~catalogue.index.duplicated()].sort_index()
    if "year" in movies:
        years = movies.drop_duplicates("movieId").set_index("movieId")["year"]
        years = pd.Series(
            pd.to_numeric(years, errors="coerce").astype("float64").to_numpy(),
            index=years.index.to_numpy(np.int64),
        )
    else:
        years = pd.Series(np.nan, index=catalogue.index)
    if votes is None:
        votes = pd.DataFrame(columns=list(VOTE_COLUMNS), index=pd.Index([], dtype="int64"))
    return _fit(train, catalogue, years, votes[list(VOTE_COLUMNS)], vocab, config)


def refit_features(train, features: TrainingFeatures) -> TrainingFeatures:
    """``build_features`` on other ratings with the catalogue and config of ``features``.

    Used to build the out-of-fold rows of a stacked model: the same definitions, fit on a
    subset of the training ratings.
    """
    movies = features.movies
    return _fit(
        train,
        movies[features.genre_columns],
        movies["year"],
        movies[list(VOTE_COLUMNS)],
        list(features.genres),
        features.config,
    )


def _reduce(train, movie_ids: np.ndarray, weights: np.ndarray, votes: np.ndarray):
    """Per-partition user and movie sums of ``train`` (Dask, pandas, or iterable of pandas)."""
    if isinstance(train, pd.DataFrame):
        return [_user_partition(train, movie_ids, weights, votes)], [_movie_partition(train)]
    if hasattr(train, "to_delayed"):
        import dask

        parts = train[["userId", "movieId", "rating", "timestamp"]].to_delayed()
        users, movies = dask.compute(
            [dask.delayed(_user_partition)(p, movie_ids, weights, votes) for p in parts],
            [dask.delayed(_movie_partition)(p) for p in parts],
        )
        return list(users), list(movies)
    users, movies = [], []
    for part in train:
        users.append(_user_partition(part, movie_ids, weights, votes))
        movies.append(_movie_partition(part))
    return users, movies


def _fit(
    train,
    catalogue: pd.DataFrame,
    years: pd.Series,
    votes: pd.DataFrame,
    vocab: list[str],
    config: FeatureConfig,
) -> TrainingFeatures:
    movie_ids = catalogue.index.to_numpy(np.int64)
    weights = catalogue.to_numpy(np.float64)
    votes = votes[~votes.index.duplicated()]
    user_parts, movie_parts = _reduce(
        train, movie_ids, weights, _tenths(votes["vote_average"].reindex(movie_ids))
    )
    g_cols = [f"w{k}" for k in range(len(vocab))]
    u = _combine(
        user_parts,
        {
            **{c: "sum" for c in g_cols + ["n", "s", "ss", "mass", *_VOTE_SUMS]},
            "t0": "min",
            "t1": "max",
        },
    )
    m = _combine(movie_parts, {"n": "sum", "s": "sum", "ss": "sum"})

    total_n = float(u["n"].sum())
    mu = float(u["s"].sum() / total_n) if total_n else 0.0

    users = _stats_table(u, mu, config.damping)
    users["first_ts"] = u["t0"].to_numpy(np.int64)
    users["last_ts"] = u["t1"].to_numpy(np.int64)
    users["vote_mean"], users["vote_slope"] = _vote_taste(u, config.vote_damping)
    users.index = pd.Index(u.index.to_numpy(np.int64), name="userId")

    all_ids = np.union1d(movie_ids, m.index.to_numpy(np.int64))
    m = m.reindex(all_ids, fill_value=0)
    movie_table = _stats_table(m, mu, config.damping)
    movie_table.index = pd.Index(all_ids, name="movieId")
    n_max = float(movie_table["n_ratings"].max()) if len(movie_table) else 0.0
    movie_table["popularity"] = np.log1p(movie_table["n_ratings"].to_numpy(np.float64)) / np.log1p(
        max(n_max, 1.0)
    )
    years = years[~years.index.duplicated()]
    movie_table["year"] = years.reindex(all_ids).to_numpy(np.float64)
    for col in VOTE_COLUMNS:
        movie_table[col] = votes[col].reindex(all_ids).to_numpy(np.float64)
    dummies = catalogue.reindex(all_ids, fill_value=0.0)
    for col in dummies.columns:
        movie_table[col] = dummies[col].to_numpy(np.float32)

    genre_mass = u[g_cols].to_numpy(np.float64)
    prior_total = float(u["mass"].sum())
    prior = genre_mass.sum(axis=0) / prior_total if prior_total > 0 else np.zeros(len(vocab))
    profile = genre_share_profile(genre_mass, u["mass"].to_numpy(np.float64), prior)
    genre_profile = pd.DataFrame(profile, index=users.index.copy(), columns=list(vocab))
    return TrainingFeatures(
        global_mean=mu,
        genres=list(vocab),
        users=users,
        movies=movie_table,
        genre_profile=genre_profile,
        genre_prior=pd.Series(prior, index=list(vocab), name="genre_prior"),
        config=config,
    )


def _stats_table(sums: pd.DataFrame, mu: float, damping: float) -> pd.DataFrame:
    n = sums["n"].to_numpy(np.float64)
    s = sums["s"].to_numpy(np.float64)
    ss = sums["ss"].to_numpy(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, s / np.maximum(n, 1), np.nan)
        var = np.where(n > 0, ss / np.maximum(n, 1) - np.nan_to_num(mean) ** 2, np.nan)
    return pd.DataFrame(
        {
            "n_ratings": n.astype(np.int64),
            "mean": mean,
            "shrunk_mean": _shrunk(s, n, mu, damping),
            "std": np.sqrt(np.clip(var, 0.0, None)),
        }
    )


def single_user_features(
    features: TrainingFeatures, ratings: pd.DataFrame, user_id: int = -1
) -> TrainingFeatures:
    """``features`` whose ``users`` and ``genre_profile`` hold only one (new) user.

    The user's row is computed from ``ratings`` (movieId, rating[, timestamp]) with exactly the
    definitions of ``build_features`` (global mean, damping and genre prior of ``features``), so
    ``rating_rows`` builds the same features for a user folded in at request time as for a
    training user. Movie statistics are untouched.
    """
    frame = pd.DataFrame(
        {
            "userId": np.full(len(ratings), user_id, np.int64),
            "movieId": ratings["movieId"].to_numpy(np.int64),
            "rating": ratings["rating"].to_numpy(np.float64),
            "timestamp": (
                pd.to_numeric(ratings["timestamp"], errors="coerce").to_numpy(np.float64)
                if "timestamp" in ratings
                else np.full(len(ratings), np.nan)
            ),
        }
    )
    catalogue = features.movies[features.genre_columns]
    sums = _user_partition(
        frame,
        catalogue.index.to_numpy(np.int64),
        catalogue.to_numpy(np.float64),
        _tenths(features.movies["vote_average"]),
    )
    if sums.empty:
        sums = pd.DataFrame({c: [0.0] for c in sums.columns}, index=[user_id]).assign(
            t0=np.nan, t1=np.nan
        )
    users = _stats_table(sums, features.global_mean, features.config.damping)
    users["first_ts"] = sums["t0"].to_numpy(np.float64)
    users["last_ts"] = sums["t1"].to_numpy(np.float64)
    users["vote_mean"], users["vote_slope"] = _vote_taste(sums, features.config.vote_damping)
    users.index = pd.Index([user_id], dtype="int64", name="userId")
    g_cols = [f"w{k}" for k in range(len(features.genres))]
    profile = genre_share_profile(
        sums[g_cols].to_numpy(np.float64),
        sums["mass"].to_numpy(np.float64),
        features.genre_prior.to_numpy(np.float64),
    )
    genre_profile = pd.DataFrame(profile, index=users.index.copy(), columns=list(features.genres))
    return replace(features, users=users, genre_profile=genre_profile)


def profile_from_ratings(ratings: pd.DataFrame, features: TrainingFeatures) -> np.ndarray:
    """The ``genre_profile`` of one user from their ``movieId, rating`` rows (same definition).

    Movies unknown to the catalogue are ignored. Returns a float64 vector in ``features.genres``
    order (the zero vector when no rating has a known genre).
    """
    return single_user_features(features, ratings).genre_profile.to_numpy(np.float64)[0]


def movie_text(
    movies: pd.DataFrame,
    tags: pd.DataFrame | None = None,
    links: pd.DataFrame | None = None,
    metadata: pd.DataFrame | None = None,
) -> pd.Series:
    """movieId -> lower-case text of its genres, distinct user tags and TMDB keywords
    (``movie_terms`` joined by spaces)."""
    terms = movie_terms(movies, tags, links, metadata)
    return pd.Series(
        [" ".join(t) for t in terms.values()],
        index=pd.Index(np.fromiter(terms, np.int64, len(terms)), name="movieId"),
        name="text",
        dtype=object,
    )


def movie_terms(
    movies: pd.DataFrame,
    tags: pd.DataFrame | None = None,
    links: pd.DataFrame | None = None,
    metadata: pd.DataFrame | None = None,
    tmdb_terms: Sequence[str] = TMDB_TERMS,
) -> dict[int, list[str]]:
    """movieId -> its distinct lower-case terms, in ``movies`` order: genres, then user tags
    (sorted), then TMDB's keywords, collection (the franchise) and production companies: those
    of ``metadata``'s columns ``keywords`` (list of str), ``collection`` (str) and ``companies``
    (list of str) that it has and ``tmdb_terms`` names. Multi-word terms are kept whole.
    ``metadata`` needs ``tmdbId`` and is matched through ``links``
    (``pipeline.data.tmdb.by_movie``)."""
    ids = movies["movieId"].to_numpy(np.int64)
    pieces: dict[int, list[str]] = {
        int(m): [g.lower() for g in _genre_list(v)] for m, v in zip(ids, movies["genres"])
    }
    if tags is not None and len(tags):
        t = tags[["movieId", "tag"]].dropna()
        t = t.assign(tag=t["tag"].astype(str).str.strip().str.lower())
        t = t[t["tag"] != ""].drop_duplicates()
        for movie, group in t.groupby("movieId", sort=True)["tag"]:
            if int(movie) in pieces:
                pieces[int(movie)].extend(sorted(group))
    columns = [c for c in tmdb_terms if metadata is not None and c in metadata]
    if links is not None and metadata is not None and len(metadata) and columns:
        joined = by_movie(links, metadata, columns)
        for column in columns:
            for movie, words in joined[column].items():
                if int(movie) in pieces:
                    if column == "collection":  # one name, or None
                        words = [words] if isinstance(words, str) else []
                    pieces[int(movie)].extend(str(w).strip().lower() for w in _genre_list(words))
    return {m: list(dict.fromkeys(p)) for m, p in pieces.items()}


def term_matrix(movie_ids: np.ndarray, terms: Mapping[int, list[str]]) -> sp.csr_matrix:
    """Movies x terms, 1 where the movie has the term (``movie_terms``), rows in ``movie_ids``
    order (a movie without terms has an empty row); the columns are the terms of these movies,
    in scikit-learn ``MultiLabelBinarizer`` order."""
    binarizer = MultiLabelBinarizer(sparse_output=True)
    rows = binarizer.fit_transform([terms.get(int(m), []) for m in movie_ids])
    return sp.csr_matrix(rows, dtype=np.float32)


def telling_terms(
    terms: Mapping[int, list[str]],
    genres: Mapping[int, Iterable[str]] | None = None,
    max_terms: int = 12,
    min_movies: int = 2,
) -> dict[int, list[str]]:
    """Each movie's terms that at least ``min_movies`` movies have (so two movies can share
    them), rarest in the catalogue first (ties by term), at most ``max_terms``, then its
    ``genres`` (lower-case) not among them: what a reason shows as the evidence two movies share
    (``contract.reasons``), the specific first and the genres when nothing more specific is."""
    counts: dict[str, int] = {}
    for ts in terms.values():
        for t in ts:
            counts[t] = counts.get(t, 0) + 1
    out = {}
    for m, ts in terms.items():
        rare = sorted((t for t in ts if counts[t] >= min_movies), key=lambda t: (counts[t], t))
        rare = rare[:max_terms]
        kinds = [g.lower() for g in (genres or {}).get(m, ())]
        out[m] = rare + [g for g in dict.fromkeys(kinds) if g not in rare]
    return out


def weekday(timestamps) -> np.ndarray:
    """Day of week (0 = Monday, UTC) of unix-second timestamps; NaN where missing."""
    ts = pd.to_numeric(pd.Series(np.asarray(timestamps)).astype(object), errors="coerce").to_numpy(
        np.float64
    )
    days = np.floor(ts / SECONDS_PER_DAY)
    return (days + 3) % 7  # 1970-01-01 was a Thursday (3); NaN stays NaN


ROW_FEATURES = [
    "u_n",
    "u_mean",
    "u_shrunk",
    "u_std",
    "u_days",
    "u_since_first",
    "u_vote_mean",
    "u_vote_slope",
    "m_n",
    "m_mean",
    "m_shrunk",
    "m_std",
    "popularity",
    "year",
    "movie_age",
    "weekday",
    "affinity",
    "tmdb_vote",
    "tmdb_votes",
]


def rating_rows(pairs: pd.DataFrame, features: TrainingFeatures) -> pd.DataFrame:
    """Model rows for ``pairs`` (userId, movieId[, timestamp]), from training statistics only.

    Columns (``ROW_FEATURES`` then the genre dummies), float32, in the order of ``pairs``:
    u_n/m_n (training counts, 0 if unknown), u_mean/m_mean/u_std/m_std (NaN if unknown),
    u_shrunk/m_shrunk (global mean if unknown), u_days (days between the user's first and last
    training rating), u_since_first (days from the user's first training rating to the pair's
    timestamp), u_vote_mean/u_vote_slope (the user's vote taste, NaN if unknown), popularity (0
    if unknown), year, movie_age (rating year minus release year),
    weekday (0 = Monday; NaN without a timestamp, which the gradient-boosting model treats as
    missing), affinity (user genre profile dot the movie's genre dummies / its genre count; 0 if
    either is unknown), tmdb_vote / tmdb_votes (TMDB's vote average and log1p of its vote count,
    NaN unknown), then ``g_<Genre>``.
    """
    users = features.users
    movies = features.movies
    uid = pairs["userId"].to_numpy(np.int64)
    mid = pairs["movieId"].to_numpy(np.int64)
    ts = (
        pd.to_numeric(pairs["timestamp"], errors="coerce").to_numpy(np.float64)
        if "timestamp" in pairs
        else np.full(len(pairs), np.nan)
    )
    upos = lookup(users.index.to_numpy(np.int64), uid)
    mpos = lookup(movies.index.to_numpy(np.int64), mid)
    uk, mk = upos >= 0, mpos >= 0
    mu = features.global_mean

    def take(frame, pos, known, col, fill):
        values = frame[col].to_numpy(np.float64)
        return np.where(known, values[np.where(known, pos, 0)] if len(values) else fill, fill)

    out = {
        "u_n": take(users, upos, uk, "n_ratings", 0.0),
        "u_mean": take(users, upos, uk, "mean", np.nan),
        "u_shrunk": take(users, upos, uk, "shrunk_mean", mu),
        "u_std": take(users, upos, uk, "std", np.nan),
    }
    first = take(users, upos, uk, "first_ts", np.nan)
    out["u_days"] = (take(users, upos, uk, "last_ts", np.nan) - first) / SECONDS_PER_DAY
    out["u_since_first"] = (ts - first) / SECONDS_PER_DAY
    out["u_vote_mean"] = take(users, upos, uk, "vote_mean", np.nan)
    out["u_vote_slope"] = take(users, upos, uk, "vote_slope", np.nan)
    out["m_n"] = take(movies, mpos, mk, "n_ratings", 0.0)
    out["m_mean"] = take(movies, mpos, mk, "mean", np.nan)
    out["m_shrunk"] = take(movies, mpos, mk, "shrunk_mean", mu)
    out["m_std"] = take(movies, mpos, mk, "std", np.nan)
    out["popularity"] = take(movies, mpos, mk, "popularity", 0.0)
    year = take(movies, mpos, mk, "year", np.nan)
    out["year"] = year
    out["movie_age"] = (1970.0 + ts / (365.2425 * SECONDS_PER_DAY)) - year
    out["weekday"] = weekday(ts)

    gcols = features.genre_columns
    dummies = (
        movies[gcols].to_numpy(np.float32) if gcols else np.zeros((len(movies), 0), np.float32)
    )
    g = np.zeros((len(pairs), len(gcols)), np.float32)
    if len(movies):
        g[mk] = dummies[mpos[mk]]
    profile = features.genre_profile.to_numpy(np.float32)
    prof_pos = lookup(features.genre_profile.index.to_numpy(np.int64), uid)
    p = np.zeros((len(pairs), len(gcols)), np.float32)
    if len(profile):
        p[prof_pos >= 0] = profile[prof_pos[prof_pos >= 0]]
    n_genres = g.sum(axis=1)
    out["affinity"] = np.where(n_genres > 0, (p * g).sum(axis=1) / np.maximum(n_genres, 1), 0.0)
    out["tmdb_vote"] = take(movies, mpos, mk, "vote_average", np.nan)
    out["tmdb_votes"] = np.log1p(take(movies, mpos, mk, "vote_count", np.nan))

    frame = pd.DataFrame({k: np.asarray(v, np.float32) for k, v in out.items()}, index=pairs.index)
    for k, col in enumerate(gcols):
        frame[col] = g[:, k]
    return frame

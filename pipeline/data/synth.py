"""Synthetic MovieLens-shaped data of any size, in the ml-latest-small CSV layout.

The generator is a small latent-factor world:

* Movies have latent factors ``q_i ~ N(0, I_K)``, a Zipf-like popularity (a random
  popularity rank ``r_i`` and weight ``(r_i + popularity_offset) ** -popularity_exponent``,
  a Zipf-Mandelbrot law: a flat head of about ``popularity_offset`` movies, so that no
  movie is seen by everyone, then a power-law tail), a release year and
  genres (the 19 MovieLens genre names) drawn from logits that mix MovieLens's genre
  frequencies with the factors, so genres carry taste information.
* Users belong to one of ``n_taste_groups`` taste groups with centre ``c_g``; their factors
  are ``p_u = c_g + user_spread * N(0, I_K)``. How many movies a user rates is
  ``min_user_ratings`` plus a Lomax (Pareto II) share of the remaining ratings, capped at
  ``max_user_fraction`` of the catalogue, so activity is power-law with a floor of 20
  like MovieLens.
* Which movies a user rates: weighted sampling without replacement with weights
  ``popularity_i * exp(selection_strength * c_g . q_i / sqrt(K))``, so popular movies
  get most ratings (long tail) and taste groups prefer different genres.
* The rating: ``intercept + b_u + b_i + taste_sd * p_u . q_i / sqrt(K (1 + user_spread^2))
  + noise``, with left-skewed noise (a longer tail of low ratings, as in MovieLens),
  where ``b_i`` has a popularity component (popular movies rate higher, as in
  MovieLens), rounded to whole stars or, with a per-user probability, to half stars,
  and clipped to 0.5..5. The intercept is calibrated on a pilot sample of users so that
  the ratings average ``mean_rating``.
* Timestamps fall in a per-user activity window between ``start_year`` and
  ``end_year``, never before the movie's release; some users tag some of the movies they
  rated with words tied to the movie's strongest factor or one of its genres; links hold
  fake (but unique) IMDb and TMDB ids.

Users are generated in chunks of ``chunk_users`` and each chunk is written to disk
before the next one starts, so memory stays bounded whatever ``n_ratings`` is. Output is
deterministic for a given config (including ``chunk_users``, which sets how the seed is
split across chunks).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

ML_GENRES = (
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "IMAX",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
# Share of ml-latest-small movies carrying each genre (measured on the bundled movies.csv).
ML_GENRE_RATE = (
    0.188,
    0.130,
    0.063,
    0.068,
    0.386,
    0.123,
    0.045,
    0.448,
    0.080,
    0.009,
    0.100,
    0.016,
    0.034,
    0.059,
    0.164,
    0.101,
    0.194,
    0.039,
    0.017,
)
# Tag words for the positive and negative end of each latent factor.
FACTOR_TAGS = (
    ("atmospheric", "lighthearted"),
    ("dark", "feel-good"),
    ("thought-provoking", "mindless fun"),
    ("visually stunning", "dialogue driven"),
    ("slow", "fast-paced"),
    ("quirky", "formulaic"),
    ("violent", "family friendly"),
    ("twist ending", "predictable"),
)
RATING_VALUES = np.arange(1, 11) / 2.0  # 0.5 .. 5.0
_RATING_TEXT = np.array([f"{v:.1f}" for v in RATING_VALUES], dtype=object)
_DAY = 86_400


@dataclass(frozen=True)
class SynthConfig:
    """Size, seed and shape of the synthetic data (see the module docstring for the model).

    Size: ``n_users``, ``n_movies``, ``n_ratings`` (exact); ``seed``.
    Latent model: ``n_factors`` (K), ``n_taste_groups``, ``user_spread`` (users' spread
    around their group centre), ``taste_sd`` (sd of the taste term of a rating),
    ``mean_rating`` (target mean of the ratings; the intercept is calibrated to it),
    ``user_bias_sd``, ``item_bias_sd``, ``popularity_bias`` (item bias per sd of log
    popularity), ``noise_sd`` and ``noise_shape`` (gamma shape of the left-skewed noise;
    ``inf`` for Gaussian), ``half_star_use`` (mean per-user probability of rating on the
    half-star grid).
    Activity: ``min_user_ratings``, ``max_user_fraction`` (cap on one user's ratings as a
    share of the catalogue), ``user_activity_shape`` (Lomax shape; smaller means heavier
    tail), ``popularity_exponent`` and ``popularity_offset`` (Zipf-Mandelbrot exponent and
    rank offset), ``selection_strength`` (how much the taste group steers which movies
    are rated).
    Genres: ``genre_strength`` (weight of the factors in the genre logits).
    Time: ``start_year``..``end_year`` for ratings, ``first_movie_year`` for releases.
    Tags: ``tag_user_share`` (users who tag), ``tag_rate`` (share of a tagger's ratings
    that get a tag).
    Streaming: ``chunk_users`` users are generated and written at a time.
    """

    n_users: int = 1000
    n_movies: int = 2000
    n_ratings: int = 100_000
    seed: int = 42
    n_factors: int = 8
    n_taste_groups: int = 8
    user_spread: float = 0.7
    taste_sd: float = 0.45
    mean_rating: float = 3.5
    user_bias_sd: float = 0.4
    item_bias_sd: float = 0.3
    popularity_bias: float = 0.2
    noise_sd: float = 0.85
    noise_shape: float = 2.0
    half_star_use: float = 0.6
    min_user_ratings: int = 20
    max_user_fraction: float = 0.3
    user_activity_shape: float = 1.8
    popularity_exponent: float = 2.0
    popularity_offset: float = 100.0
    selection_strength: float = 1.0
    genre_strength: float = 3.0
    start_year: int = 1996
    end_year: int = 2018
    first_movie_year: int = 1902
    tag_user_share: float = 0.1
    tag_rate: float = 0.05
    chunk_users: int = 2000


def generate(config: SynthConfig, out_dir: str | os.PathLike) -> dict:
    """Write ratings.csv, movies.csv, tags.csv, links.csv and README.txt; return a summary."""
    _validate(config)
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = np.random.SeedSequence(config.seed)
    movie_seq, user_seq, pilot_seq, chunk_seq = root.spawn(4)

    movies = _make_movies(config, np.random.default_rng(movie_seq))
    users = _make_users(config, np.random.default_rng(user_seq))
    intercept = _calibrate_intercept(config, movies, users, np.random.default_rng(pilot_seq))
    _write_movies(movies, out)

    n_chunks = math.ceil(config.n_users / config.chunk_users)
    histogram = np.zeros(len(RATING_VALUES), np.int64)
    n_tags = 0
    schema = pa.schema(
        [
            ("userId", pa.int32()),
            ("movieId", pa.int32()),
            ("rating", pa.string()),
            ("timestamp", pa.int64()),
        ]
    )
    write_options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    with (
        open(out / "ratings.csv", "wb") as ratings_file,
        open(out / "tags.csv", "w", encoding="utf-8", newline="") as tags_out,
    ):
        ratings_file.write(b"userId,movieId,rating,timestamp\n")
        ratings_out = pacsv.CSVWriter(ratings_file, schema, write_options=write_options)
        tags_out.write("userId,movieId,tag,timestamp\n")
        for chunk, seq in enumerate(chunk_seq.spawn(n_chunks)):
            lo = chunk * config.chunk_users
            hi = min(lo + config.chunk_users, config.n_users)
            rows, tags = _make_chunk(
                config, movies, users, lo, hi, intercept, np.random.default_rng(seq)
            )
            histogram += np.bincount(rows["rating_index"], minlength=len(RATING_VALUES))
            ratings_out.write_table(
                pa.table(
                    {
                        "userId": pa.array(rows["userId"], pa.int32()),
                        "movieId": pa.array(rows["movieId"], pa.int32()),
                        "rating": pa.array(_RATING_TEXT[rows["rating_index"]], pa.string()),
                        "timestamp": pa.array(rows["timestamp"], pa.int64()),
                    },
                    schema=schema,
                )
            )
            if len(tags):
                tags.to_csv(tags_out, header=False, index=False, lineterminator="\n")
                n_tags += len(tags)
        ratings_out.close()

    n_ratings = int(histogram.sum())
    summary = {
        "out_dir": str(out),
        "n_users": config.n_users,
        "n_movies": config.n_movies,
        "n_ratings": n_ratings,
        "n_tags": n_tags,
        "rating_mean": float((histogram * RATING_VALUES).sum() / max(n_ratings, 1)),
        "rating_histogram": {
            f"{v:.1f}": round(float(c) / max(n_ratings, 1), 4)
            for v, c in zip(RATING_VALUES, histogram)
        },
        "intercept": round(intercept, 4),
        "seconds": round(time.perf_counter() - started, 2),
        "config": asdict(config),
    }
    _write_readme(out, config, summary)
    return summary


def _validate(c: SynthConfig) -> None:
    if min(c.n_users, c.n_movies, c.n_factors, c.n_taste_groups, c.chunk_users) < 1:
        raise ValueError(
            "n_users, n_movies, n_factors, n_taste_groups and chunk_users must be >= 1"
        )
    cap = _user_cap(c)
    if c.min_user_ratings > cap:
        raise ValueError(f"min_user_ratings={c.min_user_ratings} exceeds the per-user cap {cap}")
    if not c.n_users * c.min_user_ratings <= c.n_ratings <= c.n_users * cap:
        raise ValueError(
            f"n_ratings={c.n_ratings} must lie in [{c.n_users * c.min_user_ratings}, {c.n_users * cap}] "
            f"for {c.n_users} users with {c.min_user_ratings}..{cap} ratings each"
        )
    if not (
        0 < c.max_user_fraction <= 1 and 0 <= c.half_star_use <= 1 and c.user_activity_shape > 0
    ):
        raise ValueError(
            "need 0 < max_user_fraction <= 1, 0 <= half_star_use <= 1, user_activity_shape > 0"
        )
    if c.end_year < c.start_year or c.first_movie_year > c.end_year:
        raise ValueError("need first_movie_year <= end_year and start_year <= end_year")


def _user_cap(c: SynthConfig) -> int:
    return min(c.n_movies, max(c.min_user_ratings, int(c.max_user_fraction * c.n_movies)))


# --------------------------------------------------------------------------- movies


def _make_movies(c: SynthConfig, rng: np.random.Generator) -> dict:
    n, k = c.n_movies, c.n_factors
    factors = rng.standard_normal((n, k))
    rank = rng.permutation(n) + 1
    log_pop = -c.popularity_exponent * np.log(rank + c.popularity_offset)
    pop_z = (log_pop - log_pop.mean()) / (log_pop.std() or 1.0)
    item_bias = c.item_bias_sd * rng.standard_normal(n) + c.popularity_bias * pop_z

    loadings = rng.standard_normal((len(ML_GENRES), k))
    rate = np.asarray(ML_GENRE_RATE)
    # widen the base logit so that E[sigmoid(base + strength * z)] stays near the MovieLens rate
    base = np.log(rate / (1 - rate)) * math.sqrt(1 + math.pi * c.genre_strength**2 / 8)
    logits = base[None, :] + c.genre_strength * (factors @ loadings.T) / math.sqrt(k)
    probs = 1.0 / (1.0 + np.exp(-logits))
    flags = rng.random(probs.shape) < probs
    empty = ~flags.any(axis=1) & (rng.random(n) < 0.99)  # ~0.3% keep "(no genres listed)"
    flags[np.flatnonzero(empty), probs[empty].argmax(axis=1)] = True

    years = np.clip(
        c.end_year - np.floor(rng.gamma(2.0, 10.0, n)), c.first_movie_year, c.end_year
    ).astype(np.int64)
    release = _year_start(years) + (rng.random(n) * 364 * _DAY).astype(np.int64)
    movie_ids = np.cumsum(rng.geometric(0.7, n)).astype(np.int64)
    imdb = np.sort(rng.choice(np.arange(100_000, 9_999_999), n, replace=False))
    tmdb = rng.choice(np.arange(2, 1_000_000), n, replace=False)

    # per taste group: log selection weight over movies and its CDF (for inverse sampling)
    centres = _centres(c)
    log_w = log_pop[None, :] + c.selection_strength * (centres @ factors.T) / math.sqrt(k)
    log_w -= log_w.max(axis=1, keepdims=True)
    weights = np.exp(log_w)
    cdf = np.cumsum(weights, axis=1)
    cdf /= cdf[:, -1:]
    cdf[:, -1] = 1.0
    return {
        "movieId": movie_ids,
        "factors": factors,
        "item_bias": item_bias,
        "genre_flags": flags,
        "year": years,
        "release": release,
        "imdbId": imdb,
        "tmdbId": tmdb,
        "log_w": log_w,
        "cdf_flat": (cdf + np.arange(c.n_taste_groups)[:, None]).ravel(),
    }


def _centres(c: SynthConfig) -> np.ndarray:
    # the group centres depend on the seed only (not on sizes), drawn from their own stream
    return np.random.default_rng(np.random.SeedSequence([c.seed, 7])).standard_normal(
        (c.n_taste_groups, c.n_factors)
    )


def _year_start(years: np.ndarray) -> np.ndarray:
    """Unix seconds of 1 January of each year."""
    return (
        (np.asarray(years, np.int64) - 1970)
        .astype("datetime64[Y]")
        .astype("datetime64[s]")
        .astype(np.int64)
    )


def _write_movies(m: dict, out: Path) -> None:
    names = np.asarray(ML_GENRES, dtype=object)
    genres = [
        "|".join(names[row]) if row.any() else "(no genres listed)" for row in m["genre_flags"]
    ]
    titles = [f"Synthetic Movie {i} ({y})" for i, y in zip(m["movieId"], m["year"])]
    pd.DataFrame({"movieId": m["movieId"], "title": titles, "genres": genres}).to_csv(
        out / "movies.csv", index=False, lineterminator="\n"
    )
    pd.DataFrame(
        {
            "movieId": m["movieId"],
            "imdbId": [f"{v:07d}" for v in m["imdbId"]],
            "tmdbId": m["tmdbId"],
        }
    ).to_csv(out / "links.csv", index=False, lineterminator="\n")


# --------------------------------------------------------------------------- users


def _make_users(c: SynthConfig, rng: np.random.Generator) -> dict:
    n, k = c.n_users, c.n_factors
    group_share = rng.dirichlet(np.full(c.n_taste_groups, 5.0))
    group = rng.choice(c.n_taste_groups, size=n, p=group_share)
    factors = _centres(c)[group] + c.user_spread * rng.standard_normal((n, k))
    bias = c.user_bias_sd * rng.standard_normal(n)
    concentration = 2.0
    half = (
        rng.beta(c.half_star_use * concentration, (1 - c.half_star_use) * concentration, n)
        if 0 < c.half_star_use < 1
        else np.full(n, float(c.half_star_use))
    )
    counts = _allocate_counts(c, rng.pareto(c.user_activity_shape, n) + 1e-9)

    start_ts, end_ts = (
        int(_year_start(np.array([c.start_year]))[0]),
        int(_year_start(np.array([c.end_year + 1]))[0]) - 1,
    )
    begin = start_ts + (rng.random(n) * (end_ts - start_ts)).astype(np.int64)
    duration = np.exp(rng.normal(math.log(30 * _DAY), 2.0, n))  # median a month, some years
    duration = np.minimum(duration, end_ts - begin).astype(np.int64)
    tagger = rng.random(n) < c.tag_user_share
    return {
        "group": group,
        "factors": factors,
        "bias": bias,
        "half": half,
        "count": counts,
        "begin": begin,
        "duration": duration,
        "end_ts": end_ts,
        "tagger": tagger,
    }


def _allocate_counts(c: SynthConfig, weights: np.ndarray) -> np.ndarray:
    """Ratings per user: the floor plus a share of the rest in proportion to ``weights``, capped."""
    n = len(weights)
    room = _user_cap(c) - c.min_user_ratings
    extra_total = c.n_ratings - n * c.min_user_ratings
    extra = np.zeros(n)
    free = np.ones(n, bool)
    remaining = float(extra_total)
    while free.any():  # water-filling: users over the cap are fixed there, the rest re-shared
        share = remaining * weights / weights[free].sum()
        over = free & (share > room)
        if not over.any():
            extra[free] = share[free]
            break
        extra[over] = room
        remaining -= room * over.sum()
        free &= ~over
    whole = np.floor(extra).astype(np.int64)
    short = extra_total - int(whole.sum())
    if short > 0:  # hand out the rounding remainder by largest fractional part, within the cap
        frac = np.where(whole < room, extra - whole, -1.0)
        whole[np.argsort(-frac, kind="stable")[:short]] += 1
    return whole + c.min_user_ratings


# --------------------------------------------------------------------------- ratings


def _make_chunk(
    c: SynthConfig, m: dict, u: dict, lo: int, hi: int, intercept: float, rng: np.random.Generator
):
    users = np.arange(lo, hi)
    local, items = _sample_items(c, m, u["group"][users], u["count"][users], rng)
    uid = users[local]
    offset, halves = _rating_terms(c, m, u, uid, items, rng)
    rating_index = _discretise(intercept + offset, halves)

    when = u["begin"][uid] + (rng.random(len(uid)) * u["duration"][uid]).astype(np.int64)
    release = m["release"][items]
    early = (
        when < release
    )  # rated before release: move to a random time between release and the end
    when[early] = release[early] + (
        rng.random(int(early.sum())) * (u["end_ts"] - release[early])
    ).astype(np.int64)

    movie_ids = m["movieId"][items]
    order = np.argsort(uid * (int(m["movieId"][-1]) + 1) + movie_ids)
    rows = {
        "userId": (uid + 1)[order],
        "movieId": movie_ids[order],
        "rating_index": rating_index[order],
        "timestamp": when[order],
    }
    return rows, _make_tags(c, m, u, uid[order], items[order], when[order], rng)


def _rating_terms(c: SynthConfig, m: dict, u: dict, uid, items, rng: np.random.Generator):
    """Everything of a rating but the intercept (biases, taste, noise), and the half-star draws."""
    taste = np.einsum("ij,ij->i", u["factors"][uid], m["factors"][items])
    taste *= c.taste_sd / math.sqrt(c.n_factors * (1 + c.user_spread**2))
    offset = u["bias"][uid] + m["item_bias"][items] + taste + c.noise_sd * _noise(c, rng, len(uid))
    halves = rng.random(len(uid)) < u["half"][uid]
    return offset, halves


def _discretise(value: np.ndarray, halves: np.ndarray) -> np.ndarray:
    """Index into RATING_VALUES: half-star grid where ``halves``, else whole stars (1..5)."""
    stars = np.where(halves, np.round(value * 2) / 2, np.clip(np.round(value), 1, 5))
    return (np.clip(stars, 0.5, 5.0) * 2).astype(np.int64) - 1


def _calibrate_intercept(c: SynthConfig, m: dict, u: dict, rng: np.random.Generator) -> float:
    """The intercept whose discretised ratings average ``mean_rating``.

    Which movies get rated (popular ones, ones that suit the user) shifts the mean in a way
    that depends on the sizes, so it is measured on a pilot sample of users (all their
    ratings, so the estimate is per rating) and the intercept is found by bisection.
    """
    pilot = np.sort(rng.choice(c.n_users, size=min(c.n_users, 2000), replace=False))
    local, items = _sample_items(c, m, u["group"][pilot], u["count"][pilot], rng)
    offset, halves = _rating_terms(c, m, u, pilot[local], items, rng)
    lo, hi = -2.0, 8.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if RATING_VALUES[_discretise(mid + offset, halves)].mean() < c.mean_rating:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _noise(c: SynthConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-variance noise with a long low tail (mirrored, centred gamma), like rating residuals."""
    if not math.isfinite(c.noise_shape):
        return rng.standard_normal(n)
    return -(rng.gamma(c.noise_shape, 1.0, n) - c.noise_shape) / math.sqrt(c.noise_shape)


def _sample_items(
    c: SynthConfig, m: dict, group: np.ndarray, count: np.ndarray, rng: np.random.Generator
):
    """For each user ``j`` of the chunk, ``count[j]`` distinct movies, by weighted sampling
    without replacement from the user's taste-group weights.

    Light users draw with replacement from the group CDF and keep the first ``count``
    distinct movies in draw order (exactly successive weighted sampling without
    replacement); heavy users, and any light user still short after a few rounds, are
    completed with Gumbel top-k over the movies they have not drawn yet (the same law).
    Returns (index of the user within the chunk, movie index) arrays, grouped by user.
    """
    n_movies, n_users = c.n_movies, len(count)
    heavy = count > max(64, n_movies // 16)
    pending = np.flatnonzero(~heavy)
    acc_user = np.empty(0, np.int64)
    acc_item = np.empty(0, np.int64)
    acc_pos = np.empty(0, np.int64)
    have = np.zeros(n_users, np.int64)
    next_pos = 0
    factor = 2.0
    for _ in range(6):
        if not len(pending):
            break
        draws = np.ceil((count[pending] - have[pending]) * factor).astype(np.int64) + 8
        who = np.repeat(pending, draws)
        acc_user = np.concatenate([acc_user, who])
        acc_item = np.concatenate([acc_item, _draw(m, group[who], n_movies, rng)])
        acc_pos = np.concatenate([acc_pos, next_pos + np.arange(len(who))])
        next_pos += len(who)
        span = np.int64(next_pos)
        # first draw of each (user, movie): sort by (user, movie, position)
        order = np.argsort((acc_user * n_movies + acc_item) * span + acc_pos)
        key = acc_user[order] * n_movies + acc_item[order]
        first = np.ones(len(order), bool)
        first[1:] = key[1:] != key[:-1]
        keep = order[first]
        acc_user, acc_item, acc_pos = acc_user[keep], acc_item[keep], acc_pos[keep]
        # ... and each user's first count[user] distinct movies in draw order
        order = np.argsort(acc_user * span + acc_pos)
        acc_user, acc_item, acc_pos = acc_user[order], acc_item[order], acc_pos[order]
        per_user = np.bincount(acc_user, minlength=n_users)
        starts = np.concatenate([[0], np.cumsum(per_user)[:-1]])
        keep = (np.arange(len(acc_user)) - starts[acc_user]) < count[acc_user]
        acc_user, acc_item, acc_pos = acc_user[keep], acc_item[keep], acc_pos[keep]
        have = np.bincount(acc_user, minlength=n_users)
        pending = np.flatnonzero(~heavy & (have < count))
        factor *= 2

    out_user, out_item = [acc_user], [acc_item]
    bounds = np.concatenate([[0], np.cumsum(have)])  # acc is grouped by user here
    for j in np.flatnonzero(have < count):  # heavy users and stragglers: Gumbel top-k
        seen = acc_item[bounds[j] : bounds[j + 1]]
        need = int(count[j] - len(seen))
        keys = m["log_w"][group[j]] + rng.gumbel(size=n_movies)
        keys[seen] = -np.inf
        chosen = np.argpartition(-keys, need - 1)[:need]
        out_user.append(np.full(need, j, np.int64))
        out_item.append(chosen.astype(np.int64))
    return np.concatenate(out_user), np.concatenate(out_item)


def _draw(m: dict, group: np.ndarray, n_movies: int, rng: np.random.Generator) -> np.ndarray:
    """One movie per entry of ``group``, with replacement, by inverting the group's CDF.

    The groups' CDFs are stacked (group ``g`` spans ``g .. g + 1``); the search keys are
    sorted first because ``searchsorted`` is several times faster on sorted keys.
    """
    keys = group + rng.random(len(group))
    order = np.argsort(keys)
    item = np.empty(len(keys), np.int64)
    item[order] = np.searchsorted(m["cdf_flat"], keys[order], side="right")
    return np.minimum(item - group * n_movies, n_movies - 1)


def _make_tags(
    c: SynthConfig, m: dict, u: dict, uid, items, when, rng: np.random.Generator
) -> pd.DataFrame:
    pick = u["tagger"][uid] & (rng.random(len(uid)) < c.tag_rate)
    if not pick.any():
        return pd.DataFrame(columns=["userId", "movieId", "tag", "timestamp"])
    t_user, t_item, t_when = uid[pick], items[pick], when[pick]
    q = m["factors"][t_item]
    dim = np.abs(q).argmax(axis=1)
    words = np.array(
        [
            (
                FACTOR_TAGS[d % len(FACTOR_TAGS)][0 if s > 0 else 1]
                + ("" if d < len(FACTOR_TAGS) else f" {d // len(FACTOR_TAGS) + 1}")
            )
            for d, s in zip(dim, q[np.arange(len(dim)), dim])
        ],
        dtype=object,
    )
    flags = m["genre_flags"][t_item]
    use_genre = (rng.random(len(t_item)) < 0.5) & flags.any(axis=1)
    for j in np.flatnonzero(use_genre):
        options = np.flatnonzero(flags[j])
        words[j] = ML_GENRES[options[rng.integers(len(options))]].lower()
    return pd.DataFrame(
        {
            "userId": t_user + 1,
            "movieId": m["movieId"][t_item],
            "tag": words,
            "timestamp": t_when + rng.integers(1, 600, len(t_item)),
        }
    )


def _write_readme(out: Path, config: SynthConfig, summary: dict) -> None:
    text = f"""SYNTHETIC DATA - NOT MOVIELENS
==============================

This folder was generated by pipeline.data.synth (Movie Time). It has the layout of the
GroupLens ml-latest-small data set (ratings.csv, movies.csv, tags.csv, links.csv) but
every user, movie, rating, tag and id in it is made up: titles are "Synthetic Movie <id>
(<year>)", imdbId and tmdbId point at nothing real. Ratings come from a latent-factor
model (rating = mean + user bias + movie bias + user factors . movie factors + noise)
with long-tailed movie popularity and power-law user activity (at least
{config.min_user_ratings} ratings per user). No GroupLens data is included.

Summary: {summary["n_users"]} users, {summary["n_movies"]} movies, {summary["n_ratings"]} ratings,
{summary["n_tags"]} tags, mean rating {summary["rating_mean"]:.3f}.

Config (pipeline.data.synth.SynthConfig):
{json.dumps(asdict(config), indent=2)}
"""
    (out / "README.txt").write_text(text, encoding="utf-8")


if (
    __name__ == "__main__"
):  # quick manual run: python -m pipeline.data.synth OUT [n_users n_movies n_ratings]
    import sys

    args = sys.argv[1:]
    if not args:
        sys.exit("usage: python -m pipeline.data.synth OUT_DIR [N_USERS N_MOVIES N_RATINGS [SEED]]")
    sizes = [int(a) for a in args[1:5]]
    keys = ["n_users", "n_movies", "n_ratings", "seed"]
    result = generate(SynthConfig(**dict(zip(keys, sizes))), args[0])
    result.pop("config")
    print(json.dumps(result, indent=2))

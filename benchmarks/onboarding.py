"""A new user's first list: the onboarding questionnaire replayed for users the models never saw.

    python -m benchmarks.onboarding [--validate] [--users 150] [--seed 7] [--orders ...]

1. The peer harness's reference user-holdout split of ml-latest-small (seed 42). ``--users``
   users with at least 20 training ratings and a relevant held-out rating (>= 4) are drawn
   (``--seed``) and every rating of theirs is taken out of the training part: they are new.
   ``--validate`` reads no test rating: each new user's training ratings are carved at random
   into what they know (75%) and what scores their list (25%). Choices are made on that carve;
   the test split gives the final figures.
2. Fitted on the other users, as the pipeline publishes them: the top-N model, the rating
   model's matrix factorisation, the similar lists (their "liked" boosts; content from genres
   and tags, without the pipeline's TMDB keywords) and the live model
   (``build_live_model``, ``PipelineConfig.live_neighbors`` weights per movie).
3. Each new user states the 3 genres with the most rating mass in what they know, then walks
   down the questionnaire: the movies it asks about, one after another, rating those they have
   rated (seen) and passing the others, until they have given ``k`` answers (k = 0, 3, 5, 10)
   or seen ``--limit`` movies. The orders compared (``--orders``):

   * ``popularity``: the most rated movies first (what the service asks: ``GET
     /onboarding/movies``, the published ``artifacts.popular``);
   * ``genre-popularity``: the most rated movies of the stated genres first, then the rest;
   * ``pop-entropy``: log(ratings) x entropy of the movie's rating histogram (Rashid et al.,
     "Getting to know you", 2002: popular movies people disagree about);
   * ``factor-design``: a greedy design in the rating model's item factors: each next movie
     has the largest ``P(seen) * log(1 + q' A^-1 q)``, A the expected information of the movies
     before it (``P(seen)`` its share of users who rated it);
   * ``adaptive``: the user's own live list with the answers so far, 10 movies a page (what
     the model would recommend is what the user most likely has seen).

   The first list comes from the request-time path (``contract.live_model.recommend_live``,
   with the signals ``api.services.live.signals`` makes of a profile and the similar lists of
   its liked movies, as the API calls it). Compared in the same run: no questionnaire (the 10
   most rated movies), stated genres only (with the long-tail re-rank as before,
   ``ScoringConfig.cold_tail``, and without it as now), everything the user knows as onboarding
   answers (each liked answer boosting its similar movies in full as before,
   ``ScoringConfig.full_boosts``, and shared as now) and as a data-set user's ratings: the
   "full history" the shares are of. And 5 of the user's ratings as a data-set user's ratings
   (the popularity order's 5 answers, 5 at random, their 5 highest): what 5 ratings give the
   model without the questionnaire's genres and boosts.
4. Scored on the held-out ratings with ``pipeline.evaluation.metrics.topn_metrics`` (the
   harness's conventions): NDCG@10, HR@10; the movies each user looked at; and, for each order
   against the popularity order with as many answers, the mean per-user difference in NDCG@10
   with its 95% interval (paired t over the same users).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import numpy as np
import pandas as pd

from api.services.live import signals
from benchmarks._util import SHARED, bundled_topn, newest_first
from benchmarks.accuracy import interval
from contract.live_model import LiveModel, ScoringConfig, recommend_live
from pipeline.config import PipelineConfig
from pipeline.evaluation.metrics import ndcg_by_user, topn_metrics
from pipeline.features.matrix import RatingMatrix
from pipeline.features.tables import genre_vocabulary, movie_genres, movie_text
from pipeline.models.mf import BiasedMF
from pipeline.models.similarity import SimilarMovies, all_similar
from pipeline.publish.live_export import build_live_model

K = 10
ANSWERS = (3, 5, 10)
CEILING = 5  # ratings a known user is scored with, to compare with 5 answers
ORDERS = ("popularity", "genre-popularity", "pop-entropy", "factor-design", "adaptive")
ADAPTIVE_PAGE = 10

Answers = list[tuple[int, float]]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--split", default=str(SHARED / "bench" / "splits" / "ml-latest-small" / "user-holdout")
    )
    p.add_argument("--data", default=str(SHARED / "data" / "ml-latest-small"))
    p.add_argument("--users", type=int, default=150)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--limit", type=int, default=100, help="movies a user looks at, at most")
    p.add_argument("--orders", default=",".join(ORDERS))
    p.add_argument(
        "--validate", action="store_true", help="score on a carve of the training ratings"
    )
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    train = pd.read_csv(f"{args.split}/train.csv")
    movies = pd.read_csv(f"{args.data}/movies.csv")
    counts = train.groupby("userId").size()
    if args.validate:
        known_to_user = np.random.default_rng(args.seed + 1).random(len(train)) < 0.75
        target = train[~known_to_user]
    else:
        known_to_user = np.ones(len(train), bool)
        target = pd.read_csv(f"{args.split}/test.csv")
    relevant = target[target.rating >= 4.0].userId.unique()
    eligible = np.intersect1d(counts[counts >= 20].index.to_numpy(), relevant)
    new = np.sort(np.random.default_rng(args.seed).choice(eligible, args.users, replace=False))
    is_new = train.userId.isin(new).to_numpy()
    others = train[~is_new]
    history = train[is_new & known_to_user]
    held = target[target.userId.isin(new)]

    config = PipelineConfig()
    vocabulary = genre_vocabulary(movies)  # the pipeline's reading of the genres column
    genres_of = movie_genres(movies)
    matrix = RatingMatrix.from_frame(others)
    mf = BiasedMF(config.rating.mf).fit(matrix)
    topn = bundled_topn(matrix, config.topn, mf)
    text = movie_text(movies, pd.read_csv(f"{args.data}/tags.csv"))
    similar = all_similar(SimilarMovies(config.similarity).fit(matrix, text))
    live = build_live_model(
        topn.cut(config.live_neighbors), mf, matrix.item_ids, vocabulary, genres_of, similar=similar
    )
    popularity = others.groupby("movieId").size().sort_values(ascending=False, kind="stable")
    fitted_s = time.perf_counter() - t0

    orders = {
        "popularity": list(popularity.index),
        "pop-entropy": pop_entropy_order(others),
        "factor-design": factor_design_order(mf, popularity, others.userId.nunique()),
    }
    users = [(int(u), d, top_genres(d, genres_of)) for u, d in history.groupby("userId")]
    rows: list[tuple[str, int | str, list, float]] = []

    def add(name: str, k: int | str, answers_of, config: ScoringConfig | None = None):
        lists, shown = [], []
        for user_id, user, genres in users:
            answers, looked = answers_of(user, genres)
            lists.append((user_id, first_list(live, answers, genres, config or ScoringConfig())))
            shown.append(looked)
        rows.append((name, k, lists, float(np.mean(shown))))

    rows.append(
        (
            "none: the 10 most rated movies",
            0,
            [(u, list(popularity.index[:K])) for u, _, _ in users],
            0.0,
        )
    )
    add("genres only, with the tail re-rank (before)", 0, none, ScoringConfig(cold_tail=True))
    add("genres only", 0, none)
    for name in args.orders.split(","):
        for k in ANSWERS:
            if name == "adaptive":
                add(name, k, lambda u, g, k=k: adaptive(live, u, g, k, args.limit))
            elif name == "genre-popularity":
                add(
                    name,
                    k,
                    lambda u, g, k=k: walk(u, genre_first(live, popularity, g), k, args.limit),
                )
            else:
                add(name, k, lambda u, g, k=k, o=orders[name]: walk(u, o, k, args.limit))

    def everything(u: pd.DataFrame, genres: list[str]) -> tuple[Answers, int]:
        # answered oldest first: the API counts the later written answers as the newer
        u = newest_first(u).iloc[::-1]
        return list(zip(u.movieId, u.rating)), 0

    add(
        "all they know as answers, each liked one boosting in full (before)",
        "all",
        everything,
        ScoringConfig(full_boosts=10**9),
    )
    add("all they know as answers", "all", everything)
    # what five of their ratings give as a data-set user's (no genres, no boosts): whether the
    # request-time path wastes the answers, or five ratings cannot carry more
    rng = np.random.default_rng(args.seed)
    pick = {
        "the popularity order's answers": lambda u: u[
            u.movieId.isin([m for m, _ in walk(u, orders["popularity"], CEILING, args.limit)[0]])
        ],
        "at random": lambda u: u.iloc[rng.permutation(len(u))[:CEILING]],
        "their highest": lambda u: u.sort_values("rating", ascending=False, kind="stable")[
            :CEILING
        ],
    }
    for name, take in pick.items():
        rows.append(
            (
                f"{CEILING} of their ratings, {name}, as a data-set user's ratings",
                CEILING,
                [(u, known_user_list(live, take(user))) for u, user, _ in users],
                0.0,
            )
        )
    rows.append(
        (
            "all they know, as a data-set user's ratings",
            "all",
            [(u, known_user_list(live, user)) for u, user, _ in users],
            0.0,
        )
    )
    scored = [(n, k, topn_metrics(frame(lists), held, K, 4.0), s) for n, k, lists, s in rows]
    full = scored[-1][2][f"ndcg@{K}"]
    by_user = {(n, k): ndcg_by_user(frame(lists), held, K, 4.0) for n, k, lists, _ in rows}

    scored_on = "a 25% carve of their training ratings" if args.validate else "the test split"
    print(
        f"\n### A new user's first list: {len(new)} users held out whole from the reference "
        f"user-holdout split (seed {args.seed}), scored on {scored_on}; models fitted on the "
        f"other users in {fitted_s:.0f} s\n"
    )
    print(
        f"| questionnaire order | answers | NDCG@{K} | HR@{K} | share of full NDCG | "
        "movies looked at | NDCG - popularity order's, same users (95% interval) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, k, m, shown in scored:
        versus = ""
        if isinstance(k, int) and k > 0 and name != "popularity":
            mean, half = interval((by_user[name, k] - by_user["popularity", k]).tolist())
            versus = f"{mean:+.4f} ± {half:.4f}"
        print(
            f"| {name} | {k} | {m[f'ndcg@{K}']:.4f} | {m[f'hitrate@{K}']:.4f} | "
            f"{m[f'ndcg@{K}'] / full:.0%} | {shown:.1f} | {versus} |"
        )
    print(f"\n{time.perf_counter() - t0:.0f} s in all")
    return 0


# --- the questionnaire's orders ------------------------------------------------------------------


def pop_entropy_order(ratings: pd.DataFrame) -> list[int]:
    """Movies by log(number of ratings) x entropy (bits) of their half-star rating histogram."""
    halves = (ratings.rating.to_numpy() * 2).astype(np.int64)
    table = pd.crosstab(ratings.movieId, halves)
    p = table.to_numpy() / table.to_numpy().sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.nansum(np.where(p > 0, p * np.log2(p), 0.0), axis=1)
    score = pd.Series(np.log(table.to_numpy().sum(axis=1)) * entropy, index=table.index)
    return list(score.sort_values(ascending=False, kind="stable").index)


def factor_design_order(
    mf: BiasedMF, popularity: pd.Series, n_users: int, pool: int = 300, length: int = 100
) -> list[int]:
    """Greedy: the next movie maximises ``P(seen) * log(1 + q' A^-1 q)`` over the ``pool`` most
    rated (q its item factors and 1 for its bias), then ``A += P(seen) q q'``; the rest follow
    by popularity."""
    side = mf.item_side()
    place = {int(m): i for i, m in enumerate(side.item_ids)}
    pool_ids = [int(m) for m in popularity.index[:pool] if int(m) in place]
    q = np.hstack(
        [side.item_factors[[place[m] for m in pool_ids]], np.ones((len(pool_ids), 1))]
    ).astype(np.float64)
    seen = popularity[pool_ids].to_numpy() / n_users
    a = np.eye(q.shape[1])
    free = np.ones(len(pool_ids), bool)
    chosen: list[int] = []
    for _ in range(min(length, len(pool_ids))):
        gain = seen * np.log1p(np.einsum("ij,jk,ik->i", q, np.linalg.inv(a), q))
        j = int(np.argmax(np.where(free, gain, -np.inf)))
        chosen.append(pool_ids[j])
        free[j] = False
        a += seen[j] * np.outer(q[j], q[j])
    return chosen + [int(m) for m in popularity.index if int(m) not in set(chosen)]


def genre_first(live: LiveModel, popularity: pd.Series, genres: list[str]) -> list[int]:
    ids = popularity.index.to_numpy(np.int64)
    mine = (live.genre_masks(ids) & live.genre_mask(genres)) != 0
    return [*ids[mine].tolist(), *ids[~mine].tolist()]


# --- a user answering ----------------------------------------------------------------------------


def none(user: pd.DataFrame, genres: list[str]) -> tuple[Answers, int]:
    return [], 0


def walk(user: pd.DataFrame, order: list[int], k: int, limit: int) -> tuple[Answers, int]:
    """The first ``k`` movies of ``order`` the user rated, with their ratings, and how many
    movies they looked at to find them (at most ``limit``)."""
    rated = dict(zip(user.movieId.tolist(), user.rating.tolist()))
    answers: Answers = []
    for looked, m in enumerate(order[:limit], start=1):
        if m in rated:
            answers.append((m, rated[m]))
            if len(answers) == k:
                return answers, looked
    return answers, min(limit, len(order))


def adaptive(
    live: LiveModel, user: pd.DataFrame, genres: list[str], k: int, limit: int
) -> tuple[Answers, int]:
    """Pages of the user's live list with the answers so far; passed movies are not asked again."""
    rated = dict(zip(user.movieId.tolist(), user.rating.tolist()))
    answers: Answers = []
    shown: list[int] = []
    while len(answers) < k and len(shown) < limit:
        page = first_list(live, answers, genres, ScoringConfig(), hidden=shown, n=ADAPTIVE_PAGE)
        if not page:
            break
        for m in page:
            shown.append(m)
            if m in rated:
                answers.append((m, rated[m]))
                if len(answers) == k:
                    break
    return answers, len(shown)


def top_genres(user: pd.DataFrame, genres_of: dict[int, list[str]]) -> list[str]:
    mass: dict[str, float] = {}
    for m, r in zip(user.movieId, user.rating):
        for g in genres_of.get(int(m), ()):
            mass[g] = mass.get(g, 0.0) + float(r)
    return sorted(mass, key=lambda g: (-mass[g], g))[:3]


def first_list(
    live: LiveModel,
    answers: Answers,
    genres: list[str],
    config: ScoringConfig,
    hidden: list[int] = (),
    n: int = K,
) -> list[int]:
    """The list ``POST /users`` answers for these answers, as ``api.services.live`` makes it."""
    profile = {"ratings": {str(int(m)): float(r) for m, r in answers}, "genres": genres}
    sig = signals((np.empty(0, np.int64), np.empty(0, np.float64)), profile)
    sig = replace(sig, hidden=set(hidden))
    neighbors = live.similar_lists(m for m, s in (sig.boost_sources or {}).items() if s > 0)
    return [int(m) for m in recommend_live(live, sig, n, neighbors, config).movie_ids[:n]]


def known_user_list(live: LiveModel, user: pd.DataFrame) -> list[int]:
    """The list of a user whose ratings are training ratings (no stated genres, no boosts),
    newest first as the API reads them."""
    user = newest_first(user)
    base = (user.movieId.to_numpy(np.int64), user.rating.to_numpy(np.float64))
    return [int(m) for m in recommend_live(live, signals(base, None), K).movie_ids[:K]]


def frame(lists: list[tuple[int, list[int]]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(u, rank, m) for u, items in lists for rank, m in enumerate(items, start=1)],
        columns=["userId", "rank", "movieId"],
    )


if __name__ == "__main__":
    sys.exit(main())

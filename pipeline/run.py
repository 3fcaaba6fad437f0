"""The main job: MovieLens files -> evaluated models -> precomputed lists -> MongoDB, atomically."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from contract import schema
from contract.errors import not_answering
from pipeline.config import PipelineConfig
from pipeline.data.feedback import read_feedback, with_feedback
from pipeline.data.movielens import MovieLensData, load_movielens
from pipeline.data.splitting import split_ratings
from pipeline.data.tmdb import bundle_or_none
from pipeline.evaluation.holdout import (
    evaluate_group_lists,
    evaluate_ratings,
    evaluate_topn,
    write_report,
)
from pipeline.evaluation.reasons import evidence_share
from pipeline.features.tables import EVIDENCE_TERMS, movie_terms, telling_terms
from pipeline.models.clustering import describe_clusters
from pipeline.models.similarity import all_similar
from pipeline.progress import Steps
from pipeline.publish import documents
from pipeline.publish.documents import display_title
from pipeline.publish.live_export import build_live_model
from pipeline.publish.store import Store, StoreNotAnswering
from pipeline.publish.user_lists import UserListInputs, iter_user_docs, write_user_lists
from pipeline.runtime import current_client, release_memory
from pipeline.train import FittedModels, fit_models

log = logging.getLogger("pipeline")


@dataclass
class RunResult:
    version: str
    report: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    run_dir: Path | None = None


def load_inputs(config: PipelineConfig, steps: Steps) -> tuple[MovieLensData, pd.DataFrame | None]:
    with steps.step("load data"):
        data = load_movielens(config.dataset, config.data)
        data.ratings = data.ratings.persist()
        metadata = bundle_or_none(config.tmdb)
    return data, metadata


def evaluate_holdout(
    data: MovieLensData, metadata: pd.DataFrame | None, config: PipelineConfig, steps: Steps
) -> tuple[dict, pd.DataFrame]:
    """Split first, fit on the training part only, score the held-out part."""
    steps.phase = "evaluation"
    with steps.step("split"):
        split = split_ratings(data.ratings, config.split)
    models = fit_models(
        split.train,
        data.movies,
        config,
        steps,
        links=data.links,
        metadata=metadata,
        with_clusters=False,
        with_similar=False,
    )
    with steps.step("evaluate ratings"):
        rating_report, rows = evaluate_ratings(models, split.test, current_client())
    with steps.step("evaluate top-N"):
        topn_report, candidates = evaluate_topn(
            models, split.test, config.k, config.relevance_threshold, current_client()
        )
    with steps.step("evaluate groups"):
        groups_report = evaluate_group_lists(
            models,
            data.movies,
            split.test,
            candidates,
            config.k,
            config.relevance_threshold,
            config.live_neighbors,
        )
    steps.phase = ""
    k = config.k
    log.info(
        "evaluation: RMSE %.4f (damped means %.4f), NDCG@%d %.4f (popularity %.4f), coverage@%d %.4f",
        rating_report["model"]["rmse"],
        rating_report["bias_baseline"]["rmse"],
        k,
        topn_report["model"][f"ndcg@{k}"],
        topn_report["popularity"][f"ndcg@{k}"],
        k,
        topn_report["model"].get(f"coverage@{k}", float("nan")),
    )
    return {"rating": rating_report, "topn": topn_report, "groups": groups_report}, rows


def fingerprint(data: MovieLensData) -> str | None:
    """BLAKE2 of the input files (None when the loader does not say where they are)."""
    folder = getattr(data, "path", None)
    if folder is None:
        return None
    h = hashlib.blake2b(digest_size=16)
    for f in sorted(Path(folder).iterdir()):
        if f.is_file():
            h.update(f.name.encode())
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    h.update(chunk)
    return h.hexdigest()


def model_artifacts(models: FittedModels, clusters: pd.DataFrame) -> dict:
    """Small artifacts the API needs online (cluster assignment of new users, popularity)."""
    f = models.features
    return {
        "global_mean": float(f.global_mean),
        "genres": list(f.genres),
        "genre_prior": [float(v) for v in f.genre_prior.to_numpy()],
        "cluster_assigner": models.clustering.assigner_.to_dict(),
        "n_clusters": int(models.clustering.n_clusters_),
        "popular": [int(m) for m in models.popular_items(100)],
    }


def run(config: PipelineConfig, store, version: str, steps: Steps | None = None) -> RunResult:
    """The whole pipeline. ``store`` is a :class:`pipeline.publish.store.Store` (or None: no load)."""
    steps = steps or Steps()
    result = RunResult(version=version)
    data, metadata = load_inputs(config, steps)
    n_ratings = len(data.ratings)
    if config.for_size(n_ratings) is not config:
        config = config.for_size(n_ratings)
        log.info(
            "%s ratings: large-data profile (%d stacking fold(s) with <= %s boosting rows, top-N over <= %d movies, %s / %s weights per movie)",
            f"{n_ratings:,}",
            config.rating.stack_folds,
            f"{config.rating.max_gbm_rows:,}",
            config.topn.max_items,
            config.topn.score_neighbors or "all",
            config.topn.positive_keep or "all",
        )
    report: dict = {
        "dataset": config.dataset,
        "split": vars(config.split),
        "data_quality": data.quality,
    }
    rows = None
    if config.evaluate:
        holdout, rows = evaluate_holdout(data, metadata, config, steps)
        report.update(holdout)
        release_memory()  # the evaluation's models are gone: hand their heap back before the refit

    if store is not None and config.use_feedback:
        with steps.step("feedback events"):
            events = read_feedback(store.db)
            data.ratings, report["feedback"] = with_feedback(
                data.ratings, events, data.movies["movieId"]
            )

    steps.phase = "refit"
    log.info("refit on all %s ratings", f"{len(data.ratings):,}")
    models = fit_models(
        data.ratings,
        data.movies,
        config,
        steps,
        tags=data.tags,
        links=data.links,
        metadata=metadata,
        release_ratings=True,
    )
    steps.phase = ""
    data.ratings = None  # every model is fitted: the workers drop the persisted ratings
    release_memory()
    with steps.step("cluster personas"):
        labels = models.clustering.labels_
        clusters = describe_clusters(
            labels, models.features.genre_profile, models.features.genres, models.matrix
        )
        report["clusters"] = {
            "k": int(models.clustering.n_clusters_),
            "exact": bool(models.clustering.exact_),
            "eigenvalues": [round(float(v), 5) for v in models.clustering.eigenvalues_],
            "sizes": {str(c): int(s) for c, s in clusters["size"].items()},
        }

    result.report = report
    try:
        if store is not None:
            refit = Refitted(data, metadata, models, clusters, report)
            result.counts = load_store(store, version, config, refit, steps)
    finally:  # with the load's figures (the reasons' evidence), or without when it failed
        if config.evaluate:
            result.run_dir = Path(config.run_dir) / version
            report["timings"] = dict(steps.timings)
            write_report(result.run_dir, report, rows, clusters)
            log.info("evaluation report: %s", result.run_dir / "report.md")
    result.timings = dict(steps.timings)
    result.timings["total"] = steps.total()
    return result


@dataclass
class Refitted:
    """What the refit on all ratings hands to the load: the inputs the documents are made of,
    the fitted models (the load drops each after its last use), the clusters' descriptions and
    the run's report so far."""

    data: MovieLensData
    metadata: pd.DataFrame | None
    models: FittedModels
    clusters: pd.DataFrame
    report: dict


def load_store(
    store: Store, version: str, config: PipelineConfig, refit: Refitted, steps: Steps
) -> dict[str, int]:
    """Stage every collection of ``version``, then publish it; the documents per collection.
    On any failure the staging is aborted and the store keeps serving its current version."""
    data, models, clusters, report = refit.data, refit.models, refit.clusters, refit.report
    counts: dict[str, int] = {}
    cat = documents.catalogue(data.movies, data.links, refit.metadata)
    titles = {int(m): display_title(row) for m, row in cat.iterrows()}
    genres_of = dict(zip(cat.index.astype(int), cat["genres"]))
    # the live model's top-N side, its tail calibrated on the weights it keeps (which needs the
    # training users); then the batch model drops them: they are in models.matrix
    live_topn = models.topn.cut(config.live_neighbors).without_users()
    models.topn = models.topn.without_users()
    release_memory()
    with steps.step("similar movies (all)"):
        similar = all_similar(models.similar, current_client())
    models.similar = None  # its last use (its rating and content matrices: 0.4 GiB at 25M ratings)
    staging = store.stage(version)
    try:
        with steps.step("store: movies, metadata, clusters"):
            terms = telling_terms(
                movie_terms(data.movies, data.tags, data.links, refit.metadata, EVIDENCE_TERMS),
                genres_of,
            )
            counts[schema.MOVIES] = staging.insert(
                schema.MOVIES, documents.movie_docs(cat, models, similar, terms)
            )
            counts[schema.METADATA] = staging.insert(
                schema.METADATA, documents.metadata_docs(cat, data.tags)
            )
            counts[schema.CLUSTERS] = staging.insert(
                schema.CLUSTERS, documents.cluster_docs(clusters)
            )
        with steps.step("store: live model"):
            live = build_live_model(
                live_topn,
                models.rating.mf_,
                models.matrix.item_ids,
                models.features.genres,
                genres_of,
                similar=similar,
            )
            counts[schema.LIVE_MODEL] = staging.insert(schema.LIVE_MODEL, live.to_docs())
            del live
        with steps.step("precompute top-N + store users"):
            inputs = UserListInputs.from_models(
                models,
                models.clustering.labels_,
                clusters,
                titles,
                version,
                config.top_n,
                similar=similar,
            )
            # their last use here: the workers get their own copies
            models.topn = models.rating = None
            del similar  # in ``inputs`` as a sparse matrix now
            release_memory()
            counts[schema.USERS] = store_user_lists(store, staging, inputs)
            del inputs
            release_memory()
        if config.evaluate:  # a figure of the evaluation report, read back from the store
            with steps.step("reasons' evidence (a sample)"):
                personas = {int(c): list(p) for c, p in clusters["persona"].items()}
                report["reasons"] = evidence_share(
                    staging, models.matrix.user_ids, config.k, terms, genres_of, personas
                )
        del terms
        with steps.step("store: indexes + publish"):
            staging.ensure_indexes()
            metrics = {
                k: report[k]
                for k in ("rating", "topn", "groups", "reasons", "clusters", "feedback")
                if k in report
            }
            staging.publish(
                {
                    "created_at": datetime.now(UTC),
                    "dataset": {
                        "name": config.dataset,
                        "n_ratings": int(models.matrix.nnz),
                        "n_users": int(len(models.matrix.user_ids)),
                        "n_movies": int(len(cat)),
                        "quality": report.get("data_quality"),
                    },
                    "data_fingerprint": fingerprint(data),
                    "params": config.params(),
                    "metrics": metrics,
                    "artifacts": model_artifacts(models, clusters),
                    "timings": dict(steps.timings),
                }
            )
        return counts
    except BaseException as exc:  # interrupted or failed: the previous version keeps serving
        staging.abort(error=f"{type(exc).__name__}: {exc}")
        if not_answering(exc):
            raise StoreNotAnswering(
                f"the store stopped answering while version {version} was being loaded (no answer within "
                f"{store.config.answer_timeout_s:.0f} s: {str(exc)[:160]}); nothing was published and the "
                "store keeps serving its current version"
            ) from exc
        raise


def store_user_lists(store, staging, inputs: UserListInputs) -> int:
    """Every user's document into the staging ``users`` collection: written by Dask tasks on
    the workers when there is a Dask cluster and the store has a URL they can reach
    (``Store.url``), else from here."""
    client = current_client()
    if store.url is None or client is None:
        log.info(
            "user documents: written from this process (%s)",
            "no Dask cluster" if client is None else "the store has no URL for the workers",
        )
        return staging.insert(schema.USERS, iter_user_docs(inputs))
    out = write_user_lists(
        client,
        inputs,
        store.url,
        store.db.name,
        staging.collections[schema.USERS],
        store.config.client_options(),
        on_written=lambda n: staging.added(schema.USERS, n),
    )
    log.info(
        "user documents: %d users written by %d worker process(es), %.1f s of task time",
        out["users"],
        len(out["pids"]),
        out["task_seconds"],
    )
    return out["users"]

"""``python -m pipeline``: run the pipeline, evaluate on any split, generate data, manage the store."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

log = logging.getLogger("pipeline")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the whole pipeline into the store (the main job)",
        description="Load data, split, evaluate on held-out ratings, refit on all data, "
        "precompute top-N and similar movies, and publish a new version to "
        "MongoDB atomically. Uses MONGODB_URL, else the embedded SecantusDB server.",
    )
    run.add_argument(
        "--dataset",
        default="ml-latest-small",
        help="named MovieLens set (ml-latest-small [bundled], ml-100k, ml-1m, ml-10m, ml-20m, "
        "ml-25m, ml-32m, ml-latest) or a folder in any MovieLens layout (default: %(default)s)",
    )
    _common_model_args(run)
    run.add_argument("--no-evaluate", action="store_true", help="skip the hold-out evaluation")
    run.add_argument(
        "--split",
        choices=["user", "random", "temporal"],
        default="user",
        help="hold-out strategy for the evaluation (default: %(default)s)",
    )
    run.add_argument(
        "--test-fraction", type=float, default=0.2, help="held-out share (default: %(default)s)"
    )
    run.add_argument(
        "--run-dir", default="runs", help="where evaluation reports go (default: %(default)s)"
    )
    run.add_argument(
        "--top-n", type=int, default=50, help="precomputed list length (default: %(default)s)"
    )
    run.add_argument(
        "--mongodb-url", default=None, help="MongoDB URL (default: $MONGODB_URL, else embedded)"
    )
    run.add_argument(
        "--database", default=None, help="database name (default: from the URL, else movietime)"
    )
    run.add_argument("--no-store", action="store_true", help="evaluate and fit, but load nothing")
    run.add_argument(
        "--store-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="a store call without an answer this long fails the run, and nothing is published "
        "(default: StoreConfig.answer_timeout_s, 20)",
    )
    run.add_argument(
        "--cache-dir", default="data-cache", help="download cache (default: %(default)s)"
    )
    run.add_argument("--offline", action="store_true", help="never download a named data set")

    ev = sub.add_parser(
        "evaluate",
        help="train on a split's train file and write predictions and top-10 lists",
        description="Train on TRAIN and write a prediction for every TEST row and a top-10 for "
        "every TEST user (excluding that user's training items), in the CSV formats "
        "of the peer harness's eval_split.py.",
    )
    ev.add_argument("--train", required=True, help="CSV userId,movieId,rating,timestamp")
    ev.add_argument("--test", required=True, help="CSV userId,movieId,rating,timestamp")
    ev.add_argument("--predictions", help="output CSV userId,movieId,prediction")
    ev.add_argument("--recommendations", help="output CSV userId,rank,movieId")
    ev.add_argument(
        "--movies-from",
        default="ml-latest-small",
        help="data set whose movies.csv gives the genres (default: %(default)s)",
    )
    ev.add_argument("--k", type=int, default=10, help="list length (default: %(default)s)")
    _common_model_args(ev)

    syn = sub.add_parser(
        "synth",
        help="write a synthetic MovieLens-shaped data set",
        description="Long-tail movie popularity, power-law user activity, learnable latent "
        "tastes, genres, timestamps; ml-latest-small CSV layout.",
    )
    syn.add_argument("--out", required=True, help="output folder")
    syn.add_argument("--users", type=int, default=1000)
    syn.add_argument("--movies", type=int, default=2000)
    syn.add_argument("--ratings", type=int, default=100_000)
    syn.add_argument("--seed", type=int, default=42)

    fe = sub.add_parser(
        "fetch", help="download and verify a named MovieLens data set into the cache"
    )
    fe.add_argument("name")
    fe.add_argument("--cache-dir", default="data-cache")

    st = sub.add_parser(
        "store",
        help="manage the embedded SecantusDB server",
        description="The embedded default store: a SecantusDB server on 127.0.0.1 with "
        "durable files under ./var/mongo.",
    )
    st.add_argument("action", choices=["start", "stop", "status"])

    tk = sub.add_parser(
        "token",
        help="issue a user's API token (replaces their previous one)",
        description="Prints a new bearer token for a user of the served version (or an "
        "onboarded user), for POST /user/<id>/ratings, /feedback and /lists. "
        "Only its hash is stored; the token is shown once.",
    )
    tk.add_argument("user_id", type=int)
    tk.add_argument(
        "--mongodb-url",
        default=None,
        help="store URL (default: $MONGODB_URL, else the embedded store)",
    )
    tk.add_argument("--database", default=None)
    return p


def _common_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scheduler",
        default=None,
        help="address of an existing Dask scheduler (default: start a local cluster)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        help="local cluster worker processes (default: %(default)s)",
    )
    p.add_argument(
        "--threads-per-worker",
        type=int,
        default=1,
        help="threads of each local cluster worker (default: %(default)s)",
    )
    p.add_argument(
        "--clusters",
        type=int,
        default=None,
        help="number of user clusters (default: chosen by the eigengap heuristic)",
    )
    p.add_argument("--seed", type=int, default=42, help="random seed (default: %(default)s)")
    p.add_argument("--no-tmdb", action="store_true", help="do not join the bundled TMDB metadata")
    p.add_argument(
        "--tmdb", default=None, help="folder with a TMDB metadata bundle (default: bundled)"
    )


def _config(args, **overrides):
    from pipeline.config import PipelineConfig
    from pipeline.models.clustering import ClusterConfig
    from pipeline.runtime import DaskConfig

    if args.no_tmdb or args.tmdb is not None:
        overrides["tmdb"] = None if args.no_tmdb else args.tmdb
    return PipelineConfig(
        clusters=ClusterConfig(n_clusters=args.clusters, seed=args.seed),
        dask=DaskConfig(
            scheduler=args.scheduler,
            n_workers=args.workers,
            threads_per_worker=args.threads_per_worker,
        ),
        **overrides,
    )


def cmd_run(args) -> int:
    from contract.embedded import EmbeddedConfig, resolve_url
    from pipeline.config import StoreTarget
    from pipeline.data.source import DatasetConfig
    from pipeline.data.splitting import SplitConfig
    from pipeline.publish.store import StoreConfig, new_version
    from pipeline.run import run
    from pipeline.runtime import dask_client

    url = args.mongodb_url or os.environ.get("MONGODB_URL") or None
    overrides = dict(
        dataset=args.dataset,
        evaluate=not args.no_evaluate,
        run_dir=args.run_dir,
        top_n=args.top_n,
        data=DatasetConfig(cache_dir=args.cache_dir, download=not args.offline),
        split=SplitConfig(strategy=args.split, test_fraction=args.test_fraction, seed=args.seed),
        target=StoreTarget(
            url=url,
            database=args.database or "movietime",
            store=StoreConfig()
            if args.store_timeout is None
            else StoreConfig(answer_timeout_s=args.store_timeout),
        ),
    )
    config = _config(args, **overrides)
    store, client = None, None
    if not args.no_store:
        import pymongo

        from pipeline.publish.store import Store

        mongo_url, embedded = resolve_url({"MONGODB_URL": url or ""}, EmbeddedConfig())
        if embedded:
            log.info(
                "embedded store (SecantusDB) serving at %s  (stop it: python -m pipeline store stop)",
                mongo_url,
            )
        client = pymongo.MongoClient(mongo_url, **config.target.store.client_options())
        db = (
            client.get_default_database(default=config.target.database)
            if args.database is None
            else client[args.database]
        )
        store = Store(db, config=config.target.store, url=mongo_url)
    version = new_version()
    try:
        with dask_client(config.dask):
            result = run(config, store, version)
    finally:
        if client is not None:
            client.close()
    _print_summary(result, store is not None)
    return 0


def _print_summary(result, stored: bool) -> None:
    r = result.report
    lines = [f"version {result.version}: done in {result.timings.get('total', 0):.1f} s"]
    if "rating" in r:
        lines.append(
            f"  held-out RMSE {r['rating']['model']['rmse']:.4f} (damped-means baseline "
            f"{r['rating']['bias_baseline']['rmse']:.4f}), MAE {r['rating']['model']['mae']:.4f}"
        )
        t, k = r["topn"], r["topn"]["k"]
        lines.append(
            f"  top-{k}: NDCG {t['model'][f'ndcg@{k}']:.4f}  P {t['model'][f'precision@{k}']:.4f}  "
            f"HR {t['model'][f'hitrate@{k}']:.4f}  coverage {t['model'][f'coverage@{k}']:.4f} "
            f"(popularity NDCG {t['popularity'][f'ndcg@{k}']:.4f})"
        )
    if "clusters" in r:
        lines.append(f"  {r['clusters']['k']} user clusters")
    if result.run_dir:
        lines.append(f"  report: {result.run_dir / 'report.md'}")
    if stored:
        lines.append("  loaded: " + ", ".join(f"{k} {v}" for k, v in result.counts.items()))
    print("\n".join(lines))


def cmd_evaluate(args) -> int:
    from pipeline.evaluation.command import evaluate_files

    config = _config(args)
    evaluate_files(
        args.train,
        args.test,
        args.predictions,
        args.recommendations,
        args.movies_from,
        args.k,
        config,
    )
    return 0


def cmd_synth(args) -> int:
    from pipeline.data.synth import SynthConfig, generate

    summary = generate(
        SynthConfig(
            n_users=args.users, n_movies=args.movies, n_ratings=args.ratings, seed=args.seed
        ),
        args.out,
    )
    print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_fetch(args) -> int:
    from pipeline.data.fetch import fetch
    from pipeline.data.source import DatasetConfig

    print(fetch(args.name, DatasetConfig(cache_dir=args.cache_dir)))
    return 0


def cmd_store(args) -> int:
    from contract.embedded import EmbeddedConfig, ensure_running, stop

    cfg = EmbeddedConfig()
    if args.action == "start":
        print(ensure_running(cfg))
    elif args.action == "stop":
        print("stopped" if stop(cfg) else "not running")
    else:
        state = cfg.state_file()
        print(state.read_text() if state.exists() else "not running")
    return 0


def cmd_token(args) -> int:
    import pymongo

    from contract import schema
    from contract.accounts import issue_token
    from contract.embedded import EmbeddedConfig, resolve_url

    url = args.mongodb_url or os.environ.get("MONGODB_URL") or ""
    mongo_url, _ = resolve_url({"MONGODB_URL": url}, EmbeddedConfig())
    client = pymongo.MongoClient(mongo_url, serverSelectionTimeoutMS=5_000)
    try:
        db = (
            client.get_default_database(default="movietime")
            if args.database is None
            else client[args.database]
        )
        pointer = db[schema.SERVING].find_one({"_id": schema.POINTER_ID}) or {}
        users = (pointer.get("collections") or {}).get(schema.USERS)
        known = (
            users is not None and db[users].find_one({"_id": args.user_id}, {"_id": 1}) is not None
        ) or db[schema.PROFILES].find_one({"_id": args.user_id}, {"_id": 1}) is not None
        if not known:
            print(
                f"error: user {args.user_id} is not in the served version (run the pipeline first?)",
                file=sys.stderr,
            )
            return 2
        print(issue_token(db, args.user_id))
    finally:
        client.close()
    return 0


def quiet_dask_logs() -> None:
    """Dask's own INFO lines (workers starting, shuffles) drown the pipeline's progress lines."""
    import dask

    dask.config.set({"logging.distributed": "error", "distributed.logging.distributed": "error"})
    import distributed  # noqa: F401  (configures its loggers on import; override them after)

    for noisy in ("distributed", "distributed.shuffle", "bokeh", "tornado"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    quiet_dask_logs()
    handlers = {
        "run": cmd_run,
        "evaluate": cmd_evaluate,
        "synth": cmd_synth,
        "fetch": cmd_fetch,
        "store": cmd_store,
        "token": cmd_token,
    }
    from pipeline.data.source import DatasetError
    from pipeline.publish.store import StoreNotAnswering

    try:
        return handlers[args.command](args)
    except (
        DatasetError
    ) as exc:  # input refused (unreadable, no valid rows) or not found: before any load
        print(f"error: {exc}", file=sys.stderr)
        if args.command == "run":
            print(
                "error: the input was refused before loading: the store was not changed and keeps serving "
                "its current version",
                file=sys.stderr,
            )
        return 2
    except StoreNotAnswering as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3

"""A small, fast sample of the bundled data for integration tests (a real MovieLens layout)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from pymongo.database import Database

from contract import schema
from tests.support.paths import BUNDLED

if TYPE_CHECKING:
    from pipeline.config import PipelineConfig


def write_sample(out: Path, max_user: int = 80, extra_movies: int = 40) -> Path:
    """Ratings of users 1..max_user, the movies they rated plus a few unrated ones, their tags and links."""
    out.mkdir(parents=True, exist_ok=True)
    ratings = pd.read_csv(BUNDLED / "ratings.csv")
    ratings = ratings[ratings.userId <= max_user]
    movies = pd.read_csv(BUNDLED / "movies.csv")
    keep = set(ratings.movieId) | set(
        movies.movieId[~movies.movieId.isin(ratings.movieId)].head(extra_movies)
    )
    movies = movies[movies.movieId.isin(keep)]
    links = pd.read_csv(BUNDLED / "links.csv", dtype={"imdbId": str})
    tags = pd.read_csv(BUNDLED / "tags.csv")
    ratings.to_csv(out / "ratings.csv", index=False)
    movies.to_csv(out / "movies.csv", index=False)
    links[links.movieId.isin(keep)].to_csv(out / "links.csv", index=False)
    tags[tags.movieId.isin(keep)].to_csv(out / "tags.csv", index=False)
    (out / "README.txt").write_text(
        "Sample of ml-latest-small for tests; see resources/ml-latest-small/README.txt\n"
    )
    return out


def pipeline_store(db):
    """A ``Store`` over ``db`` with the URL that the Dask workers use to write the user
    documents (the test servers are unauthenticated loopback ones: host and port name them)."""
    from pipeline.publish.store import Store

    host, port = db.client.address
    return Store(db, url=f"mongodb://{host}:{port}/?directConnection=true")


@dataclass(frozen=True)
class SampleRun:
    """The pipeline's output on the sample, in a template database that tests copy, never change."""

    db: Database
    config: PipelineConfig
    version: str


def sample_config(dataset, run_dir, **overrides) -> PipelineConfig:
    """The pipeline's configuration for the integration runs on samples: one Dask worker and a
    smaller rating model (2 stacking folds, 100 trees of 31 leaves at rate 0.1, against the
    defaults' 5 folds and 300 trees of 63 at 0.05: about 6 s less per run with evaluation).
    These runs test publishing, faults, the store and the API; the default rating model is
    tested by ``tests/pipeline/models/test_rating.py``, the README path and the notebook."""
    from pipeline.config import PipelineConfig
    from pipeline.runtime import DaskConfig

    rating = replace(
        PipelineConfig().rating,
        stack_folds=2,
        gbm_max_iter=100,
        gbm_max_leaf_nodes=31,
        gbm_learning_rate=0.1,
    )
    settings = {"rating": rating, "dask": DaskConfig(n_workers=1), **overrides}
    return PipelineConfig(dataset=str(dataset), run_dir=str(run_dir), **settings)


def load_sample(db, tmp: Path) -> SampleRun:
    """Run the real pipeline (no evaluation, one Dask worker) on a sample into ``db``."""
    from pipeline.publish.store import new_version
    from pipeline.run import run
    from pipeline.runtime import dask_client

    config = sample_config(write_sample(tmp / "ml-sample"), tmp / "runs", evaluate=False)
    with dask_client(config.dask):
        return SampleRun(db, config, run(config, pipeline_store(db), new_version()).version)


def copy_database(source: Database, target: Database) -> None:
    """Every collection of ``source``, its documents and its indexes, into ``target``."""
    for name in source.list_collection_names():
        docs = list(source[name].find())
        if docs:
            target[name].insert_many(docs, ordered=False)
        for index, info in source[name].index_information().items():
            if index != "_id_":
                options = {k: v for k, v in info.items() if k not in ("key", "v", "ns")}
                target[name].create_index(info["key"], name=index, **options)


@contextlib.contextmanager
def sample_database(sample: SampleRun, prefix: str):
    """A fresh database ``<prefix>_<random>`` holding a copy of the sample run's output (2 s,
    where running the pipeline again takes 15); yields ``(db, config, version)`` and drops the
    database afterwards."""
    client = sample.db.client
    db = client.get_database(f"{prefix}_{uuid.uuid4().hex[:8]}")
    try:
        copy_database(sample.db, db)
        yield db, sample.config, sample.version
    finally:
        client.drop_database(db.name)


def run_argv(dataset: Path, database: str, run_dir: Path, *extra: str) -> list[str]:
    """``python -m pipeline -q run`` of ``dataset`` into ``database``, without evaluation, on one
    Dask worker (the fault tests' command line)."""
    return [sys.executable, "-m", "pipeline", "-q", "run", "--dataset", str(dataset),
            "--no-evaluate", "--database", database, "--workers", "1", "--run-dir", str(run_dir),
            *extra]  # fmt: skip


def wait_for_load(
    db, proc: subprocess.Popen, old_version: str, timeout_s: float = 240.0
) -> str | None:
    """The name of the run's new ``movies`` collection once it holds documents (its load phase
    has begun, with metadata, users, the live model and the publish still to come); None if the
    run ended or ``timeout_s`` passed first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        for name in db.list_collection_names():
            parsed = schema.parse_versioned(name)
            if (
                parsed
                and parsed[0] == schema.MOVIES
                and parsed[1] != old_version
                and db[name].estimated_document_count()
            ):
                return name
        time.sleep(0.01)
    return None

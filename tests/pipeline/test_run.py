"""The whole pipeline on a sample, into a real SecantusDB server (integration)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from api.services.live import rated_entries, training_ratings
from contract import schema
from contract.live_model import LiveModel
from pipeline.config import PipelineConfig
from pipeline.publish.store import Store, new_version
from pipeline.run import run
from pipeline.runtime import DaskConfig, dask_client
from tests.support.pipeline_sample import pipeline_store, sample_config, write_sample


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return write_sample(tmp_path_factory.mktemp("sample") / "ml-sample")


@pytest.fixture(scope="module")
def config(sample, tmp_path_factory) -> PipelineConfig:
    return sample_config(sample, tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def published(mongo_client, config):
    db = mongo_client.get_database("test_pipeline_run")
    mongo_client.drop_database(db.name)
    store = pipeline_store(db)
    with dask_client(config.dask):
        first = run(config, store, new_version())
        second = run(config, store, new_version())  # a re-run: idempotent
    yield db, store, first, second
    mongo_client.drop_database(db.name)


def test_publishes_every_collection_with_expected_counts(published, sample):
    db, store, first, second = published
    ratings = pd.read_csv(sample / "ratings.csv")
    movies = pd.read_csv(sample / "movies.csv")
    pointer = store.current()
    assert pointer["version"] == second.version
    assert store.collection(schema.USERS).count_documents({}) == ratings.userId.nunique()
    assert store.collection(schema.MOVIES).count_documents({}) == len(movies)
    assert store.collection(schema.METADATA).count_documents({}) == len(movies)
    n_clusters = second.report["clusters"]["k"]
    assert store.collection(schema.CLUSTERS).count_documents({}) == n_clusters
    model = db[schema.MODELS].find_one({"_id": second.version})
    assert model["status"] == "serving"
    assert db[schema.MODELS].find_one({"_id": first.version})["status"] == "superseded"
    assert 0.5 < model["metrics"]["rating"]["model"]["rmse"] < 1.2
    assert "cluster_assigner" in model["artifacts"]


def test_rerun_is_idempotent(published):
    _, store, first, second = published
    assert first.counts == second.counts
    assert store.current()["previous"]["version"] == first.version
    # the same data and seed give the same lists in both versions
    prev = store.db[schema.versioned_name(schema.USERS, first.version)]
    for uid in (1, 7, 30):
        now = store.collection(schema.USERS).find_one({"_id": uid})
        assert [t["movieId"] for t in prev.find_one({"_id": uid})["top"]] == [
            t["movieId"] for t in now["top"]
        ]


def test_user_documents(published, sample):
    _, store, _, _ = published
    ratings = pd.read_csv(sample / "ratings.csv")
    users = store.collection(schema.USERS)
    for uid in (1, 15, 42):
        doc = users.find_one({"_id": uid})
        rated = set(ratings.movieId[ratings.userId == uid])
        assert "ratings" not in doc  # stored once: packed
        entries = rated_entries(doc)
        assert {r["movieId"] for r in entries} == rated
        assert doc["stats"]["n_ratings"] == len(rated)
        top = doc["top"]
        assert len(top) == 50
        ids = [t["movieId"] for t in top]
        assert len(set(ids)) == 50 and not rated & set(ids)  # unique, nothing already seen
        assert all(t["score"] > 0 for t in top)  # list order is the rank order
        assert all(0.5 <= t["predicted_rating"] <= 5.0 for t in top)
        for t in top:
            if t["reason"]["kind"] == "because_you_liked":
                assert t["reason"]["movieId"] in rated and t["reason"]["text"].startswith(
                    "Because you liked"
                )
        ts = [r["timestamp"] for r in entries]
        assert ts == sorted(ts, reverse=True)  # activity, newest first
        ids, values = training_ratings(doc)  # the re-score's view: same order
        assert ids.tolist() == [r["movieId"] for r in entries]
        assert values.tolist() == [r["rating"] for r in entries]
        expected = ratings[ratings.userId == uid].set_index("movieId")
        assert all(
            expected.rating[r["movieId"]] == r["rating"]
            and expected.timestamp[r["movieId"]] == r["timestamp"]
            for r in entries
        )


def test_movie_and_metadata_documents(published):
    _, store, _, _ = published
    toy = store.collection(schema.MOVIES).find_one({"_id": 1})
    assert toy["name"] == "Toy Story" and toy["year"] == 1995 and "Animation" in toy["genres"]
    assert toy["tmdbId"] == 862 and toy["imdbId"] == 114709
    assert toy["poster_url"].startswith("https://image.tmdb.org/")
    assert len(toy["similar"]) > 0 and all(s["movieId"] != 1 for s in toy["similar"])
    assert toy["search"]["key"] == "toy story"
    # the terms a reason may show: shared with other movies, the specific before the genres
    assert {g.lower() for g in toy["genres"]} <= set(toy["terms"])
    assert "pixar" in toy["terms"]
    meta = store.collection(schema.METADATA).find_one({"_id": 1})
    assert meta["runtime"] == 81 and meta["overview"] and meta["source"] != "movielens"
    assert "pixar" in " ".join(meta["tags"]).lower() or meta["keywords"]
    assert meta["collection"] == "Toy Story Collection"
    assert meta["companies"] == ["Pixar Animation Studios"]
    bare = store.collection(schema.METADATA).find_one({"source": "movielens"})
    assert bare is not None and bare["title"]  # movies without TMDB rows still load
    # the live model carries the same similar lists, for request-time reasons without store reads
    live = LiveModel.from_docs(store.collection(schema.LIVE_MODEL).find({}))
    docs = list(
        store.collection(schema.MOVIES).find({"_id": {"$in": [1, 2, 260, 2571]}}, {"similar": 1})
    )
    lists = live.similar_lists([d["_id"] for d in docs])
    for d in docs:
        assert [m for m, _ in lists[d["_id"]]] == [e["movieId"] for e in d["similar"]]
        assert [sc for _, sc in lists[d["_id"]]] == pytest.approx(
            [e["score"] for e in d["similar"]], abs=1e-6
        )


def test_served_collections_have_their_indexes(published):
    _, store, _, _ = published
    for name in (schema.USERS, schema.MOVIES, schema.METADATA):
        have = set(store.collection(name).index_information())
        want = {spec.name for spec in schema.INDEXES[name]}
        assert want <= have, (name, want - have)


def test_cluster_documents(published):
    _, store, _, second = published
    clusters = list(store.collection(schema.CLUSTERS).find())
    assert sum(c["size"] for c in clusters) == store.collection(schema.USERS).count_documents({})
    for c in clusters:
        assert len(c["persona"]) == 3 and c["top_movies"]
        assert store.collection(schema.USERS).count_documents({"cluster": c["_id"]}) == c["size"]


def test_evaluation_report_written(published):
    db, _, first, second = published
    for f in (
        "metrics.json",
        "report.md",
        "error_distribution.png",
        "rmse_by_activity.png",
        "clusters.png",
        "diversity_curve.png",
    ):
        assert (first.run_dir / f).stat().st_size > 0
    topn = first.report["topn"]
    curve = topn["diversity_curve"]
    assert [c["diversity"] for c in curve] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    # diversity 0 is the evaluated list itself; more of it gives lists of more varied genres
    assert curve[0]["ndcg@10"] == pytest.approx(topn["model"]["ndcg@10"])
    assert curve[0]["intra_list_diversity"] == pytest.approx(topn["model"]["diversity"])
    assert curve[-1]["intra_list_diversity"] > curve[0]["intra_list_diversity"]
    text = (first.run_dir / "report.md").read_text()
    assert "More variety on request" in text
    # watching together: every size and list, scored on the held-out part
    groups = first.report["groups"]
    assert {(g["size"], g["by"]) for g in groups} == {
        (s, by) for s in (2, 3, 4) for by in ("no-misery", "average", "least-misery", "popularity")
    }
    assert all(g["groups"] > 0 and 0 <= g["least@10"] <= g["ndcg@10"] <= 1 for g in groups)
    assert "Watching together" in text
    # reasons: the share of the published lists' first ten whose reason shows its evidence
    reasons = first.report["reasons"]
    assert reasons["items"] == sum(k["items"] for k in reasons["by_kind"].values()) > 0
    assert 0 < reasons["share"] <= 1 and "Reasons with their evidence" in text
    published_metrics = db[schema.MODELS].find_one({"_id": second.version})["metrics"]
    assert published_metrics["reasons"] == second.report["reasons"]
    assert published_metrics["groups"] == second.report["groups"]


def test_runs_on_an_existing_cluster_by_scheduler_address(mongo_client, config):
    from distributed import LocalCluster

    db = mongo_client.get_database("test_pipeline_cluster")
    mongo_client.drop_database(db.name)
    try:
        with LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster:
            cfg = replace(
                config, evaluate=False, dask=DaskConfig(scheduler=cluster.scheduler_address)
            )
            with dask_client(cfg.dask) as client:
                assert len(client.scheduler_info()["workers"]) == 2
                result = run(cfg, Store(db), new_version())
        assert Store(db).current()["version"] == result.version
        assert Store(db).collection(schema.USERS).count_documents({}) == result.counts[schema.USERS]
    finally:
        mongo_client.drop_database(db.name)


def test_large_data_profile_only_above_the_threshold():
    cfg = PipelineConfig(large_data_ratings=1000)
    assert cfg.for_size(1000) is cfg
    big = cfg.for_size(1001)
    assert (
        big.rating.stack_folds == 1
        and big.rating.max_gbm_rows == 500_000
        and (big.rating.gbm_max_iter, big.rating.gbm_max_leaf_nodes) == (150, 31)
        and big.rating.gbm_learning_rate == 0.1
        and big.topn.max_items == 15_000
        and big.topn.score_neighbors == 2_000
        and big.topn.positive_neighbors == 500
    )
    assert big.rating.mf == cfg.rating.mf and big.split == cfg.split

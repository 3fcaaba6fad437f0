"""The soak benchmark's core (``benchmarks.soak``) for a few seconds: the pipeline's output on a
sample in a real SecantusDB, served by a real gunicorn, 4 keep-alive clients reading and writing
(with bursts of concurrent ratings of one user and movie). Asserts the data-safety checks, not
timings; then that the checks do catch a missing, a duplicated and an inconsistent event."""

from __future__ import annotations

import time
import urllib.parse

import pytest

from benchmarks.api_load import ServerConfig
from benchmarks.soak import SoakConfig, check_store, soak
from contract import schema
from tests.support.pipeline_sample import sample_database


def with_database(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="module")
def small_store(sample_run, mongo_url):
    with sample_database(sample_run, "test_soak") as (db, _, _):
        yield with_database(mongo_url, db.name), db


def test_soak_stores_every_acknowledged_event_exactly_once(small_store, tmp_path):
    url, db = small_store
    cfg = SoakConfig(
        clients=4, procs=2, seconds=2.5, warmup_s=0.5, burst_every_s=0.25, spawn_allowance_s=1.5
    )
    server = ServerConfig(workers=2, threads=4, env=(("GUNICORN_CMD_ARGS", "--no-control-socket"),))
    started = time.monotonic()
    result = soak(url, cfg, server, tmp_path / "gunicorn.log", n_writers=6, n_onboard=2, n_hot=2)
    assert time.monotonic() - started < 40

    o, s = result.outcome, result.safety
    assert result.errors == 0, (o.errors, o.samples, result.log_tail)
    assert len(result.writers.users) == 8 and len(result.writers.onboarded) == 2
    assert all(
        o.sent[k] > 0
        for k in (
            "GET recommendation",
            "GET search",
            "GET similar",
            "POST ratings",
            "POST feedback",
            "POST ratings, burst",
        )
    ), o.sent
    assert s.acknowledged >= 20 and s.stored == s.acknowledged
    assert s.duplicates == s.missing == s.unacked_errored == s.unacked_unexplained == 0
    assert s.rev_mismatch == s.replay_mismatch == s.ack_position_mismatch == 0
    assert s.hot_pairs == 2 and s.hot_writes >= 8 and s.hot_violations == 0
    assert s.max_in_flight >= 2  # the burst ratings of one user and movie did overlap
    assert result.ok

    # the checks catch what they look for: drop one acknowledged event, store another twice,
    # and give a hot pair a rating that is not its last event's
    profiles = db[schema.PROFILES]
    hot = result.hot
    uid, _m, _t, _r, dropped, *_ = next(a for a in o.acks if (a[0], a[1]) not in hot)
    profiles.update_one({"_id": uid}, {"$pull": {"events": {"id": dropped}}})
    # not a hot pair's event: stored again at the end, it would become that pair's last event
    twice = next(a for a in o.acks if a[0] != uid and (a[0], a[1]) not in hot)
    event = next(e for e in profiles.find_one({"_id": twice[0]})["events"] if e["id"] == twice[4])
    profiles.update_one({"_id": twice[0]}, {"$push": {"events": event}})
    hot_uid, hot_mid = hot[0]
    profiles.update_one({"_id": hot_uid}, {"$set": {f"ratings.{hot_mid}": 0.25}})
    broken = check_store(url, result.writers, hot, o)
    assert broken.missing == 1 and broken.duplicates == 1 and broken.hot_violations == 1
    assert broken.rev_mismatch == 2 and broken.replay_mismatch >= 1 and broken.failures > 0

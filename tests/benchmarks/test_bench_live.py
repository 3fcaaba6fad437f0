"""``benchmarks.live_latency`` on a tiny store, to keep the script from rotting: the sessions
in-process (WSGI) and over HTTP (gunicorn, server times from the access log), the in-process
re-score timings and the cold start, and the printed tables. No assertion on timings."""

from __future__ import annotations

import pytest

from api.settings import Settings
from benchmarks import live_latency
from benchmarks.api_load import gunicorn
from tests.support.pipeline_sample import sample_database


@pytest.fixture(scope="module")
def served(sample_run, mongo_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench-live")
    with sample_database(sample_run, "test_bench_live") as (db, _, _):
        settings = Settings(mongodb_url=mongo_url, database=db.name)
        facts = live_latency.read_facts(settings)
        yield {"settings": settings, "facts": facts, "tmp": tmp, "url": mongo_url, "name": db.name}


def _steps(rec: live_latency.Recorder) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for s in rec.samples:
        out[(s.group, s.step)] = out.get((s.group, s.step), 0) + 1
    return out


def test_sessions_in_process_rescore_and_cold_start(served, capsys):
    settings, facts = served["settings"], served["facts"]
    assert facts.genres and facts.popular and len(facts.users) == 80
    assert not any(g.startswith("(") for g in facts.genres)
    plan = live_latency.Plan(facts.genres, facts.popular, n=5, events=2)
    sized = live_latency.pick_sized(facts.users, [20, 200], per_size=1)
    assert len(sized) == 2 and all(len(us) == 1 for us in sized.values())
    dataset = [u for u in facts.users if all(u not in us for us in sized.values())][:2]
    tokens = live_latency.issue_tokens(settings, dataset)
    app = live_latency.wsgi_app(settings)
    try:
        rec = live_latency.run_sessions(
            lambda: live_latency.WSGICaller(app),
            plan,
            2,
            [(live_latency.size_group(facts.users[u]), u, tokens[u]) for u in dataset],
            seed=0,
        )
    finally:
        app.config["movietime.store"].close()
    assert not rec.errors, rec.errors
    assert not rec.violations, rec.violations
    steps = _steps(rec)
    assert (
        steps[(live_latency.NEW_USERS, live_latency.ONBOARD)] == 2
        and steps[(live_latency.NEW_USERS, live_latency.FIRST_GET)] == 2
    )
    assert (
        steps[(live_latency.NEW_USERS, live_latency.RESCORE_GET)] == 4
        and steps[(live_latency.NEW_USERS, live_latency.REPEAT_GET)] == 4
    )
    dataset_rescores = sum(
        n
        for (g, step), n in steps.items()
        if g != live_latency.NEW_USERS and step == live_latency.RESCORE_GET
    )
    assert dataset_rescores == 4
    assert rec.checks["every movie rated or reacted to is gone from the next list"] == [8, 0]
    assert all(s.server_ms is not None for s in rec.samples)  # in-process: server = wall
    assert set(dataset) <= rec.touched and len(rec.touched) == 4

    inproc = live_latency.rescore_in_process(settings, plan, sized, new_users=1, repeats=3, seed=0)
    steps = _steps(inproc)
    for group in [*sized, live_latency.NEW_USERS]:
        for step in (live_latency.READ_USER, live_latency.COMPUTE, live_latency.LIVE_ITEMS):
            assert steps[(group, step)] == 3
    assert not inproc.violations

    cold = live_latency.cold_start(settings, dataset[0], repeats=1)
    assert all(len(v) == 1 for v in cold.values())

    live_latency.print_table("sessions", rec)
    live_latency.print_table(
        "in-process",
        inproc,
        server=False,
        steps=(live_latency.READ_USER, live_latency.COMPUTE, live_latency.LIVE_ITEMS),
    )
    live_latency.print_checks(rec)
    lines = live_latency.target_lines("in-process WSGI", rec)
    out = capsys.readouterr().out
    assert f"| {live_latency.NEW_USERS} | {live_latency.ONBOARD} | 2 |" in out
    assert f"| {live_latency.NEW_USERS} | {live_latency.LIVE_ITEMS} | 3 |" in out
    assert any(live_latency.NEW_USERS in line for line in lines)


def test_http_sessions_get_server_times_from_the_access_log(served):
    settings, facts, tmp = served["settings"], served["facts"], served["tmp"]
    plan = live_latency.Plan(facts.genres, facts.popular, n=5, events=1)
    user = sorted(facts.users)[-1]
    tokens = live_latency.issue_tokens(settings, [user])
    access_log = tmp / "access.log"
    srv = live_latency.server_config(
        1, "gthread", 2, access_log, env={"MOVIETIME_DATABASE": served["name"]}
    )
    with gunicorn(srv, served["url"], f"/user/{user}/recommendation?n=5", tmp / "gunicorn.log") as (
        port,
        _,
    ):
        warm, firsts = live_latency.warm_workers(port, plan, 1, access_log, seed=0)
        assert not warm.errors and len(firsts) == 1
        seq = iter(range(100))
        rec = live_latency.run_sessions(
            lambda: live_latency.HTTPCaller(port, f"t.{next(seq)}"),
            plan,
            1,
            [(live_latency.size_group(facts.users[user]), user, tokens[user])],
            seed=0,
        )
    times, lines = live_latency.read_access_log(access_log)
    rec.fill_server_times(times)
    assert not rec.errors and not rec.violations
    assert rec.requests == (2 + 3) + (
        1 + 3
    )  # onboard, first GET, a cycle (write, 2 GETs); precomputed GET, a cycle
    # gunicorn's %(D)s ends after the response is closed (wall clock), the client's timer at the last
    # byte: the server's figure may run a little past the client's, never by much
    assert all(s.server_ms is not None and s.server_ms <= s.wall_ms + 5.0 for s in rec.samples), [
        (s.server_ms, s.wall_ms)
        for s in rec.samples
        if s.server_ms is None or s.server_ms > s.wall_ms
    ]
    assert any(rid == "-" for rid, *_ in lines)  # the probe, without X-Bench-Id

"""Onboarding, live feedback and tokens over HTTP (WebTest on the real app) against the
pipeline's real output in a real SecantusDB; and the next pipeline run training on the events."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
import webtest

from api.app import create_app
from api.http.auth import issue_token
from api.services.live import NEW_USER_BASE, rated_entries
from api.settings import Settings
from contract import schema
from pipeline.publish.store import new_version
from pipeline.run import run
from pipeline.runtime import dask_client
from tests.support.paths import REPO
from tests.support.pipeline_sample import pipeline_store, sample_database

JSON = "application/json; charset=utf-8"
TOY_STORY, TOY_STORY_2 = 1, 3114
STAR_WARS = (260, 1196, 1210)
MATRIX = 2571
SCIFI_FANS = {
    "genres": ["Sci-Fi", "Action", "Adventure"],
    "ratings": [{"movieId": m, "rating": 5} for m in (*STAR_WARS, MATRIX)],
}


@pytest.fixture(scope="module")
def served(sample_run, mongo_url):
    with sample_database(sample_run, "test_live") as (db, config, version):
        yield {"db": db, "url": mongo_url, "version": version, "config": config}


@pytest.fixture(scope="module")
def app(served):
    wsgi = create_app(Settings(mongodb_url=served["url"], database=served["db"].name))
    yield webtest.TestApp(wsgi)
    wsgi.config["movietime.store"].close()


def error(res, status: int, code: str) -> str:
    assert res.status_int == status, res.text
    assert res.headers["Content-Type"] == JSON
    assert res.json["error"]["code"] == code, res.json
    assert "Traceback" not in res.text
    return res.json["error"]["message"]


def onboard(app, body=SCIFI_FANS, **kw) -> dict:
    res = app.post_json("/users", body, **kw)
    assert res.status_int == 201, res.text
    return res.json


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def ids(res_or_body) -> list[int]:
    body = res_or_body.json if hasattr(res_or_body, "json") else res_or_body
    return [item["movieId"] for item in body["recommendations"]]


def full_list(app, user_id: int) -> list[int]:
    return ids(app.get(f"/user/{user_id}/recommendation", {"n": 50}))


def all_rated(app, user_id: int) -> set[int]:
    first = app.get(f"/user/{user_id}/rated", {"per_page": 100}).json
    pages = [first] + [
        app.get(f"/user/{user_id}/rated", {"per_page": 100, "page": p}).json
        for p in range(2, first["pages"] + 1)
    ]
    return {r["movieId"] for page in pages for r in page["items"]}


def rank(items: list[int], movie: int) -> int:
    return items.index(movie) if movie in items else len(items) + 1


# --- onboarding ------------------------------------------------------------------------------


def test_onboarding_answers_user_token_cluster_and_a_personal_list(app, served):
    body = onboard(app)
    assert body["userId"] > NEW_USER_BASE
    assert body["token"].startswith(f"mt_{body['userId']}_")
    clusters = {c["clusterId"] for c in app.get("/clusters").json["clusters"]}
    assert body["cluster"] in clusters
    assert body["model_version"] == served["version"]
    recs = body["recommendations"]
    assert len(recs) == 10
    assert not set(ids(body)) & {*STAR_WARS, MATRIX}  # rated movies are not recommended
    scifi = sum("Sci-Fi" in r["genres"] for r in recs)
    assert scifi >= 6, [(r["title"], r["genres"]) for r in recs]  # mostly science fiction
    assert all(0.5 <= r["predicted_rating"] <= 5 for r in recs)
    assert any(
        r["reason"]["kind"] == "because_you_liked"
        and r["reason"]["movieId"] in (*STAR_WARS, MATRIX)
        for r in recs
    )
    # each reason shows what it rests on: a liked movie's shared terms, a picked genre
    for r in recs:
        if r["reason"]["kind"] == "genre_match":
            assert r["reason"]["evidence"] == [g for g in SCIFI_FANS["genres"] if g in r["genres"]]
    liked = [r for r in recs if r["reason"]["kind"] == "because_you_liked"]
    assert any(r["reason"].get("evidence") for r in liked)
    assert all(
        r["reason"]["text"].count(": also ") == bool(r["reason"].get("evidence")) for r in liked
    )
    # the same list on the GET route, labelled live
    res = app.get(f"/user/{body['userId']}/recommendation")
    assert res.json["source"] == "live" and ids(res) == ids(body)


def test_different_answers_give_different_lists(app):
    scifi = onboard(app)
    romance = onboard(
        app, {"genres": ["Romance", "Comedy", "Drama"], "age": "25-34", "occupation": "writer"}
    )
    assert len(set(ids(scifi)) & set(ids(romance))) <= 3
    genres = [set(r["genres"]) for r in romance["recommendations"]]
    assert all(g & {"Romance", "Comedy", "Drama"} for g in genres)


def test_onboarding_stores_the_questionnaire_and_hashes_the_token(app, served):
    body = onboard(app, {**SCIFI_FANS, "age": "35-44", "occupation": "PROGRAMMER"})
    db = served["db"]
    profile = db[schema.PROFILES].find_one({"_id": body["userId"]})
    assert profile["genres"] == ["Sci-Fi", "Action", "Adventure"]
    assert profile["age"] == "35-44" and profile["occupation"] == "programmer"
    assert [e["movieId"] for e in profile["events"]] == [*STAR_WARS, MATRIX]
    account = db[schema.ACCOUNTS].find_one({"_id": body["userId"]})
    assert body["token"] not in str(account)
    assert len(account["token_sha256"]) == 64


@pytest.mark.parametrize(
    "payload, status, code, words",
    [
        ({"genres": ["Sci-Fi", "Action"]}, 400, "bad_request", "3 to 20 items"),
        ({"genres": ["Sci-Fi", "Action", "Space Opera"]}, 400, "bad_request", "unknown genre"),
        ({"genres": ["Sci-Fi", "Action", "sci-fi"]}, 400, "bad_request", "repeat"),
        (
            {"genres": ["Sci-Fi", "Action", "Drama"], "ratings": [{"movieId": 1, "rating": 5}] * 2},
            400,
            "bad_request",
            "twice",
        ),
        (
            {
                "genres": ["Sci-Fi", "Action", "Drama"],
                "ratings": [{"movieId": 99999999, "rating": 5}],
            },
            404,
            "not_found",
            "99999999",
        ),
        (
            {"genres": ["Sci-Fi", "Action", "Drama"], "ratings": [{"movieId": 1, "rating": 4.3}]},
            400,
            "bad_request",
            "multiple of 0.5",
        ),
        ({"genres": ["Sci-Fi", "Action", "Drama"], "age": "99"}, 400, "bad_request", "age"),
        (
            {"genres": ["Sci-Fi", "Action", "Drama"], "admin": True},
            400,
            "bad_request",
            "unknown field",
        ),
        ({"genres": {"$ne": None}}, 400, "bad_request", "$"),
        ({"genres": "Sci-Fi,Action,Drama"}, 400, "bad_request", "array"),
    ],
)
def test_onboarding_rejects_bad_answers(app, payload, status, code, words):
    assert words in error(app.post_json("/users", payload, expect_errors=True), status, code)


# --- live feedback -----------------------------------------------------------------------------


def test_new_user_rates_five_movies_and_the_list_follows(app, served):
    """The issue's end-to-end case: rated movies leave, similar movies come up, predictions move."""
    user = onboard(app, {"genres": ["Animation", "Children", "Comedy"]})
    uid, token = user["userId"], user["token"]
    before = full_list(app, uid)
    similar = [
        m["movieId"] for m in app.get(f"/movie/{TOY_STORY}/similar", {"n": 20}).json["similar"]
    ]
    to_rate = [TOY_STORY, *[m for m in before if m != TOY_STORY and m not in similar][:4]]
    assert len(to_rate) == 5
    for movie in to_rate:
        res = app.post_json(
            f"/user/{uid}/ratings", {"movieId": movie, "rating": 5}, headers=auth(token)
        )
        assert res.json["rating"] == 5.0 and res.json["movieId"] == movie
    after = full_list(app, uid)
    assert not set(after) & set(to_rate)
    assert rank(after, similar[0]) < rank(
        before, similar[0]
    )  # Toy Story's nearest neighbour moved up
    rated = app.get(f"/user/{uid}/rated", {"per_page": 100}).json
    assert sorted(r["movieId"] for r in rated["items"]) == sorted(to_rate)
    reasons = [r["reason"] for r in app.get(f"/user/{uid}/recommendation").json["recommendations"]]
    assert any(r["kind"] == "because_you_liked" and r["movieId"] in to_rate for r in reasons)


def test_feedback_of_a_data_set_user(app, served):
    uid = 7
    token = issue_token(served["db"], uid)
    precomputed = app.get(f"/user/{uid}/recommendation", {"n": 50}).json
    assert precomputed["source"] == "precomputed"
    top = ids(precomputed)
    liked, hidden, disliked = top[0], top[1], top[2]
    for movie, action in ((liked, "like"), (hidden, "not_interested"), (disliked, "dislike")):
        res = app.post_json(
            f"/user/{uid}/feedback", {"movieId": movie, "action": action}, headers=auth(token)
        )
        assert res.json["action"] == action and res.json["event"]["type"] == action
    live = app.get(f"/user/{uid}/recommendation", {"n": 50}).json
    assert live["source"] == "live"
    assert not {liked, hidden, disliked} & set(ids(live))
    rated = all_rated(app, uid)
    neighbours = [
        m["movieId"] for m in app.get(f"/movie/{liked}/similar", {"n": 20}).json["similar"]
    ]
    candidates = [m for m in neighbours if m not in rated | {liked, hidden, disliked}][:3]
    assert candidates
    improved = [rank(ids(live), m) < rank(top, m) for m in candidates]
    assert sum(improved) >= 2, (
        candidates,
        [rank(top, m) for m in candidates],
        [rank(ids(live), m) for m in candidates],
    )


def test_a_new_rating_changes_predicted_ratings(app):
    user = onboard(app)
    uid, token = user["userId"], user["token"]
    first = {
        r["movieId"]: r["predicted_rating"]
        for r in app.get(f"/user/{uid}/recommendation", {"n": 50}).json["recommendations"]
    }
    app.post_json(
        f"/user/{uid}/ratings", {"movieId": TOY_STORY, "rating": 0.5}, headers=auth(token)
    )
    second = {
        r["movieId"]: r["predicted_rating"]
        for r in app.get(f"/user/{uid}/recommendation", {"n": 50}).json["recommendations"]
    }
    common = set(first) & set(second)
    assert common and sum(first[m] != second[m] for m in common) >= len(common) // 2


def test_rating_again_replaces_and_every_event_is_kept(app, served):
    user = onboard(app, {"genres": ["Drama", "War", "Crime"]})
    uid, token = user["userId"], user["token"]
    for value in (3, 4.5, 2):
        app.post_json(
            f"/user/{uid}/ratings", {"movieId": TOY_STORY, "rating": value}, headers=auth(token)
        )
    rated = app.get(f"/user/{uid}/rated").json["items"]
    assert [(r["movieId"], r["rating"]) for r in rated] == [(TOY_STORY, 2.0)]
    profile = served["db"][schema.PROFILES].find_one({"_id": uid})
    assert [e["rating"] for e in profile["events"]] == [3.0, 4.5, 2.0]
    assert profile["rev"] == 3


def test_concurrent_ratings_end_in_one_consistent_rating(app, served):
    user = onboard(app)
    uid, token = user["userId"], user["token"]
    wsgi = app.app
    acked: list[str] = []
    lock = threading.Lock()

    def rate(values):
        client = webtest.TestApp(wsgi)
        for v in values:
            res = client.post_json(
                f"/user/{uid}/ratings", {"movieId": TOY_STORY, "rating": v}, headers=auth(token)
            )
            with lock:
                acked.append(res.json["event"]["id"])

    threads = [threading.Thread(target=rate, args=([0.5 * (k + 1)] * 10,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    profile = served["db"][schema.PROFILES].find_one({"_id": uid})
    events = [e for e in profile["events"] if e["movieId"] == TOY_STORY]
    assert sorted(e["id"] for e in events) == sorted(acked)  # each acknowledged event once
    assert len(acked) == 40 and profile["rev"] == 40 + len(SCIFI_FANS["ratings"])
    assert profile["ratings"][str(TOY_STORY)] == events[-1]["rating"]  # the last event's rating


def test_a_write_retried_with_its_idempotency_key_is_applied_once(app, served):
    user = onboard(app)
    uid, token = user["userId"], user["token"]
    first = app.post_json(
        f"/user/{uid}/feedback",
        {"movieId": TOY_STORY, "action": "like"},
        headers={**auth(token), "Idempotency-Key": "k-1"},
    ).json
    # the same write again (its answer was lost), concurrently and then alone: the first answer each time
    wsgi = app.app
    answers = []

    def again():
        res = webtest.TestApp(wsgi).post_json(
            f"/user/{uid}/feedback",
            {"movieId": TOY_STORY, "action": "like"},
            headers={**auth(token), "Idempotency-Key": "k-1"},
        )
        answers.append(res.json)

    threads = [threading.Thread(target=again) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [first] * 4
    other = app.post_json(
        f"/user/{uid}/feedback",
        {"movieId": TOY_STORY, "action": "like"},
        headers={**auth(token), "Idempotency-Key": "k-2"},
    ).json  # a new key: a new event
    assert other["rev"] == first["rev"] + 1 and other["event"]["id"] != first["event"]["id"]
    profile = served["db"][schema.PROFILES].find_one({"_id": uid})
    assert [e["id"] for e in profile["events"][-2:]] == [first["event"]["id"], other["event"]["id"]]
    assert profile["rev"] == len(profile["events"])
    # a key reused for another write is refused, and nothing is written
    res = app.post_json(
        f"/user/{uid}/ratings",
        {"movieId": TOY_STORY, "rating": 4},
        headers={**auth(token), "Idempotency-Key": "k-1"},
        expect_errors=True,
    )
    assert "another request" in error(res, 422, "idempotency_key_reused")
    for bad in ("", "a b", "x" * 65, "k\u00e9"):
        res = app.post_json(
            f"/user/{uid}/ratings",
            {"movieId": TOY_STORY, "rating": 4},
            headers={**auth(token), "Idempotency-Key": bad},
            expect_errors=True,
        )
        assert "Idempotency-Key" in error(res, 400, "bad_request")
    assert served["db"][schema.PROFILES].find_one({"_id": uid})["rev"] == profile["rev"]


# --- who may write -------------------------------------------------------------------------------


def test_writes_need_the_users_own_token(app, served):
    a, b = onboard(app), onboard(app)
    path = f"/user/{a['userId']}/ratings"
    body = {"movieId": TOY_STORY, "rating": 4}
    assert "Bearer" in error(app.post_json(path, body, expect_errors=True), 401, "unauthorized")
    res = app.post_json(
        path, body, headers={"Authorization": "Bearer nonsense"}, expect_errors=True
    )
    error(res, 401, "unauthorized")
    assert res.headers["WWW-Authenticate"].startswith("Bearer")
    forged = a["token"][:-4] + ("AAAA" if not a["token"].endswith("AAAA") else "BBBB")
    error(app.post_json(path, body, headers=auth(forged), expect_errors=True), 401, "unauthorized")
    error(app.post_json(path, body, headers=auth(b["token"]), expect_errors=True), 403, "forbidden")
    path = f"/user/{a['userId']}/feedback"
    error(
        app.post_json(
            path, {"movieId": 1, "action": "like"}, headers=auth(b["token"]), expect_errors=True
        ),
        403,
        "forbidden",
    )
    # a data-set user has no token until an operator issues one; a new one revokes the old one
    error(
        app.post_json("/user/3/ratings", body, headers=auth(a["token"]), expect_errors=True),
        403,
        "forbidden",
    )
    first = issue_token(served["db"], 3)
    second = issue_token(served["db"], 3)
    error(
        app.post_json("/user/3/ratings", body, headers=auth(first), expect_errors=True),
        401,
        "unauthorized",
    )
    assert app.post_json("/user/3/ratings", body, headers=auth(second)).status_int == 200


def test_failed_authentications_are_rate_limited(served):
    wsgi = create_app(
        Settings(mongodb_url=served["url"], database=served["db"].name, auth_max_failures=3)
    )
    client = webtest.TestApp(wsgi, extra_environ={"REMOTE_ADDR": "10.0.0.9"})
    body = {"movieId": TOY_STORY, "rating": 4}
    for _ in range(3):
        error(
            client.post_json(
                "/user/3/ratings", body, headers=auth("mt_3_" + "x" * 43), expect_errors=True
            ),
            401,
            "unauthorized",
        )
    res = client.post_json(
        "/user/3/ratings", body, headers=auth("mt_3_" + "x" * 43), expect_errors=True
    )
    error(res, 429, "too_many_requests")
    assert int(res.headers["Retry-After"]) >= 1
    other = webtest.TestApp(wsgi, extra_environ={"REMOTE_ADDR": "10.0.0.10"})
    error(
        other.post_json(
            "/user/3/ratings", body, headers=auth("mt_3_" + "x" * 43), expect_errors=True
        ),
        401,
        "unauthorized",
    )
    wsgi.config["movietime.store"].close()


def test_bad_bodies(app):
    user = onboard(app)
    path, headers = f"/user/{user['userId']}/ratings", auth(user["token"])
    cases = [
        ({"movieId": {"$gt": 0}, "rating": 5}, 400, "bad_request"),
        ({"movieId": TOY_STORY, "rating": {"$where": "1"}}, 400, "bad_request"),
        ({"movieId": TOY_STORY, "rating": 6}, 400, "bad_request"),
        ({"movieId": TOY_STORY, "rating": True}, 400, "bad_request"),
        ({"movieId": "1", "rating": 4}, 400, "bad_request"),
        ({"movieId": TOY_STORY}, 400, "bad_request"),
        ({"movieId": 99999999, "rating": 4}, 404, "not_found"),
    ]
    for payload, status, code in cases:
        error(app.post_json(path, payload, headers=headers, expect_errors=True), status, code)
    raw = {**headers, "Content-Type": "application/json"}
    error(
        app.post(path, b'{"movieId": 1, "rating": 4', headers=raw, expect_errors=True),
        400,
        "bad_request",
    )
    error(
        app.post(
            path, b'{"movieId": 1, "movieId": 2, "rating": 4}', headers=raw, expect_errors=True
        ),
        400,
        "bad_request",
    )
    error(
        app.post(path, b'{"movieId": 1, "rating": NaN}', headers=raw, expect_errors=True),
        400,
        "bad_request",
    )
    error(app.post(path, b"\xff\xfe", headers=raw, expect_errors=True), 400, "bad_request")
    error(app.post(path, b"", headers=raw, expect_errors=True), 400, "bad_request")
    error(
        app.post(
            path,
            b"movieId=1&rating=4",
            headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
            expect_errors=True,
        ),
        415,
        "unsupported_media_type",
    )
    big = b'{"movieId": 1, "rating": 4, "pad": "' + b"x" * 70_000 + b'"}'
    error(app.post(path, big, headers=raw, expect_errors=True), 413, "payload_too_large")
    error(
        app.post_json(
            f"/user/{user['userId']}/feedback",
            {"movieId": 1, "action": "love"},
            headers=headers,
            expect_errors=True,
        ),
        400,
        "bad_request",
    )
    error(app.get(f"/user/{user['userId']}/ratings", expect_errors=True), 405, "method_not_allowed")
    profile_events = app.get(f"/user/{user['userId']}/rated").json["total"]
    assert profile_events == len(SCIFI_FANS["ratings"])  # nothing was written by the failures


# --- the operator's token command ----------------------------------------------------------------


def test_token_command_issues_a_working_token(app, served):
    env = {**os.environ, "MONGODB_URL": served["url"]}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "token", "11", "--database", served["db"].name],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert (
        app.post_json(
            "/user/11/feedback", {"movieId": TOY_STORY, "action": "like"}, headers=auth(token)
        ).status_int
        == 200
    )
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "token", "987654", "--database", served["db"].name],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 2 and "not in the served version" in done.stderr


# --- the next pipeline run trains on the events --------------------------------------------------


def test_next_pipeline_run_trains_on_feedback(app, served):
    user = onboard(
        app,
        {
            "genres": ["Horror", "Thriller", "Mystery"],
            "ratings": [{"movieId": 1, "rating": 1}, {"movieId": 2, "rating": 4}],
        },
    )
    uid, token = user["userId"], user["token"]
    app.post_json(f"/user/{uid}/feedback", {"movieId": 3, "action": "like"}, headers=auth(token))
    app.post_json(
        f"/user/{uid}/feedback", {"movieId": 5, "action": "not_interested"}, headers=auth(token)
    )
    app.post_json(f"/user/{uid}/ratings", {"movieId": 2, "rating": 3.5}, headers=auth(token))
    db = served["db"]
    with dask_client(served["config"].dask):
        result = run(served["config"], pipeline_store(db), new_version())
    model = db[schema.MODELS].find_one({"_id": result.version})
    feedback = model["metrics"]["feedback"]
    n_profiles_rows = feedback["rows"]
    assert n_profiles_rows >= 3 and feedback["users"] >= 1
    pointer = db[schema.SERVING].find_one({"_id": schema.POINTER_ID})
    assert pointer["version"] == result.version
    new_user = db[pointer["collections"][schema.USERS]].find_one({"_id": uid})
    assert new_user is not None, "an onboarded user with ratings is a training user of the next run"
    trained = {r["movieId"]: r["rating"] for r in rated_entries(new_user)}
    assert trained == {
        1: 1.0,
        2: 3.5,
        3: 4.5,
    }  # last rating wins; a like trains as 4.5; not_interested: nothing
    assert len(new_user["top"]) > 0
    # online data survived the run, and the user is still served live
    assert db[schema.PROFILES].find_one({"_id": uid}) is not None
    res = app.get(f"/user/{uid}/recommendation")
    assert res.json["source"] == "live" and 5 not in ids(res)


def _series(app, name: str) -> float:
    """The value of an unlabelled series in this app's /metrics (0 when absent)."""
    for line in app.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_live_rescores_are_timed_once_per_user_and_rev(app, served):
    uid = 23
    token = issue_token(served["db"], uid)
    rescores = "movietime_live_rescore_duration_seconds_count"
    event_to_list = "movietime_live_event_to_list_seconds_count"
    before = _series(app, rescores), _series(app, event_to_list)
    top = ids(app.get(f"/user/{uid}/recommendation").json)
    app.post_json(
        f"/user/{uid}/feedback", {"movieId": top[0], "action": "like"}, headers=auth(token)
    )
    for _ in range(3):  # the first request re-scores; the others are served from the cache
        assert app.get(f"/user/{uid}/recommendation").json["source"] == "live"
    assert (_series(app, rescores), _series(app, event_to_list)) == (before[0] + 1, before[1] + 1)
    waited = _series(app, "movietime_live_event_to_list_seconds_sum")
    assert 0 <= waited < 600  # from the like's acknowledged write to the list: this test's own pace


# --- watching together ------------------------------------------------------------------------


def test_a_group_list_comes_from_every_members_taste_and_avoids_misery(app, served):
    fan = onboard(app)
    members = [11, 12, fan["userId"]]
    profiles = served["db"][schema.PROFILES]
    before = list(profiles.find({"_id": {"$in": members}}))
    res = app.post_json("/groups", {"members": members})
    assert res.status_int == 201 and res.headers["Location"] == res.json["url"]
    slug = res.json["slug"]
    assert res.json["members"] == members
    assert served["db"][schema.GROUPS].find_one({"_id": slug})["members"] == members
    body = app.get(f"/groups/{slug}/recommendation", {"n": 10}).json
    assert body["slug"] == slug and body["members"] == members and body["diversity"] == 0
    items = body["recommendations"]
    assert len(items) == 10
    seen = set().union(*(all_rated(app, u) for u in members))
    assert not seen & {i["movieId"] for i in items}  # nothing any member has rated
    for item in items:
        assert [m["userId"] for m in item["members"]] == members
        assert all(m["predicted_rating"] >= 3.0 for m in item["members"])  # no misery
        assert item["from"] and set(item["from"]) <= set(members)
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True)
    # a data-set member with no live state brings the list they are served alone
    for user in (11, 12):
        own = set(ids(app.get(f"/user/{user}/recommendation", {"n": 50}).json))
        assert {i["movieId"] for i in items if user in i["from"]} <= own
        assert any(user in i["from"] for i in items)
    # a group is read-only for its members: their profiles are as they were
    assert list(profiles.find({"_id": {"$in": members}})) == before


def test_a_members_feedback_changes_the_group_list_at_once(app, served):
    fan = onboard(app)
    slug = app.post_json("/groups", {"members": [13, fan["userId"]]}).json["slug"]
    before = ids(app.get(f"/groups/{slug}/recommendation", {"n": 10}).json)
    top = before[0]
    res = app.post_json(
        f"/user/{fan['userId']}/feedback",
        {"movieId": top, "action": "not_interested"},
        headers=auth(fan["token"]),
    )
    assert res.status_int == 200
    after = ids(app.get(f"/groups/{slug}/recommendation", {"n": 10}).json)
    assert top not in after and after != before
    varied = app.get(f"/groups/{slug}/recommendation", {"n": 10, "diversity": 1}).json
    assert varied["recommendations"][0]["movieId"] == after[0]
    assert set(ids(varied)) != set(after)
    left = app.get(f"/groups/{slug}/recommendation", {"n": 10, "exclude": f"{after[0]},{after[1]}"})
    assert (
        ids(left.json)
        == [
            m
            for m in ids(app.get(f"/groups/{slug}/recommendation", {"n": 12}).json)
            if m not in after[:2]
        ][:10]
    )


@pytest.mark.parametrize(
    "body, word",
    [
        ({"members": [1]}, "members"),
        ({"members": list(range(1, 10))}, "members"),
        ({"members": [1, 1]}, "members"),
        ({"members": [1, 999_999]}, "999999"),
        ({"members": [1, "2"]}, "members"),
        ({"members": [1, {"$gt": 0}]}, "$gt"),
        ({}, "members"),
        ({"members": [1, 2], "name": "x"}, "name"),
    ],
)
def test_bad_groups_are_400(app, served, body, word):
    n_before = served["db"][schema.GROUPS].count_documents({})
    message = error(app.post_json("/groups", body, expect_errors=True), 400, "bad_request")
    assert word in message
    assert served["db"][schema.GROUPS].count_documents({}) == n_before


def test_group_list_bad_input(app):
    slug = app.post_json("/groups", {"members": [1, 2]}).json["slug"]
    for query in ("diversity=7", "exclude=" + ",".join(map(str, range(1, 10_001))), "n=0", "x=1"):
        error(
            app.get(f"/groups/{slug}/recommendation?{query}", expect_errors=True),
            400,
            "bad_request",
        )
    error(app.get(f"/groups/{'A' * 22}/recommendation", expect_errors=True), 404, "not_found")
    error(app.get("/groups/short/recommendation", expect_errors=True), 400, "bad_request")

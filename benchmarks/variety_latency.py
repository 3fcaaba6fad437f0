"""Server-side time of a group's list and of a re-ranked or filtered user list, through the app.

    python -m benchmarks.variety_latency [--groups 150] [--users 300] [--seed 4]

The store: a fresh SecantusDB loaded by ``python -m pipeline run --no-evaluate`` with the bundled
data. Every request goes through the app's WSGI callable in this process (``api.create_app``, as
each gunicorn worker runs it): the time from the request to its whole body, the server side of
an HTTP request without the parsing of its bytes.

1. Groups of 4 data-set users, no user in two groups (``--groups``, seeded): ``POST /groups``,
   then ``GET /groups/<slug>/recommendation`` three times: first (every member scored: the
   group's first request), again (every member's list kept per rev), and after one member's
   rating (``POST /user/<id>/ratings`` with their token: that member is scored again).
2. ``--users`` data-set users' lists of 10: the plain list (after one request that warms the
   user's cached document), ``diversity=0.3`` (the page's "More variety"), ``diversity=1``, and
   ``exclude=`` 100 of the catalogue's most rated movies.

p50 and p99 of each, in milliseconds. The issue's budget for the live path: p50 <= 10 ms,
p99 <= 25 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pymongo

from api.app import create_app
from api.settings import Settings
from benchmarks._util import bench_env, bench_store, served_users, wsgi_call, wsgi_get
from contract.accounts import issue_token


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--groups", type=int, default=150)
    p.add_argument("--users", type=int, default=300)
    p.add_argument("--seed", type=int, default=4)
    args = p.parse_args(argv)
    times: dict[str, list[float]] = {}

    def timed(what: str, *call) -> bytes:
        started = time.perf_counter()
        body = wsgi_call(*call)[1]
        times.setdefault(what, []).append(time.perf_counter() - started)
        return body

    with (
        tempfile.TemporaryDirectory(prefix="mt-bench-variety-") as tmp,
        contextlib.ExitStack() as st,
    ):
        url, _, note = bench_store(st, Path(tmp), bench_env(), None)
        settings = Settings(mongodb_url=url)
        app = create_app(settings)
        users = np.array(served_users(app), np.int64)
        rng = np.random.default_rng(args.seed)
        order = rng.permutation(users)
        picked = order[: 4 * min(args.groups, (len(users) - 2) // 4)].reshape(-1, 4)
        client = pymongo.MongoClient(url)
        db = client.get_default_database()
        popular = [
            int(m["movieId"])
            for page in (1, 2)
            for m in json.loads(wsgi_get(app, "/onboarding/movies", f"per_page=50&page={page}"))[
                "items"
            ]
        ]
        # the live model, loaded once, by a group of two users not in the measured groups
        spare = json.dumps({"members": order[-2:].tolist()}).encode()
        slug = json.loads(wsgi_call(app, "POST", "/groups", "", spare, ok=(201,))[1])["slug"]
        wsgi_get(app, f"/groups/{slug}/recommendation")

        short = 0  # group lists of fewer than 10 movies
        for members in picked.tolist():
            body = json.dumps({"members": members}).encode()
            slug = json.loads(wsgi_call(app, "POST", "/groups", "", body, ok=(201,))[1])["slug"]
            path = f"/groups/{slug}/recommendation"
            listed = json.loads(timed("group of 4, first request", app, "GET", path))
            timed("group of 4, again (members kept)", app, "GET", path)
            movie = ([i["movieId"] for i in listed["recommendations"]] or popular)[0]
            short += len(listed["recommendations"]) < 10
            token = issue_token(db, members[0], origin="benchmark")
            rating = json.dumps({"movieId": movie, "rating": 4.5}).encode()
            auth = {"Authorization": f"Bearer {token}"}
            wsgi_call(app, "POST", f"/user/{members[0]}/ratings", "", rating, auth)
            timed("group of 4, after a member's rating", app, "GET", path)

        exclude = "exclude=" + ",".join(map(str, popular))
        for user in rng.choice(users, min(args.users, len(users)), replace=False).tolist():
            path = f"/user/{user}/recommendation"
            wsgi_get(app, path, "n=10")  # the user's document, cached
            timed("user list of 10", app, "GET", path, "n=10")
            timed("user list, diversity=0.3", app, "GET", path, "n=10&diversity=0.3")
            timed("user list, diversity=1", app, "GET", path, "n=10&diversity=1")
            timed("user list, exclude= 100 ids", app, "GET", path, f"n=10&{exclude}")
        client.close()

    print(f"\n### Server-side time through the app ({note})\n")
    print(f"{short} of {len(picked)} groups' lists had fewer than 10 movies\n")
    print("| request | requests | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    for what, seconds in times.items():
        ms = np.array(seconds) * 1e3
        print(f"| {what} | {len(ms)} | {np.percentile(ms, 50):.1f} | {np.percentile(ms, 99):.1f} |")
    return 0


if __name__ == "__main__":
    started = time.perf_counter()
    code = main()
    print(f"{time.perf_counter() - started:.0f} s in all", file=sys.stderr)
    sys.exit(code)

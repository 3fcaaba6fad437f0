"""Reasons with their evidence: how many recommendations show what their reason rests on, and a
sample of twenty real ones.

    python -m benchmarks.reasons [--n 10] [--sample 20] [--seed 3] [--mongodb-url URL]

The store: a fresh SecantusDB loaded by ``python -m pipeline run --no-evaluate`` with the bundled
data (or ``--mongodb-url``, already loaded). Every data-set user's list of ``--n`` is asked for
through the app's WSGI callable (``api.create_app``: the evidence is added when the API answers,
``contract.reasons``), and each item's reason kind and evidence counted; then ``--sample``
reasons drawn at random (``--seed``) are printed with their movies, as the README shows them.
Also the time the evidence adds to a list (the same lists, with and without it, best of 5).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from api.app import create_app
from api.services import recommendations
from api.settings import Settings
from benchmarks._util import bench_env, bench_store, best_of, served_users, wsgi_get


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--sample", type=int, default=20)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--mongodb-url", default=None)
    args = p.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="mt-bench-reasons-") as tmp,
        contextlib.ExitStack() as st,
    ):
        url, _, note = bench_store(st, Path(tmp), bench_env(), args.mongodb_url)
        app = create_app(Settings(mongodb_url=url))
        ids = served_users(app)
        kinds, shown, items = Counter(), Counter(), []
        for user in ids:
            body = json.loads(wsgi_get(app, f"/user/{user}/recommendation", f"n={args.n}"))
            for item in body["recommendations"]:
                reason = item["reason"] or {}
                kinds[reason.get("kind")] += 1
                shown[reason.get("kind")] += bool(reason.get("evidence"))
                items.append((user, item))
        with_it, _ = best_of(lambda: [lists(app, ids[:100], args.n)], 5)
        plain = recommendations.with_evidence
        recommendations.with_evidence = lambda store, pointer, items, *a: items
        try:
            without, _ = best_of(lambda: [lists(app, ids[:100], args.n)], 5)
        finally:
            recommendations.with_evidence = plain
    total = sum(kinds.values())
    print(f"\n### Reasons of {len(ids)} data-set users' lists of {args.n} ({note})\n")
    print("| reason kind | items | with evidence |")
    print("|---|---|---|")
    for kind, count in kinds.most_common():
        print(f"| {kind} | {count:,} | {shown[kind]:,} ({shown[kind] / count:.0%}) |")
    print(f"| all | {total:,} | {sum(shown.values()):,} ({sum(shown.values()) / total:.1%}) |")
    print(f"\n{args.sample} reasons drawn at random (seed {args.seed}):\n")
    for user, item in random.Random(args.seed).sample(items, args.sample):
        print(f'- user {user}, {item["title"]}: "{item["reason"]["text"]}"')
    print(
        f"\n100 users' lists of {args.n} through the app: {with_it * 1e3:.0f} ms with the evidence, "
        f"{without * 1e3:.0f} ms without (best of 5, warm caches)"
    )
    return 0


def lists(app, ids: list[int], n: int) -> None:
    for user in ids:
        wsgi_get(app, f"/user/{user}/recommendation", f"n={n}")


if __name__ == "__main__":
    started = time.perf_counter()
    code = main()
    print(f"{time.perf_counter() - started:.0f} s in all", file=sys.stderr)
    sys.exit(code)

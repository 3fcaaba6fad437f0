"""Similar-movie lists for a re-score's reasons: read from the store against looked up in the live model.

    python -m benchmarks.similar_lookup [--lists 50] [--repeats 40]

A fresh SecantusDB server (durable, as the embedded default) is loaded by the real pipeline
(``python -m pipeline -q run --no-evaluate``, bundled ml-latest-small). Then, in the same
process and run, ``--repeats`` times: ``--lists`` random catalogue movies' similar lists through
``ServingStore.similar_lists`` with its cache off (what a worker pays for movies it has not seen)
and through ``LiveModel.similar_lists`` (in memory); both must give the same lists. Prints p50,
p95 and max of each, their ratio, and the memory the live model's arrays take.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from benchmarks._util import REPO, secantus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--lists", type=int, default=50, help="movies per lookup (a heavy user's reason seeds: 50)"
    )
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from api.settings import Settings
    from api.store.serving import ServingStore

    with secantus() as (url, _proc):
        subprocess.run(
            [sys.executable, "-m", "pipeline", "-q", "run", "--no-evaluate"],
            cwd=REPO,
            check=True,
            env={**os.environ, "MONGODB_URL": url},
            stdout=subprocess.DEVNULL,
        )
        store = ServingStore(Settings(mongodb_url=url, database="movietime", movie_cache_size=0))
        pointer = store.pointer()
        model = store.live_model(pointer)
        if model.similar_indptr is None:
            raise SystemExit("the published live model has no similar lists")
        rng = np.random.default_rng(args.seed)
        from_store, from_model = [], []
        for _ in range(args.repeats):
            ids = [int(m) for m in rng.choice(model.catalogue_ids, args.lists, replace=False)]
            t0 = time.perf_counter()
            a = store.similar_lists(pointer, ids)
            from_store.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            b = model.similar_lists(ids)
            from_model.append((time.perf_counter() - t0) * 1000)
            if [[m for m, _ in a[k]] for k in ids] != [[m for m, _ in b[k]] for k in ids]:
                raise SystemExit("the live model's lists differ from the store's")
        store.close()

    def row(name: str, ms: list[float]) -> str:
        ms = sorted(ms)
        return f"| {name} | {statistics.median(ms):.3f} | {ms[int(0.95 * (len(ms) - 1))]:.3f} | {ms[-1]:.3f} |"

    size = model.similar_ids.nbytes + model.similar_scores.nbytes + model.similar_indptr.nbytes
    print(
        f"## {args.lists} similar lists per lookup, {args.repeats} lookups (same lists from both)\n"
    )
    print("| source | p50 ms | p95 ms | max ms |\n|---|---|---|---|")
    print(row("store (`ServingStore.similar_lists`, uncached)", from_store))
    print(row("live model (`LiveModel.similar_lists`, in memory)", from_model))
    print(
        f"\np50 ratio store / live model: {statistics.median(from_store) / statistics.median(from_model):.0f}x; "
        f"the live model's similar arrays: {size / 2**20:.1f} MiB for {len(model.catalogue_ids):,} movies"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

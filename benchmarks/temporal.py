"""The temporal protocol: each user's latest 20% of ratings held out, as a service always
predicts the future from the past. Movie Time, EASE and popularity on the same split, scored by
the peer harness's metric code.

    bash benchmarks/setup_peers.sh          # once: the peer harness's own venv (../.venv-peers)
    python -m benchmarks.temporal

1. ``benchmarks/temporal_peers.py``, run with the harness's Python, writes the split with the
   harness's ``write_split`` (users with at least 5 ratings; their latest ``max(1, floor(0.2
   n))`` by timestamp, ties by movieId) and runs the harness's popularity and EASE on it (EASE's
   lambda tuned on a validation hold-out carved from the training part, as on the other splits;
   that carve is the harness's random per-user one, not a temporal one).
2. Movie Time: ``python -m pipeline evaluate`` on the split's ``train.csv``, its lists scored by
   the harness's ``eval_split.py`` (the same code that scored EASE and popularity).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._util import REPO, SHARED
from benchmarks.accuracy import PEERS_PYTHON, run_movie_time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--bench", default=str(SHARED / "bench"), help="peer harness folder")
    p.add_argument("--peers-python", default=str(PEERS_PYTHON), help="the harness's Python")
    args = p.parse_args(argv)
    if not Path(args.peers_python).exists():
        raise SystemExit(f"{args.peers_python} not found: run `bash benchmarks/setup_peers.sh`")
    with tempfile.TemporaryDirectory(prefix="mt-temporal-") as tmp:
        out = Path(tmp)
        subprocess.run(
            [
                args.peers_python,
                str(REPO / "benchmarks" / "temporal_peers.py"),
                "--bench",
                args.bench,
                "--out",
                str(out / "peers"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        peers = json.loads((out / "peers" / "results.json").read_text())
        folder = out / "peers" / "splits" / "temporal"
        ours = run_movie_time(
            folder, "--recommendations", out / "temporal.csv", Path(args.bench), args.peers_python
        )
    meta = peers["split"]
    print(
        f"\n### Temporal split of ml-latest-small ({meta['n_train']:,} training ratings, "
        f"{meta['n_test']:,} held out over {meta['n_test_users']} users; test MD5 "
        f"{meta['test_md5'][:8]})\n"
    )
    print("| system | P@10 | R@10 | NDCG@10 | HR@10 | Cov@10 | note |")
    print("|---|---|---|---|---|---|---|")
    rows = [{"model": "Movie Time", **ours, "note": f"{ours['seconds']} s fit + lists"}]
    rows += [{**r, "note": r.get("note") or ""} for r in peers["topn"]]
    for r in sorted(rows, key=lambda r: -r["ndcg@10"]):
        print(
            f"| {r['model']} | {r['precision@10']:.4f} | {r['recall@10']:.4f} | "
            f"{r['ndcg@10']:.4f} | {r['hitrate@10']:.4f} | {r['coverage@10']:.4f} | {r['note']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

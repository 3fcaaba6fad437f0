"""Accuracy against the peers on the reference splits of ml-latest-small (seed 42).

    bash benchmarks/setup_peers.sh          # once: the peer harness's own venv (../.venv-peers)
    python -m benchmarks.accuracy           # Movie Time and the peers, measured in the same run
    python -m benchmarks.accuracy --no-peers

Movie Time is trained with ``python -m pipeline evaluate`` on each split's train.csv, and
its outputs are scored by the peer harness's own ``eval_split.py`` (``../shared/bench``),
so both sides use the same metric code. With ``--peers-python`` (a Python with the peer
harness requirements, see ../shared/bench/README.md), ``peers.py`` runs in the same
invocation on the same data and seed (its splits are MD5-checked against the reference
ones), and the table reports the ratio to the best peer.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._util import REPO, SHARED

PEERS_PYTHON = REPO.parent / ".venv-peers" / "bin" / "python"

SPLITS = ("random90", "user-holdout")


def movie_time(bench: Path, out: Path, eval_python: str) -> dict:
    res = {}
    for split in SPLITS:
        folder = bench / "splits" / "ml-latest-small" / split
        kind = "--predictions" if split == "random90" else "--recommendations"
        target = out / f"{split}.csv"
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline",
                "-q",
                "evaluate",
                "--train",
                str(folder / "train.csv"),
                "--test",
                str(folder / "test.csv"),
                kind,
                str(target),
            ],
            check=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        seconds = time.perf_counter() - t0
        scored = subprocess.run(
            [
                eval_python,
                str(bench / "eval_split.py"),
                "--split",
                str(folder),
                kind,
                str(target),
                "--json",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        data = json.loads(scored.stdout)
        row = (data["rating"] or data["topn"])[0]
        row["seconds"] = round(seconds, 1)
        res[split] = row
    return res


def peers(python: str, bench: Path, out: Path, quick: bool) -> dict:
    argv = [
        python,
        str(bench / "peers.py"),
        "--data",
        str(SHARED / "data" / "ml-latest-small" / "ratings.csv"),
        "--splits",
        ",".join(SPLITS),
        "--seed",
        "42",
        "--out",
        str(out / "peers"),
    ]
    if quick:
        argv.append("--quick")
    subprocess.run(argv, check=True, cwd=bench, stdout=subprocess.DEVNULL)
    return json.loads((out / "peers" / "results.json").read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--bench", default=str(SHARED / "bench"), help="peer harness folder (default: %(default)s)"
    )
    p.add_argument(
        "--peers-python",
        default=str(PEERS_PYTHON),
        help="Python with the peer harness requirements (pandas 2), which also runs eval_split.py "
        "(default: %(default)s, made by benchmarks/setup_peers.sh)",
    )
    p.add_argument("--no-peers", action="store_true", help="score Movie Time only")
    p.add_argument("--quick", action="store_true", help="peers: fast models only")
    args = p.parse_args(argv)
    bench = Path(args.bench)
    if not Path(args.peers_python).exists():
        raise SystemExit(
            f"{args.peers_python} not found: run `bash benchmarks/setup_peers.sh` first "
            "(eval_split.py needs the harness's pinned pandas 2)"
        )
    with tempfile.TemporaryDirectory(prefix="mt-acc-") as tmp:
        ours = movie_time(bench, Path(tmp), args.peers_python)
        peer = None if args.no_peers else peers(args.peers_python, bench, Path(tmp), args.quick)

    r, t = ours["random90"], ours["user-holdout"]
    print("\n### Movie Time on the reference splits (scored by eval_split.py)\n")
    print("| split | metric | Movie Time | fit+predict s |")
    print("|---|---|---|---|")
    print(f"| random90 | RMSE | {r['rmse']:.4f} (MAE {r['mae']:.4f}) | {r['seconds']} |")
    print(
        f"| user-holdout | NDCG@10 | {t['ndcg@10']:.4f} (P {t['precision@10']:.4f}, R {t['recall@10']:.4f}, "
        f"HR {t['hitrate@10']:.4f}) | {t['seconds']} |"
    )
    print(f"| user-holdout | Coverage@10 | {t['coverage@10']:.4f} | |")
    if peer:
        best_rmse = min(peer["rating"], key=lambda x: x["rmse"])
        best_ndcg = max(peer["topn"], key=lambda x: x["ndcg@10"])
        print("\n### Peers, measured in this run (peers.py, same splits and seed)\n")
        print("| comparison | best peer | peer | Movie Time | ratio (MT / peer) |")
        print("|---|---|---|---|---|")
        print(
            f"| RMSE random90 | {best_rmse['model']} | {best_rmse['rmse']:.4f} | {r['rmse']:.4f} "
            f"| {r['rmse'] / best_rmse['rmse']:.3f} |"
        )
        print(
            f"| NDCG@10 user-holdout | {best_ndcg['model']} | {best_ndcg['ndcg@10']:.4f} | {t['ndcg@10']:.4f} "
            f"| {t['ndcg@10'] / best_ndcg['ndcg@10']:.3f} |"
        )
        print(
            f"| Coverage@10 user-holdout | {best_ndcg['model']} | {best_ndcg['coverage@10']:.4f} "
            f"| {t['coverage@10']:.4f} | {t['coverage@10'] / max(best_ndcg['coverage@10'], 1e-9):.2f} |"
        )
        print(f"\npeers.py total {peer['total_s']:.0f} s")
    else:
        print(
            "\n(peers not run in this invocation; the reference table is "
            "../shared/bench/results/ml-latest-small.md)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

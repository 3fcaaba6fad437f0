"""Accuracy against the peers on splits of ml-latest-small, over one or more split seeds.

    bash benchmarks/setup_peers.sh          # once: the peer harness's own venv (../.venv-peers)
    python -m benchmarks.accuracy           # Movie Time and the peers, measured in the same run
    python -m benchmarks.accuracy --seeds 42,1,2,3,4   # five split seeds: means, 95% intervals
    python -m benchmarks.accuracy --no-peers           # the reference splits (seed 42) only

Movie Time is trained with ``python -m pipeline evaluate`` on each split's train.csv, and
its outputs are scored by the peer harness's own ``eval_split.py`` (``../shared/bench``),
so both sides use the same metric code. With ``--peers-python`` (a Python with the peer
harness requirements, see ../shared/bench/README.md), ``peers.py`` runs in the same
invocation on the same data and seed (its splits are MD5-checked against the reference
ones), and the table reports the ratio to the best peer.

With several ``--seeds``, ``peers.py --seed S`` writes each seed's splits (seed 42's are the
reference ones) and runs the peers on them; Movie Time runs on the same files. The summary gives
each system's mean over the seeds with a 95% interval (Student's t, n - 1 degrees of freedom)
and Movie Time's paired difference from the best peer (the peer with the best mean): the mean of
the per-seed differences, its 95% interval, a paired t-test, and on how many seeds Movie Time
is ahead.
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

import numpy as np

from benchmarks._util import REPO, SHARED

PEERS_PYTHON = REPO.parent / ".venv-peers" / "bin" / "python"

SPLITS = ("random90", "user-holdout")


def movie_time(splits: Path, bench: Path, out: Path, eval_python: str) -> dict:
    """Movie Time trained on each split's train.csv under ``splits``, scored by eval_split.py."""
    return {
        split: run_movie_time(
            splits / split,
            "--predictions" if split == "random90" else "--recommendations",
            out / f"{split}.csv",
            bench,
            eval_python,
        )
        for split in SPLITS
    }


def run_movie_time(folder: Path, kind: str, target: Path, bench: Path, eval_python: str) -> dict:
    """``python -m pipeline evaluate`` on one split folder (``kind``: ``--predictions`` or
    ``--recommendations``), its output scored by the harness's eval_split.py; with its seconds."""
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
    return row


def peers(python: str, bench: Path, out: Path, quick: bool, seed: int = 42) -> dict:
    """peers.py on ml-latest-small with split seed ``seed``: its results; the splits it wrote
    are in ``out / "peers" / "splits"``."""
    argv = [
        python,
        str(bench / "peers.py"),
        "--data",
        str(SHARED / "data" / "ml-latest-small" / "ratings.csv"),
        "--splits",
        ",".join(SPLITS),
        "--seed",
        str(seed),
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
    p.add_argument(
        "--seeds",
        default="42",
        help="comma list of split seeds (default 42: the reference splits); more than one "
        "prints means with 95%% intervals and the paired difference from the best peer",
    )
    args = p.parse_args(argv)
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    bench = Path(args.bench)
    if not Path(args.peers_python).exists():
        raise SystemExit(
            f"{args.peers_python} not found: run `bash benchmarks/setup_peers.sh` first "
            "(eval_split.py needs the harness's pinned pandas 2)"
        )
    if len(seeds) > 1:
        if args.no_peers:
            raise SystemExit("--seeds needs the peers: peers.py writes each seed's splits")
        return over_seeds(seeds, bench, args.peers_python, args.quick)
    with tempfile.TemporaryDirectory(prefix="mt-acc-") as tmp:
        ours = movie_time(bench / "splits" / "ml-latest-small", bench, Path(tmp), args.peers_python)
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


#: (label, split, result key, whether larger is better) of the figures compared over seeds
COMPARED = (
    ("RMSE, random90", "random90", "rmse", False),
    ("NDCG@10, user-holdout", "user-holdout", "ndcg@10", True),
    ("Coverage@10, user-holdout", "user-holdout", "coverage@10", True),
)


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% interval (Student's t with n - 1 degrees of freedom)."""
    from scipy import stats

    x = np.asarray(values, float)
    if len(x) < 2:
        return float(x.mean()), float("nan")
    return float(x.mean()), float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))


def paired(ours: list[float], theirs: list[float]) -> tuple[float, float, float]:
    """Mean of the per-seed differences (ours - theirs), its 95% half-width, the paired t-test's
    two-sided p-value."""
    from scipy import stats

    diff = np.asarray(ours, float) - np.asarray(theirs, float)
    mean, half = interval(diff.tolist())
    p = float(stats.ttest_rel(ours, theirs).pvalue) if len(diff) > 1 else float("nan")
    return mean, half, p


def over_seeds(seeds: list[int], bench: Path, peers_python: str, quick: bool) -> int:
    """Movie Time and the peers on each seed's splits; the summary over seeds."""
    runs = []
    for seed in seeds:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"mt-acc-{seed}-") as tmp:
            peer = peers(peers_python, bench, Path(tmp), quick, seed)
            splits = Path(tmp) / "peers" / "splits"
            ours = movie_time(splits, bench, Path(tmp), peers_python)
            md5 = {
                name: json.loads((splits / name / "meta.json").read_text())["test_md5"][:8]
                for name in SPLITS
            }
        runs.append({"seed": seed, "ours": ours, "peers": peer, "test_md5": md5})
        r, t = ours["random90"], ours["user-holdout"]
        print(
            f"seed {seed}: RMSE {r['rmse']:.4f}, NDCG@10 {t['ndcg@10']:.4f}, coverage@10 "
            f"{t['coverage@10']:.4f} (test MD5 {md5}); {time.perf_counter() - t0:.0f} s",
            file=sys.stderr,
        )

    print(
        f"\n### Over {len(seeds)} split seeds ({', '.join(map(str, seeds))}) of ml-latest-small\n"
    )
    print("Mean over the seeds, with the half-width of its 95% interval (t, n - 1 df).\n")
    for label, split, key, larger in COMPARED:
        kind = "rating" if split == "random90" else "topn"
        values: dict[str, list[float]] = {"Movie Time": [r["ours"][split][key] for r in runs]}
        for r in runs:
            for row in r["peers"][kind]:
                if row.get("status", "ok") != "ok" or key not in row:
                    continue
                values.setdefault(row["model"], []).append(float(row[key]))
        values = {m: v for m, v in values.items() if len(v) == len(runs)}
        order = sorted(values, key=lambda m: np.mean(values[m]), reverse=larger)
        print(f"#### {label}\n")
        print("| system | mean | 95% interval | per seed |")
        print("|---|---|---|---|")
        for m in order:
            mean, half = interval(values[m])
            per = ", ".join(f"{v:.4f}" for v in values[m])
            print(f"| {m} | {mean:.4f} | ± {half:.4f} | {per} |")
        if key == "coverage@10":
            print()
            continue
        best = next(m for m in order if m != "Movie Time")
        ours, theirs = values["Movie Time"], values[best]
        mean, half, p = paired(ours, theirs)
        ahead = sum((a > b) if larger else (a < b) for a, b in zip(ours, theirs))
        print(
            f"\nMovie Time - {best} (the best peer by mean): {mean:+.4f} ± {half:.4f} (95%), "
            f"paired t-test p = {p:.2g}; Movie Time ahead on {ahead} of {len(runs)} seeds.\n"
        )
    print(f"peers.py: {sum(r['peers']['total_s'] for r in runs):.0f} s over the seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())

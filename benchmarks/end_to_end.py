"""Time and memory of the whole pipeline (load, features, clustering, training, evaluation,
precompute, store) on the bundled ml-latest-small or on synthetic data of any size.

    python -m benchmarks.end_to_end                       # bundled ml-latest-small
    python -m benchmarks.end_to_end --synthetic 1000000   # 1M synthetic ratings
    python -m benchmarks.end_to_end --synthetic 25000000 --users 162541 --movies 62423

Each run goes into a fresh SecantusDB server (durable mode, as the embedded default). Peak
RSS is the sum over the pipeline process and its Dask worker processes; the store server is
a separate process and reported separately.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

from benchmarks._util import REPO, run_measured, secantus


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--synthetic", type=int, default=None, help="synthetic ratings (default: bundled data)"
    )
    p.add_argument("--users", type=int, default=None)
    p.add_argument("--movies", type=int, default=None)
    p.add_argument(
        "--keep", default=None, help="folder for the synthetic data (default: temporary)"
    )
    p.add_argument("--no-evaluate", action="store_true")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local Dask worker processes (pipeline default: 2)",
    )
    p.add_argument(
        "--threads-per-worker", type=int, default=None, help="threads per local worker (default: 1)"
    )
    p.add_argument("--log", default=None, help="keep the pipeline's log at this path")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mt-bench-") as tmp:
        tmp = Path(tmp)
        dataset = "ml-latest-small"
        gen = None
        if args.synthetic:
            n = args.synthetic
            users = args.users or max(100, int(n / 153.6))  # ml-25m: 25M ratings / 162,541 users
            movies = args.movies or max(200, int(n / 400.5))  # ml-25m: 25M ratings / 62,423 movies
            dataset = str(Path(args.keep) if args.keep else tmp / "synth")
            if not (Path(dataset) / "ratings.csv").exists():
                gen = run_measured(
                    [
                        sys.executable,
                        "-m",
                        "pipeline",
                        "-q",
                        "synth",
                        "--out",
                        dataset,
                        "--users",
                        str(users),
                        "--movies",
                        str(movies),
                        "--ratings",
                        str(n),
                    ],
                    env={**os.environ, "PYTHONPATH": str(REPO)},
                )
        with secantus() as (url, server):
            argv = [
                sys.executable,
                "-m",
                "pipeline",
                "run",
                "--dataset",
                dataset,
                "--run-dir",
                str(tmp / "runs"),
            ]
            if args.no_evaluate:
                argv.append("--no-evaluate")
            if args.workers:
                argv += ["--workers", str(args.workers)]
            if args.threads_per_worker:
                argv += ["--threads-per-worker", str(args.threads_per_worker)]
            log_path = tmp / "pipeline.log"
            with log_path.open("w") as log:
                res = run_measured(
                    argv,
                    env={**os.environ, "MONGODB_URL": url, "PYTHONPATH": str(REPO)},
                    cwd=tmp,
                    stderr=log,
                )
            log_text = log_path.read_text()
            timings = step_timings(log_text)
            peak_step = step_at(step_starts(log_text, res["peak_at"][0]), res["peak_at"][0])
            if args.log:
                shutil.copyfile(log_path, args.log)
            server_rss = psutil.Process(server.pid).memory_info().rss / 2**30
        reports = sorted((tmp / "runs").glob("*/metrics.json"))
        metrics = json.loads(reports[-1].read_text()) if reports else {}
    print(
        f"\n## End to end: {dataset if not args.synthetic else f'synthetic {args.synthetic:,} ratings'}\n"
    )
    print("| what | wall s | peak RSS GiB | exit |")
    print("|---|---|---|---|")
    if gen:
        print(
            f"| generate synthetic data | {gen['seconds']} | {gen['peak_rss_gib']} | {gen['exit_code']} |"
        )
    print(
        f"| pipeline run (load .. store) | {res['seconds']} | {res['peak_rss_gib']} | {res['exit_code']} |"
    )
    print(f"| of which the driver process | | {res['peak_rss_root_gib']} | |")
    print(f"| of which the Dask worker processes | | {res['peak_rss_children_gib']} | |")
    print(f"| store server (separate process, at end) | – | {server_rss:.2f} | – |")
    at, root, children = res["peak_at"]
    print(
        f"\npeak of the sum at {time.strftime('%H:%M:%S', time.localtime(at))}, in step "
        f"'{peak_step or '?'}': driver {root} GiB, workers {children} GiB"
    )
    by_step = step_peaks(log_text, res["samples"]) if res["samples"] else {}
    if by_step:
        print(
            "\npeak of the sum in each step (GiB: driver + workers): "
            + ", ".join(f"{k} {r:.2f} + {c:.2f}" for k, (r, c) in by_step.items())
        )
    if timings:  # from the log: every step, the store's too (the report is written before them)
        print("\nsteps (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    if metrics.get("rating"):
        rating, topn = metrics["rating"], metrics["topn"]
        k = topn["k"]
        print(
            f"\nevaluation: RMSE {rating['model']['rmse']:.4f} (damped means {rating['bias_baseline']['rmse']:.4f}), "
            f"NDCG@{k} {topn['model'][f'ndcg@{k}']:.4f} (popularity {topn['popularity'][f'ndcg@{k}']:.4f}), "
            f"coverage@{k} {topn['model'].get(f'coverage@{k}', float('nan')):.4f}"
        )
    return res["exit_code"]


def step_starts(log_text: str, when: float) -> list[tuple[float, str]]:
    """``(wall clock time, step)`` of every "HH:MM:SS INFO <step> ..." log line (local time, on
    the day of ``when``), in log order."""
    day = time.strftime("%Y-%m-%d", time.localtime(when))
    return [
        (time.mktime(time.strptime(f"{day} {m.group(1)}", "%Y-%m-%d %H:%M:%S")), m.group(2))
        for m in re.finditer(r"^(\d\d:\d\d:\d\d) INFO (.+?) \.\.\.$", log_text, re.M)
    ]


def step_at(starts: list[tuple[float, str]], when: float) -> str | None:
    """The step last started at or before the wall clock time ``when`` (``starts``: see
    :func:`step_starts`)."""
    return next((step for t, step in reversed(starts) if t <= when), None)


def step_peaks(log_text: str, samples) -> dict[str, tuple[float, float]]:
    """``{step: (driver GiB, workers GiB)}`` when the sum peaked within each step, in step order,
    from ``PeakRSS`` samples ``(wall clock time, driver bytes, workers bytes)``."""
    starts = step_starts(log_text, samples[0][0])
    peaks: dict[str, tuple[int, int]] = {}
    for at, root, children in samples:
        step = step_at(starts, at)
        if step is not None and root + children > sum(peaks.get(step, (-1, 0))):
            peaks[step] = (root, children)
    return {step: (root / 2**30, children / 2**30) for step, (root, children) in peaks.items()}


def step_timings(log_text: str) -> dict[str, float]:
    """``{step: seconds}`` from the pipeline's "<step> done in <s> s" log lines."""
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"INFO (.+?) done in ([0-9.]+) s\b", log_text, re.M)
    }


if __name__ == "__main__":
    sys.exit(main())

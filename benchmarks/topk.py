"""The row-wise top-k selection (``contract.topk.top_positions``) against ``np.argpartition``
followed by ranking the k chosen (the code it replaced), in the same run.

    python -m benchmarks.topk [--rows 2048] [--repeat 5]

Score tables shaped like the pipeline's: a block of 2,048 users' affinities over the top-N
model's items (12,484 at synthetic 5M; 15,000 at 25M), and similar-movie scores over a
catalogue of 62,423 movies; k = 7 (list head), 10 (the per-user scale), 43 (list tail), 64
(similar lists). Best of ``repeat`` times per case. "same": both chose entries of the same scores
(at a tie on the cut, argpartition may keep either position; top_positions keeps the lower).
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks._util import best_of


def _argpartition(scores: np.ndarray, k: int) -> np.ndarray:
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1)


def main(argv=None) -> int:
    from contract.topk import top_positions

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, default=2048)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    print("| scores (rows x columns) | k | argpartition s | top_positions s | ratio | same |")
    print("|---|---|---|---|---|---|")
    for width, ks in ((12_484, (7, 10, 43)), (15_000, (7, 10, 43)), (62_423, (64,))):
        scores = rng.standard_normal((args.rows, width)).astype(np.float32)
        # as in the lists: each user's ~150 rated items are excluded (-inf)
        scores[np.arange(args.rows)[:, None], rng.integers(0, width, (args.rows, 150))] = -np.inf
        for k in ks:
            old_s, old = best_of(lambda: _argpartition(scores, k), args.repeat)  # noqa: B023 (run here)
            new_s, new = best_of(lambda: top_positions(scores, k), args.repeat)  # noqa: B023
            print(
                f"| {args.rows:,} x {width:,} | {k} | {old_s:.3f} | {new_s:.3f} | {old_s / new_s:.1f}x "
                f"| {np.array_equal(np.take_along_axis(scores, old, 1), np.take_along_axis(scores, new, 1))} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

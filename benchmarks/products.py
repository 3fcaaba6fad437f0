"""The dense-result sparse product (``contract.products.dense_product``) against scipy's sparse
product turned dense (``(a @ b).toarray()``, the code it replaced), in the same run.

    python -m benchmarks.products [--rows 2048] [--repeat 3]

Shaped like the per-user phase at synthetic 5M and 25M: a block of users with about 150
ratings each, drawn with a popularity skew, against the top-N model's sparse ``B`` (2,000
weights per row, the large-data profile) over 12,484 and 15,000 items; and like the similar
lists at 25M: a block of 256 movies' rating columns against the catalogue. One thread (as each
Dask worker runs). Best of ``repeat`` times per case; "same" compares every value.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import scipy.sparse as sp

from benchmarks._util import best_of


def _sparse_b(rng, n: int, per_row: int) -> sp.csr_matrix:
    cols = np.sort(rng.random((n, n), np.float32).argpartition(per_row, axis=1)[:, :per_row])
    indptr = np.arange(n + 1, dtype=np.int64) * per_row
    data = (rng.standard_normal(n * per_row) * 0.01).astype(np.float32)
    return sp.csr_matrix((data, cols.ravel().astype(np.int32), indptr), shape=(n, n))


def _users(rng, rows: int, n: int, per_user: int) -> sp.csr_matrix:
    popularity = 1.0 / np.arange(1, n + 1) ** 0.8
    cols = rng.choice(n, size=(rows, per_user), p=popularity / popularity.sum())
    data = rng.integers(1, 11, size=cols.shape).astype(np.float32) / 2
    x = sp.csr_matrix(
        (data.ravel(), (np.repeat(np.arange(rows), per_user), cols.ravel())), (rows, n)
    )
    x.sum_duplicates()
    x.sort_indices()
    return x


def main(argv=None) -> int:
    from threadpoolctl import threadpool_limits

    from contract.products import SCIPY_ROWS, dense_product

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, default=2048)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    cases = []
    for n in (12_484, 15_000):
        cases.append(
            (
                f"{args.rows:,} users x B {n:,}",
                _users(rng, args.rows, n, 150),
                _sparse_b(rng, n, 2000),
            )
        )
    ratings = _users(rng, 162_541, 62_423, 150).T.tocsr()  # movies x users, as the similar lists
    cases.append(("256 movies x 62,423 (similar lists)", ratings[:256], ratings.T.tocsr()))
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print("| product | scipy s | dense_product s | ratio | same |")
    print("|---|---|---|---|---|")
    # compile (or load the cached kernel) first: a product of a few rows goes through scipy
    dense_product(cases[0][1][: SCIPY_ROWS + 1], cases[0][2])
    with threadpool_limits(1):
        for name, a, b in cases:
            old_s, old = best_of(lambda: (a @ b).toarray(), args.repeat)  # noqa: B023 (run here)
            new_s, new = best_of(lambda: dense_product(a, b), args.repeat)  # noqa: B023
            print(
                f"| {name} | {old_s:.3f} | {new_s:.3f} | {old_s / new_s:.1f}x | {np.array_equal(old, new)} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The dense-result sparse product against scipy's own product, value for value, and the
compiled gather of sparse rows against its numpy form."""

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from contract.products import dense_product, dense_rows
from tests.support.paths import REPO


def _random_csr(rng, shape, density, dtype, index_dtype):
    m = sp.random(*shape, density=density, format="csr", dtype=dtype, random_state=rng)
    m.data = np.round(m.data * 10 - 5, 1).astype(dtype)  # stored zeros and ties included
    m.indices = m.indices.astype(index_dtype)
    m.indptr = m.indptr.astype(index_dtype)
    return m


@pytest.mark.parametrize("seed", range(12))
def test_matches_scipy_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    rows, inner, cols = (int(rng.integers(1, 60)) for _ in range(3))
    dtype = (np.float32, np.float64)[seed % 2]
    index_dtype = (np.int32, np.int64)[(seed // 2) % 2]
    a = _random_csr(rng, (rows, inner), float(rng.uniform(0, 0.5)), dtype, index_dtype)
    b = _random_csr(rng, (inner, cols), float(rng.uniform(0, 0.5)), np.float32, np.int32)
    if seed % 3 == 0:
        a.data[::2] = 0.0  # explicit zeros, as the positive input keeps the rating's pattern
    out = dense_product(a, b)
    expected = (a @ b).toarray()
    assert out.dtype == expected.dtype and out.shape == (rows, cols)
    assert np.array_equal(out, expected)


def test_dense_right_side_and_empty_rows():
    a = sp.csr_matrix(np.array([[0, 2.0, 0], [0, 0, 0], [1.0, 0, 3.0]], np.float32))
    a.data[0] = 0.0  # a stored zero: skipped
    b = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert np.array_equal(dense_product(a, b), a.toarray() @ b)
    assert np.array_equal(dense_product(a, sp.csr_matrix(b)), a.toarray() @ b)


def test_writes_over_out():
    rng = np.random.default_rng(5)
    a = _random_csr(rng, (7, 9), 0.4, np.float32, np.int32)
    b = _random_csr(rng, (9, 11), 0.4, np.float32, np.int32)
    out = np.full((10, 11), 7.0, np.float32)
    assert dense_product(a, b, out=out[2:9]) is not None
    assert np.array_equal(out[2:9], (a @ b).toarray()) and (out[:2] == 7).all()
    np.testing.assert_allclose(
        dense_product(a, b.toarray(), out=out[2:9]), a @ b.toarray(), rtol=1e-6
    )
    with pytest.raises(ValueError, match="C-contiguous"):
        dense_product(a, b, out=np.zeros((7, 11), np.float64))


def test_shapes_must_align():
    with pytest.raises(ValueError, match="do not align"):
        dense_product(sp.csr_matrix((2, 3), dtype=np.float32), sp.csr_matrix((4, 2)))


@pytest.mark.parametrize("seed", range(8))
def test_dense_rows_compiled_equals_numpy(seed):
    rng = np.random.default_rng(seed)
    n, m = (int(rng.integers(1, 80)) for _ in range(2))
    b = _random_csr(
        rng, (n, m), float(rng.uniform(0, 0.6)), np.float32, (np.int32, np.int64)[seed % 2]
    )
    lo = int(rng.integers(0, n))
    hi = int(rng.integers(lo, n + 1))
    listed = np.sort(rng.choice(m, size=int(rng.integers(1, m + 1)), replace=False))
    column = np.full(m, -1, np.int64)
    column[listed] = np.arange(len(listed))
    compiled = dense_rows(b, lo, hi, column, len(listed))
    assert compiled.dtype == np.float32 and compiled.shape == (hi - lo, len(listed))
    assert np.array_equal(compiled, dense_rows(b, lo, hi, column, len(listed), compiled=False))
    assert np.array_equal(compiled, b[lo:hi].toarray()[:, listed])


def test_one_users_product_does_not_load_numba():
    """The API scores one user at a time: its processes never hold numba's compiler (the
    product, and the "because" seeds' rows of a sparse ``B``)."""
    code = (
        "import sys, numpy as np, scipy.sparse as sp\n"
        "from contract.products import dense_product, SCIPY_ROWS\n"
        "from contract.scoring import ListRules, TopNScorer\n"
        "a = sp.random(SCIPY_ROWS, 50, density=0.2, format='csr', dtype=np.float32)\n"
        "b = sp.random(50, 40, density=0.2, format='csr', dtype=np.float32)\n"
        "assert np.array_equal(dense_product(a, b), (a @ b).toarray())\n"
        "w = sp.random(30, 30, density=0.5, format='csr', dtype=np.float32, random_state=1)\n"
        "one = np.ones(30, np.float32)\n"
        "scorer = TopNScorer(ListRules(5.0, 4.0, 3, 3.5), np.arange(30), np.arange(30), [w], [1.0],"
        " one, one, one)\n"
        "items, _, seeds = scorer.for_ratings(np.arange(6), np.full(6, 5.0), n=10)\n"
        "assert (items >= 0).all() and (seeds >= 0).any()\n"
        "print('numba' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"

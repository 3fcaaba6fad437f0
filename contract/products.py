"""Sparse products whose result is dense: a block of users against an item-item ``B``, a block
of movies against the catalogue; and rows of a sparse ``B`` at chosen columns, as a dense table.

scipy multiplies two sparse matrices into a sparse result (two passes, the second building
index arrays), which these callers then turn dense: for a block of users against a ``B`` with a
few thousand weights per row, the result is dense anyway. :func:`dense_product` adds the same
products in the same order straight into the dense array, so its values are scipy's, bit for
bit, at a fraction of the cost (``python -m benchmarks.products``; figures in the README). The
loop is compiled by numba on its first use in a process (cached on disk after that). A product of
a few rows (the API's request-time lists score one user) is scipy's, turned dense: the same
values, without importing numba, which holds about 110 MiB in each process that uses it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from contract.compiled import njit_lazily

SCIPY_ROWS = 16  # products of at most this many rows of ``a`` go through scipy


def dense_product(a: sp.csr_matrix, b, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ b`` as a dense ndarray, for a CSR ``a`` and a CSR or dense ``b``, in scipy's dtype;
    written over ``out`` (C-contiguous, of that shape and dtype) when given.

    Stored zeros of ``a`` add nothing: the compiled loop skips them (the positive model's input
    keeps the rating's pattern, so about half its entries are stored zeros)."""
    a = sp.csr_matrix(a)
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"shapes {a.shape} and {b.shape} do not align")
    dtype = np.result_type(a.dtype, b.dtype)
    shape = (a.shape[0], b.shape[1])
    if out is not None and (out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous):
        raise ValueError(f"out must be a C-contiguous {dtype} array of shape {shape}")
    if not sp.issparse(b) or a.shape[0] <= SCIPY_ROWS:
        product = _scipy_product(a, b)
        if out is None:
            return product
        out[...] = product
        return out
    b = sp.csr_matrix(b)
    if out is None:
        out = np.zeros(shape, dtype)
    else:
        out.fill(0)
    njit_lazily(_accumulate)(
        a.indptr,
        a.indices,
        a.data.astype(dtype, copy=False),
        b.indptr,
        b.indices,
        b.data.astype(dtype, copy=False),
        out,
    )
    return out


def _scipy_product(a: sp.csr_matrix, b) -> np.ndarray:
    if sp.issparse(b):
        return (a @ sp.csr_matrix(b)).toarray()
    if a.nnz and not np.all(a.data != 0):  # against a dense b, each stored zero costs a row
        a = a.copy()
        a.eliminate_zeros()
    return np.asarray(a @ b)


def dense_rows(
    b: sp.csr_matrix, lo: int, hi: int, column: np.ndarray, width: int, compiled: bool = True
) -> np.ndarray:
    """Rows ``lo .. hi - 1`` of the CSR matrix ``b`` as a dense float32 ``(hi - lo, width)``
    table whose column ``column[j]`` holds ``b``'s column ``j`` (``column[j] < 0``: left out).

    ``compiled=False`` takes the same entries with numpy (no numba in the process: the API's
    one-user lists); the tables are equal either way."""
    table = np.zeros((hi - lo, width), dtype=np.float32)
    if compiled:
        njit_lazily(_gather)(b.indptr, b.indices, b.data, lo, hi, column, table)
        return table
    start, stop = b.indptr[lo], b.indptr[hi]
    at = column[b.indices[start:stop]]
    keep = np.flatnonzero(at >= 0)
    rows = np.searchsorted(b.indptr[lo : hi + 1], keep + start, side="right") - 1
    table[rows, at[keep]] = b.data[start:stop][keep]
    return table


def _gather(indptr, indices, data, lo, hi, column, table):
    for r in range(lo, hi):
        row = table[r - lo]
        for q in range(indptr[r], indptr[r + 1]):
            c = column[indices[q]]
            if c >= 0:
                row[c] = data[q]


def _accumulate(a_indptr, a_indices, a_data, b_indptr, b_indices, b_data, out):
    # scipy's order (csr_matmat): for each row of a, its entries in stored order, each times
    # the stored entries of the matching row of b
    for r in range(len(a_indptr) - 1):
        row = out[r]
        for p in range(a_indptr[r], a_indptr[r + 1]):
            v = a_data[p]
            if v == 0:
                continue
            i = a_indices[p]
            for q in range(b_indptr[i], b_indptr[i + 1]):
                row[b_indices[q]] += v * b_data[q]

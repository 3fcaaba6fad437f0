"""The row-wise top-k selection against a full stable sort, on the cases that take each path."""

import numpy as np
import pytest

from contract.topk import top_positions


def _sorted(scores: np.ndarray, k: int) -> np.ndarray:
    nan = np.isnan(scores)
    return np.lexsort((np.where(nan, 0, -scores), nan), axis=1)[:, :k]


@pytest.mark.parametrize("seed", range(40))
def test_matches_a_stable_sort(seed):
    rng = np.random.default_rng(seed)
    rows, width, k = int(rng.integers(1, 30)), int(rng.integers(1, 5000)), int(rng.integers(0, 90))
    scores = rng.standard_normal((rows, width)).astype(np.float32)
    if seed % 3 == 0:
        scores = np.round(scores, 1)  # many ties
    if seed % 4 == 0:
        scores[rng.random(scores.shape) < 0.95] = -np.inf  # mostly excluded rows
    if seed % 5 == 0:
        scores[rng.random(scores.shape) < 0.01] = np.nan
    if seed % 7 == 0:
        scores[0] = 1.0  # a row of one value
    out = top_positions(scores, k)
    assert out.dtype == np.int64 and out.shape == (rows, min(k, width))
    assert np.array_equal(out, _sorted(scores, min(k, width)))


def test_wide_rows_take_the_bound():
    """Rows wide enough for the group bound (as the top-N lists'), ties by lower position."""
    rng = np.random.default_rng(0)
    scores = np.round(rng.standard_normal((64, 12_000)), 2)
    for k in (7, 10, 43):
        assert np.array_equal(top_positions(scores, k), _sorted(scores, k))


def test_empty():
    assert top_positions(np.zeros((3, 5)), 0).shape == (3, 0)
    assert top_positions(np.zeros((0, 5)), 2).shape == (0, 2)

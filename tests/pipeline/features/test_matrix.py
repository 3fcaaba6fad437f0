import dask.dataframe as dd
import numpy as np
import pandas as pd

from pipeline.features.matrix import RatingMatrix


def _ratings():
    return pd.DataFrame(
        {
            "userId": [3, 1, 1, 7, 3],
            "movieId": [20, 10, 30, 10, 10],
            "rating": [4.0, 3.5, 5.0, 1.0, 2.0],
            "timestamp": [5, 1, 2, 3, 4],
        }
    )


def test_from_frame_layout_and_lookup():
    m = RatingMatrix.from_frame(_ratings())
    assert m.user_ids.tolist() == [1, 3, 7] and m.item_ids.tolist() == [10, 20, 30]
    assert m.csr.toarray().tolist() == [[3.5, 0, 5.0], [2.0, 4.0, 0], [1.0, 0, 0]]
    assert m.user_index([7, 2]).tolist() == [2, -1]
    assert m.item_index([30, 99]).tolist() == [2, -1]
    cols, vals, ts = m.row(1)
    assert cols.tolist() == [0, 1] and vals.tolist() == [2.0, 4.0] and ts.tolist() == [4, 5]


def test_from_dask_matches_from_frame():
    df = _ratings()
    a = RatingMatrix.from_frame(df)
    b = RatingMatrix.from_dask(dd.from_pandas(df, npartitions=3))
    assert (a.csr != b.csr).nnz == 0
    assert np.array_equal(a.timestamps, b.timestamps)


def test_binary_threshold():
    m = RatingMatrix.from_frame(_ratings())
    assert m.binary(4.0).toarray().tolist() == [[0, 0, 1], [0, 1, 0], [0, 0, 0]]


def test_repeated_pair_keeps_last_row():
    df = pd.DataFrame(
        {"userId": [1, 1], "movieId": [10, 10], "rating": [2.0, 4.5], "timestamp": [1, 9]}
    )
    m = RatingMatrix.from_frame(df)
    assert m.nnz == 1 and m.csr[0, 0] == 4.5 and m.timestamps.tolist() == [9]


def test_kept_per_row_keeps_the_lowest_priority_entries_of_long_rows():
    import scipy.sparse as sp

    from pipeline.features.matrix import kept_per_row

    m = sp.csr_matrix(np.array([[1, 2, 3, 4], [5, 0, 6, 0], [0, 0, 0, 7]], np.float32))
    priority = np.array([3, 0, 2, 1, 0, 1, 0], np.float64)  # aligned with m.data

    def cut(cap, priority):
        kept = kept_per_row(m.indptr, cap, priority)
        return np.where(kept, m.data, 0).tolist()

    assert cut(2, priority) == [0, 2, 0, 4, 5, 6, 7]
    assert cut(4, priority) == [1, 2, 3, 4, 5, 6, 7]  # no row longer than the cap: all kept
    # ties go to the lower column
    assert cut(2, np.array([1, 1, 1, 0, 5, 5, 0], np.float64)) == [1, 0, 0, 4, 5, 6, 7]

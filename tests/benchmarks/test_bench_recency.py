"""benchmarks/recency.py: each rating's recency percentile, aligned with the model's user rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks.recency import recency_percentiles
from pipeline.features.matrix import RatingMatrix
from pipeline.models.topn import TopNConfig, TopNRecommender


def test_percentiles_follow_each_users_timestamps_in_the_models_entry_order():
    ratings = pd.DataFrame(
        {
            "userId": [1, 1, 1, 1, 2, 2, 3, 3],
            "movieId": [10, 20, 30, 40, 10, 20, 20, 30],
            "rating": [4.0, 3.0, 5.0, 2.0, 4.0, 5.0, 3.0, 4.0],
            "timestamp": [400, 100, 300, 200, 50, 60, 7, 7],
        }
    )
    matrix = RatingMatrix.from_frame(ratings)
    model = TopNRecommender(TopNConfig(min_item_ratings=1, positive_weight=0)).fit(matrix)
    users = np.array([1, 3])
    pct = recency_percentiles(model, matrix, ratings, users)
    x = model.user_ratings_[np.searchsorted(matrix.user_ids, users)]
    assert (pct.indptr == x.indptr).all() and (pct.indices == x.indices).all()
    movie_of = matrix.item_ids[model.items_[pct.indices]]
    # user 1 by time: 20 (100), 40 (200), 30 (300), 10 (400): newest = 1
    got = dict(zip(movie_of[: pct.indptr[1]].tolist(), pct.data[: pct.indptr[1]].tolist()))
    assert got == {10: 1.0, 20: 0.25, 30: 0.75, 40: 0.5}
    assert pct.data[pct.indptr[1] :].tolist() == [0.75, 0.75]  # user 3: a tie shares its mean rank

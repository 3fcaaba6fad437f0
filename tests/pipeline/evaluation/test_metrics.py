import math

import pandas as pd
import pytest

from pipeline.evaluation.metrics import mae, rmse, topn_metrics


def test_rmse_mae_hand_computed():
    assert rmse([4, 3, 5], [3, 3, 3]) == pytest.approx(math.sqrt((1 + 0 + 4) / 3))
    assert mae([4, 3, 5], [3, 3, 3]) == pytest.approx(1.0)


def test_topn_hand_computed():
    # user 1: relevant {10, 20} (30 is below the threshold); list 10, 99, 20 -> hits at ranks 1 and 3
    # user 2: relevant {40}; no hit in the list
    # user 3: nothing relevant -> not evaluated
    test = pd.DataFrame(
        {
            "userId": [1, 1, 1, 2, 3],
            "movieId": [10, 20, 30, 40, 50],
            "rating": [5.0, 4.0, 3.5, 4.5, 2.0],
        }
    )
    recs = pd.DataFrame(
        {
            "userId": [1, 1, 1, 2, 2, 2],
            "rank": [1, 2, 3, 1, 2, 3],
            "movieId": [10, 99, 20, 10, 20, 30],
        }
    )
    m = topn_metrics(recs, test, k=3, threshold=4.0, catalogue_size=10)
    d = [1 / math.log2(r + 1) for r in (1, 2, 3)]
    assert m["n_eval_users"] == 2
    assert m["precision@3"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["recall@3"] == pytest.approx((1.0 + 0) / 2)
    assert m["hitrate@3"] == pytest.approx(0.5)
    assert m["ndcg@3"] == pytest.approx(((d[0] + d[2]) / (d[0] + d[1]) + 0) / 2)
    assert m["coverage@3"] == pytest.approx(4 / 10)  # 10, 99, 20, 30


def test_user_without_list_scores_zero():
    test = pd.DataFrame({"userId": [1, 2], "movieId": [10, 20], "rating": [5.0, 5.0]})
    recs = pd.DataFrame({"userId": [1], "rank": [1], "movieId": [10]})
    m = topn_metrics(recs, test, k=10)
    assert m["hitrate@10"] == pytest.approx(0.5)
    assert m["ndcg@10"] == pytest.approx(0.5)

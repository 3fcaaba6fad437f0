import math

import pandas as pd
import pytest

from pipeline.evaluation.metrics import beyond_accuracy, mae, ndcg_by_user, rmse, topn_metrics


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


def test_ndcg_by_user_averages_to_the_reported_ndcg():
    test = pd.DataFrame(
        {"userId": [1, 1, 2, 3], "movieId": [10, 20, 40, 50], "rating": [5.0, 4.0, 4.5, 2.0]}
    )
    recs = pd.DataFrame({"userId": [1, 1, 2], "rank": [1, 2, 1], "movieId": [20, 99, 40]})
    by_user = ndcg_by_user(recs, test, k=2)
    d = [1 / math.log2(r + 1) for r in (1, 2)]
    assert by_user.to_dict() == pytest.approx({1: d[0] / (d[0] + d[1]), 2: 1.0})  # 3: none relevant
    assert by_user.mean() == pytest.approx(topn_metrics(recs, test, k=2)["ndcg@2"])


def test_beyond_accuracy_hand_computed():
    # training: 8 users; movie 1 rated by 8, 2 by 4, 3 by 2, 4 by 1 (15 ratings: the head holding
    # 80% = 12 of them is movies 1 and 2)
    counts = pd.Series({1: 8, 2: 4, 3: 2, 4: 1})
    genres = pd.DataFrame(
        {"Action": [1, 1, 0, 0], "Drama": [0, 1, 1, 0], "Comedy": [0, 0, 0, 1]}, index=[1, 2, 3, 4]
    )
    recs = pd.DataFrame(
        {"userId": [7, 7, 5, 5], "rank": [1, 2, 2, 1], "movieId": [1, 3, 4, 2]}
    )  # user 5's rows out of order on purpose
    m = beyond_accuracy(recs, counts, n_users=8, genres=genres, k=10)
    assert m["novelty"] == pytest.approx((0 + 2 + 3 + 1) / 4)  # -log2(8/8, 2/8, 1/8, 4/8)
    assert m["head_items"] == 2 and m["long_tail_share"] == pytest.approx(2 / 4)
    # user 7: {Action} vs {Drama} -> distance 1; user 5: {Action, Drama} vs {Comedy} -> 1
    assert m["diversity"] == pytest.approx(1.0)
    same = pd.DataFrame({"userId": [1, 1], "rank": [1, 2], "movieId": [2, 2]})
    assert beyond_accuracy(same, counts, 8, genres)["diversity"] == pytest.approx(0.0)


def test_ndcg_by_activity_splits_evaluated_users_in_thirds():
    test = pd.DataFrame(
        {"userId": [1, 2, 3, 4, 5, 6], "movieId": [10] * 6, "rating": [5.0] * 6}
    )  # everyone's relevant item is 10; users 1, 2 get it first, the others never
    recs = pd.DataFrame({"userId": [1, 2, 3, 4], "rank": [1] * 4, "movieId": [10, 10, 11, 11]})
    train_counts = pd.Series({1: 3, 2: 5, 3: 50, 4: 60, 5: 400, 6: 500})
    groups = topn_metrics(recs, test, k=10, train_counts=train_counts)["by_activity"]
    assert [g["users"] for g in groups] == ["light", "medium", "heavy"]
    assert [(g["min_ratings"], g["max_ratings"], g["n_users"]) for g in groups] == [
        (3, 5, 2),
        (50, 60, 2),
        (400, 500, 2),
    ]
    assert [g["ndcg@10"] for g in groups] == [1.0, 0.0, 0.0]

"""The questionnaire replay of benchmarks/onboarding.py: a user's walk down an order, and the
orders it compares, on tiny hand-made frames."""

from __future__ import annotations

import pandas as pd

from benchmarks.onboarding import pop_entropy_order, walk


def test_a_walk_answers_the_first_k_rated_movies_and_counts_what_was_looked_at():
    user = pd.DataFrame({"movieId": [5, 3, 9], "rating": [4.0, 2.5, 5.0]})
    order = [1, 3, 2, 9, 5, 7]
    assert walk(user, order, 2, limit=100) == ([(3, 2.5), (9, 5.0)], 4)
    assert walk(user, order, 5, limit=100) == ([(3, 2.5), (9, 5.0), (5, 4.0)], 6)  # list ends
    assert walk(user, order, 3, limit=3) == ([(3, 2.5)], 3)  # gives up after `limit` movies


def test_pop_entropy_prefers_popular_movies_people_disagree_about():
    ratings = pd.DataFrame(
        {
            "movieId": [1] * 4 + [2] * 4 + [3] * 2,
            "rating": [5.0, 5.0, 5.0, 5.0, 1.0, 5.0, 3.0, 4.0, 1.0, 5.0],
        }
    )
    # 1: four ratings, all agree (entropy 0); 2: four, all differ; 3: two that differ
    assert pop_entropy_order(ratings) == [2, 3, 1]

"""The offline check of watching together (pipeline.evaluation.groups) on the tiny two-taste
world of test_live_model: scores worked out by hand from the group's own list."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from contract.groups import as_members, recommend_group
from pipeline.evaluation.groups import evaluate_groups, member_signals
from tests.contract.test_live_model import fitted, model  # noqa: F401  (fixtures)


def test_a_movie_both_members_loved_scores_where_the_group_list_puts_it(model):  # noqa: F811
    history = {
        1: (np.array([1, 2, 3]), np.array([5.0, 4.5, 5.0])),
        2: (np.array([4, 5]), np.array([5.0, 4.0])),
    }
    own = recommend_group(
        model, as_members(model, [member_signals(h) for h in history.values()]), 10
    )
    pick = int(own.movie_ids[1])  # second on the group's list
    held_out = pd.DataFrame(
        {"userId": [1, 2, 2], "movieId": [pick, pick, 39], "rating": [5.0, 4.0, 2.0]}
    )
    rows = evaluate_groups(model, history, held_out, popular=[1, 39, 40], k=10, sizes=(2, 3))
    by = {r["by"]: r for r in rows}
    assert [r["size"] for r in rows] == [2] * 4  # no group of 3 out of two users
    assert by["no-misery"]["groups"] == 100 and by["no-misery"]["hit_rate"] == 1.0
    assert by["no-misery"]["ndcg@10"] == pytest.approx(1 / np.log2(3))
    assert by["no-misery"]["least@10"] == pytest.approx(1 / np.log2(3))
    # popularity: 1 is seen, 39 and 40 are not what they loved
    assert by["popularity"]["hit_rate"] == 0.0 and by["popularity"]["ndcg@10"] == 0.0

"""A group's list (contract.groups) on the tiny two-taste world of test_live_model."""

from __future__ import annotations

import numpy as np
import pytest

from contract.groups import CANDIDATES, MISERY, as_members, misery_floors, recommend_group
from contract.live_model import recommend_live
from tests.contract.test_live_model import fitted, model, signals  # noqa: F401  (fixtures)


def test_no_misery_list_leaves_out_what_anyone_saw_or_would_dislike(model):  # noqa: F811
    action, comedy = signals({1: 5.0, 2: 4.5, 3: 5.0}), signals({21: 5.0, 22: 4.0}, hidden={23})
    out = recommend_group(model, [action, comedy], 20)
    listed = out.movie_ids.tolist()
    assert listed and not {1, 2, 3, 21, 22, 23} & set(listed)
    assert (out.predicted >= MISERY).all()
    assert (out.places.max(axis=1) > 0).all()  # every movie is in a member's own list
    assert list(out.scores) == sorted(out.scores, reverse=True)
    own = recommend_live(model, action, CANDIDATES, because=False).movie_ids.tolist()
    for k, m in enumerate(listed):
        expected = 1 - own.index(m) / CANDIDATES if m in own else 0.0
        assert out.places[k, 0] == pytest.approx(expected)
    # the average without the veto keeps what the veto left out; least misery ranks by it
    everything = recommend_group(model, [action, comedy], 100, rule="average").movie_ids
    assert set(listed) <= set(everything.tolist())
    least = recommend_group(model, [action, comedy], 100, rule="least-misery")
    assert list(least.scores) == sorted(least.scores, reverse=True)
    assert np.allclose(least.scores, least.predicted.min(axis=1))


def test_kept_members_give_the_same_list(model):  # noqa: F811
    sigs = [signals({1: 5.0}), signals({21: 5.0}), signals({30: 4.0}, disliked={31})]
    fresh = recommend_group(model, sigs, 10)
    kept = recommend_group(model, as_members(model, sigs), 10)
    assert fresh.movie_ids.tolist() == kept.movie_ids.tolist()
    np.testing.assert_array_equal(fresh.predicted, kept.predicted)
    with pytest.raises(ValueError):
        recommend_group(model, sigs, 10, rule="median")


def test_a_member_who_rates_everything_low_vetoes_below_their_own_mean(model):  # noqa: F811
    harsh = signals({21: 1.5, 22: 1.0, 5: 2.0})
    fan = signals({1: 5.0, 2: 4.5})
    kept = as_members(model, [fan, harsh])
    floors = misery_floors(kept)
    assert floors.tolist() == [MISERY, pytest.approx(1.5)]
    out = recommend_group(model, kept, 10)
    assert len(out.movie_ids) and (out.predicted >= floors).all()
    # with the absolute veto only, the harsh member's predictions leave out more
    assert (out.predicted[:, 1] < MISERY).any()
    assert misery_floors(as_members(model, [signals(genres=["Comedy"])])).tolist() == [MISERY]

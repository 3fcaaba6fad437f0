"""More variety on request (contract.diversity) on hand-made lists."""

from __future__ import annotations

import numpy as np
import pytest

from contract.diversity import genre_similarity, rerank


def test_genre_similarity_is_the_jaccard_index():
    sim = genre_similarity([["Action", "Sci-Fi"], ["Action"], ["Drama"], []])
    assert sim[0, 1] == pytest.approx(0.5)
    assert sim[0, 2] == sim[1, 2] == 0.0
    assert sim[3, 3] == 1.0 and sim[2, 3] == 0.0  # no genres: similar to nothing else
    np.testing.assert_array_equal(sim, sim.T)


def test_no_diversity_keeps_the_list():
    sim = genre_similarity([["Action"]] * 6)
    assert rerank(sim, 0.0, 4) == [0, 1, 2, 3]
    assert rerank(sim, 0.0, 10) == list(range(6))


def test_diversity_trades_rank_for_genres_not_yet_listed():
    genres = [["Action"], ["Action"], ["Action"], ["Comedy"], ["Drama"], ["Action", "Comedy"]]
    sim = genre_similarity(genres)
    assert rerank(sim, 1.0, 3) == [0, 3, 4]  # the best first, then the least similar, by rank
    some = rerank(sim, 0.3, 6)
    assert some[0] == 0 and sorted(some) == list(range(6))
    assert some.index(3) < 3  # the first comedy moves up past same-genre action movies
    with pytest.raises(ValueError):
        rerank(sim, 1.5, 3)

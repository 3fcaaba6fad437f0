"""Tests of similar movies (pipeline/models/similarity.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from pipeline.data.tmdb import load_metadata
from pipeline.features.matrix import RatingMatrix
from pipeline.features.tables import movie_text
from pipeline.models.similarity import (
    SimilarityConfig,
    SimilarLists,
    SimilarMovies,
    all_similar,
    list_arrays,
)
from tests.support.paths import BUNDLED as RESOURCES
from tests.support.paths import TMDB


def _content(movies: pd.DataFrame, tags: pd.DataFrame) -> pd.Series:
    """movieId -> genres and distinct tags, lower case (what the features module builds)."""
    text = {
        int(m): g.lower().replace("|", " ") for m, g in zip(movies["movieId"], movies["genres"])
    }
    for movie, group in tags.dropna(subset=["tag"]).groupby("movieId")["tag"]:
        if int(movie) in text:
            text[int(movie)] += " " + " ".join(sorted(set(group.str.lower())))
    return pd.Series(text)


@pytest.fixture(scope="module")
def bundled():
    movies = pd.read_csv(RESOURCES / "movies.csv")
    tags = pd.read_csv(RESOURCES / "tags.csv")
    ratings = pd.read_csv(RESOURCES / "ratings.csv")
    return RatingMatrix.from_frame(ratings), _content(movies, tags)


@pytest.fixture(scope="module")
def fitted(bundled):
    matrix, text = bundled
    return SimilarMovies().fit(matrix, text)


@pytest.fixture(scope="module")
def pipeline_fitted(bundled):
    """Fitted as the pipeline fits it: the full ml-latest-small ratings and ``movie_text`` of
    genres, user tags and the bundled TMDB keywords, default config."""
    matrix, _ = bundled
    movies = pd.read_csv(RESOURCES / "movies.csv")
    tags = pd.read_csv(RESOURCES / "tags.csv")
    links = pd.read_csv(RESOURCES / "links.csv")
    return SimilarMovies().fit(matrix, movie_text(movies, tags, links, load_metadata(TMDB)))


def _ids(neighbours):
    return [m for m, _ in neighbours]


TOY_STORY, TOY_STORY_2, TOY_STORY_3 = 1, 3114, 78499
A_NEW_HOPE, EMPIRE, JEDI = 260, 1196, 1210
PREQUELS = {2628, 5378, 33493}  # Episodes I, II, III


def test_real_titles_toy_story(pipeline_fitted):
    (toy,) = pipeline_fitted.neighbors(np.array([TOY_STORY]))
    ids = _ids(toy)
    assert len(ids) == pipeline_fitted.config.n_neighbors
    assert ids[0] == TOY_STORY_2, ids  # the closest neighbour is the sequel
    assert TOY_STORY_3 in ids[:10], ids
    (toy2,) = pipeline_fitted.neighbors(np.array([TOY_STORY_2]))
    assert TOY_STORY in _ids(toy2)[:5]


def test_real_titles_star_wars(pipeline_fitted):
    hope, empire = pipeline_fitted.neighbors(np.array([A_NEW_HOPE, EMPIRE]))
    assert _ids(hope)[:2] == [EMPIRE, JEDI] or _ids(hope)[:2] == [JEDI, EMPIRE], _ids(hope)
    assert PREQUELS & set(_ids(hope)[:10]), _ids(hope)  # at least one prequel near the top
    assert len(PREQUELS & set(_ids(hope))) >= 2, _ids(hope)
    assert {A_NEW_HOPE, JEDI} <= set(_ids(empire)[:3]), _ids(empire)


def test_toy_story_neighbours_include_toy_story_2(fitted):
    (toy,) = fitted.neighbors(np.array([1]))
    assert 3114 in _ids(toy)[:10]


def test_star_wars_neighbours_include_the_sequels(fitted):
    (sw,) = fitted.neighbors(np.array([260]))
    assert {1196, 1210} <= set(_ids(sw)[:5])


def test_neighbour_lists_are_well_formed(fitted):
    ids = np.array([1, 260, 2571, 193609])
    for movie, lst in zip(ids, fitted.neighbors(ids)):
        assert 0 < len(lst) <= fitted.config.n_neighbors
        assert movie not in _ids(lst)
        scores = [s for _, s in lst]
        assert scores == sorted(scores, reverse=True)
        assert all(s > 0 for s in scores)
        assert len(set(_ids(lst))) == len(lst)


def test_unknown_movie_gets_empty_list(fitted):
    assert fitted.neighbors(np.array([-5, 1]))[0] == []


def test_content_covers_movies_without_ratings(bundled):
    matrix, text = bundled
    extra = pd.concat([text, pd.Series({10_000_001: "animation children pixar toys"})])
    sim = SimilarMovies().fit(matrix, extra)
    (lst,) = sim.neighbors(np.array([10_000_001]))
    assert lst, "an unrated movie must get content neighbours"
    assert 10_000_001 in sim.movie_ids_


def test_weights_switch_the_signal(bundled):
    matrix, text = bundled
    cf_only = SimilarMovies(SimilarityConfig(content_weight=0.0)).fit(matrix, text)
    content_only = SimilarMovies(SimilarityConfig(content_weight=1.0)).fit(matrix, text)
    # a movie with no rating has no collaborative neighbours at all
    unrated = np.setdiff1d(text.index.to_numpy(np.int64), matrix.item_ids)[:1]
    assert len(unrated) == 1
    assert cf_only.neighbors(unrated)[0] == []
    assert content_only.neighbors(unrated)[0] != []
    # content-only neighbours of Toy Story share its genres
    genres = set(text[1].split())
    for movie, _ in content_only.neighbors(np.array([1]))[0][:5]:
        assert genres & set(text[movie].split())


def test_all_similar_matches_neighbors(bundled):
    matrix, text = bundled
    sim = SimilarMovies(SimilarityConfig(n_neighbors=5, block=211)).fit(matrix, text)
    seen = 0
    sample = {1, 260, 2571}
    for movie, lst in all_similar(sim).items():
        seen += 1
        if movie in sample:
            (expected,) = sim.neighbors(np.array([movie]))
            assert _ids(lst) == _ids(expected)
            np.testing.assert_allclose([s for _, s in lst], [s for _, s in expected], rtol=1e-6)
    assert (
        seen
        == len(sim.movie_ids_)
        == len(np.union1d(matrix.item_ids, text.index.to_numpy(np.int64)))
    )


def test_all_similar_on_the_workers_is_the_same_as_in_process(bundled, dask_cluster):
    """The similar lists of every movie, computed by tasks on a two-process cluster reached by
    its address, are those computed in this process, in movie id order."""
    from distributed import Client

    matrix, text = bundled
    sim = SimilarMovies(SimilarityConfig(n_neighbors=5, block=700)).fit(matrix, text)
    expected = all_similar(sim)
    with Client(dask_cluster.scheduler_address) as client:
        on_workers = all_similar(sim, client)
    assert list(on_workers) == sorted(expected)
    for movie, here in expected.items():
        same_up_to_rounding(on_workers[movie], here)


def same_up_to_rounding(a, b, tol: float = 1e-5) -> None:
    """Two similar lists, equal but for float32 rounding: a worker's BLAS runs one thread, this
    process's two, and the dense content product may round differently in the last bit. So the
    scores agree within ``tol`` place by place, and a movie in one list but not at that place
    in the other ties (within ``tol``) with what stands there."""
    assert len(a) == len(b)
    np.testing.assert_allclose([s for _, s in a], [s for _, s in b], rtol=0, atol=tol)
    where_b = dict(b)
    for (m, s), (other, s_other) in zip(a, b):
        if m != other:
            assert abs(s - s_other) <= tol and (m not in where_b or abs(where_b[m] - s) <= tol)


def test_a_copy_without_rows_scores_blocks_from_the_rows_given(bundled):
    """What the workers get (no movie's own rows) and what each task brings give the lists of
    the whole model; the copy holds neither the movies' ratings nor their terms."""
    matrix, text = bundled
    sim = SimilarMovies(SimilarityConfig(n_neighbors=5, block=700)).fit(matrix, text)
    shared = sim.without_rows()
    assert shared.ratings_ is None and shared.tfidf_ is None and sim.ratings_ is not None
    for lo, hi in ((0, 700), (700, 1500), (len(sim.movie_ids_) - 3, len(sim.movie_ids_))):
        expected = sim.block_lists(lo, hi)
        got = shared.block_lists(lo, hi, sim.rows_of(lo, hi))
        assert all(np.array_equal(a, b) for a, b in zip(got, expected))


def test_similar_lists_are_a_mapping_of_compact_rows():
    lists = SimilarLists.from_blocks(
        np.array([3, 5, 9]),
        [
            (np.array([2, 0]), np.array([5, 9]), np.array([0.5, 0.25], np.float32)),
            (np.array([1]), np.array([3]), np.array([0.75], np.float32)),
        ],
    )
    assert dict(lists) == {3: [(5, 0.5), (9, 0.25)], 5: [], 9: [(3, 0.75)]}
    assert lists.get(4) is None and len(lists) == 3 and list(lists) == [3, 5, 9]
    wanted = [9, 4, 3]  # any order, and a movie without a list
    for got, expected in zip(list_arrays(lists, wanted), list_arrays(dict(lists), wanted)):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(list_arrays(lists, wanted)[0], [0, 1, 1, 3])


def test_shrinkage_damps_thin_evidence():
    # movies 1 and 2 are co-rated by one user only; 3 and 4 by thirty
    rows = [(1, 1, 5.0), (1, 2, 5.0)]
    rows += [(u, m, 4.0) for u in range(10, 40) for m in (3, 4)]
    matrix = RatingMatrix.from_frame(pd.DataFrame(rows, columns=["userId", "movieId", "rating"]))
    text = pd.Series({1: "alpha", 2: "beta", 3: "gamma", 4: "delta"})
    sim = SimilarMovies(SimilarityConfig(content_weight=0.0, shrinkage=5.0)).fit(matrix, text)
    thin, thick = sim.neighbors(np.array([1, 3]))
    assert thin[0][0] == 2 and thick[0][0] == 4
    assert thick[0][1] - thin[0][1] > 0.3  # 1/(1+5) vs 19.2/(19.2+5)
    unshrunk = SimilarMovies(replace(sim.config, shrinkage=0.0)).fit(matrix, text)
    assert unshrunk.neighbors(np.array([1]))[0][0][1] == pytest.approx(1.0)


def test_texts_without_terms_fall_back_to_ratings():
    rows = [(u, m, 4.0) for u in range(5) for m in (1, 2)]
    matrix = RatingMatrix.from_frame(pd.DataFrame(rows, columns=["userId", "movieId", "rating"]))
    sim = SimilarMovies().fit(matrix, pd.Series({1: "", 2: "a"}))
    assert sim.tfidf_.shape == (2, 0)
    assert [m for m, _ in sim.neighbors(np.array([1]))[0]] == [2]


def test_zero_shrinkage_with_unrated_movies(bundled):
    matrix, text = bundled
    sim = SimilarMovies(SimilarityConfig(shrinkage=0.0)).fit(matrix, text)
    unrated = np.setdiff1d(text.index.to_numpy(np.int64), matrix.item_ids)[:1]
    for lst in sim.neighbors(np.concatenate([unrated, [1]])):
        assert lst and all(np.isfinite(s) for _, s in lst)

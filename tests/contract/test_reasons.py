"""Reasons with their evidence (contract.reasons) and the terms they are taken from
(pipeline.features.tables.telling_terms), on hand-made data."""

from __future__ import annotations

from contract.reasons import evidence, explained, shared_terms
from pipeline.features.tables import telling_terms


def test_shared_terms_keep_the_first_movies_order_and_stop_at_three():
    assert shared_terms(["heist", "bank", "crime", "drama"], {"drama", "crime", "heist", "x"}) == [
        "heist",
        "crime",
        "drama",
    ]
    assert shared_terms(["a", "b"], ["c"]) == []


def test_explained_appends_the_evidence_to_a_copy():
    liked = {"kind": "because_you_liked", "movieId": 6, "text": "Because you liked Heat (1995)"}
    out = explained(liked, ["heist movie", "one last job"])
    assert out["text"] == "Because you liked Heat (1995): also heist movie and one last job"
    assert out["evidence"] == ["heist movie", "one last job"] and "evidence" not in liked
    taste = explained({"kind": "taste_match", "text": "Matches the movies you rated"}, ["Drama"])
    assert taste["text"] == "Matches the movies you rated: Drama"
    assert explained(liked, []) == liked  # nothing to show: the plain reason


def test_telling_terms_are_shared_ones_rarest_first_then_the_genres():
    terms = {
        1: ["crime", "heist", "bank", "unique"],
        2: ["crime", "heist", "bank"],
        3: ["crime", "bank"],
        4: ["crime"],
    }
    out = telling_terms(terms, {1: ["Crime", "Thriller"], 4: ["Drama"]})
    assert out[1] == ["heist", "bank", "crime", "thriller"]  # "unique": no other movie has it
    assert out[4] == ["crime", "drama"]
    assert telling_terms(terms, max_terms=1)[1] == ["heist"]


def test_evidence_by_reason_kind():
    liked = {"kind": "because_you_liked", "movieId": 6, "text": "Because you liked Heat (1995)"}
    terms = ["heist", "crime", "drama"]
    assert evidence(liked, ["Crime"], terms, ["drama", "heist"]) == ["heist", "drama"]
    taste = {"kind": "taste_match", "text": "Matches the movies you rated"}
    persona = ["Drama", "Crime", "War", "Romance"]
    assert evidence(taste, ["Romance", "Crime", "Drama", "War"], terms, persona=persona) == [
        "Drama",
        "Crime",
        "War",
    ]  # the persona's order, at most three
    picked = {"kind": "genre_match", "text": "Matches the genres you picked"}
    assert evidence(picked, ["Comedy", "Drama"], terms, stated=["Drama"]) == ["Drama"]
    assert evidence({"kind": "popular", "text": "Popular"}, ["Drama"], terms, persona=persona) == []

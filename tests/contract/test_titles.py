from contract.titles import display_name, fold, search_key


def test_fold_removes_accents_case_and_punctuation():
    assert (
        fold("Amélie (Fabuleux destin d'Amélie Poulain, Le)")
        == "amelie fabuleux destin d amelie poulain le"
    )
    assert fold("  WALL·E ") == "wall e"


def test_articles_move_to_the_front():
    assert display_name("Matrix, The") == "The Matrix"
    assert display_name("American President, The") == "The American President"
    assert (
        display_name("Star Wars: Episode IV - A New Hope") == "Star Wars: Episode IV - A New Hope"
    )
    assert search_key("Matrix, The") == "the matrix"

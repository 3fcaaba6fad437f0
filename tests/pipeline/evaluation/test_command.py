"""``python -m pipeline evaluate``: the files the peer harness scores, from a real local cluster."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from tests.support.pipeline_sample import write_sample


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """A 40-user sample of the bundled data with a random 10% of its ratings held out."""
    root = tmp_path_factory.mktemp("evaluate")
    sample = write_sample(root / "ml-sample", max_user=40)
    ratings = pd.read_csv(sample / "ratings.csv")
    held = np.random.default_rng(0).random(len(ratings)) < 0.1
    ratings[~held].to_csv(root / "train.csv", index=False)
    ratings[held].to_csv(root / "test.csv", index=False)
    return root, sample, ratings[~held], ratings[held].reset_index(drop=True)


def _evaluate(root, sample, name, *extra) -> tuple[pd.DataFrame, pd.DataFrame]:
    pred, recs = root / f"pred_{name}.csv", root / f"recs_{name}.csv"
    argv = ["-q", "evaluate", "--train", str(root / "train.csv"), "--test", str(root / "test.csv")]
    argv += ["--predictions", str(pred), "--recommendations", str(recs)]
    argv += ["--movies-from", str(sample), "--workers", "1", *extra]
    assert main(argv) == 0
    return pd.read_csv(pred), pd.read_csv(recs)


def test_writes_a_prediction_per_test_row_and_ten_unseen_movies_per_test_user(split):
    root, sample, train, test = split
    pred, recs = _evaluate(root, sample, "tmdb")
    assert pred[["userId", "movieId"]].equals(test[["userId", "movieId"]])
    assert pred["prediction"].between(0.5, 5.0).all()
    assert np.sqrt(np.mean((pred["prediction"] - test["rating"]) ** 2)) < np.std(test["rating"])
    assert set(recs["userId"]) == set(test["userId"])
    assert all(ranks == list(range(1, 11)) for ranks in recs.groupby("userId")["rank"].agg(list))
    seen = set(zip(train["userId"], train["movieId"]))
    assert not any((u, m) in seen for u, m in zip(recs["userId"], recs["movieId"]))

    # the bundled TMDB votes reach the rating model: leaving them out changes the predictions
    bare, bare_recs = _evaluate(root, sample, "bare", "--no-tmdb")
    assert bare[["userId", "movieId"]].equals(pred[["userId", "movieId"]])
    assert not np.allclose(bare["prediction"], pred["prediction"])
    # and the TMDB keywords reach the top-N model (its content terms): the lists change
    assert not bare_recs.equals(recs)

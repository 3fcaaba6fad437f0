import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from contract.clusters import ClusterAssigner
from pipeline.models.clustering import ClusterConfig, UserClustering


def _blobs(n_per=60, k=3, g=19, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.random((k, g))
    x = np.abs(np.vstack([c + 0.04 * rng.standard_normal((n_per, g)) for c in centers]))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return pd.DataFrame(x, index=np.arange(1, len(x) + 1)), np.repeat(np.arange(k), n_per), centers


@pytest.mark.parametrize("landmarks", [1000, 40])  # exact, then the Nystroem approximation
def test_recovers_planted_clusters_and_chooses_k_by_eigengap(landmarks):
    x, truth, _ = _blobs()
    model = UserClustering(ClusterConfig(k_min=2, k_max=8, n_landmarks=landmarks)).fit(x)
    assert model.exact_ == (landmarks >= len(x))
    assert model.n_clusters_ == 3
    assert adjusted_rand_score(truth, model.labels_) == pytest.approx(1.0)


def test_override_k():
    x, _, _ = _blobs()
    assert UserClustering(ClusterConfig(n_clusters=5, k_min=2)).fit(x).n_clusters_ == 5


def test_new_user_is_assigned_to_the_cluster_of_similar_users():
    x, truth, centers = _blobs()
    model = UserClustering(ClusterConfig(k_min=2)).fit(x)
    labels = model.labels_.to_numpy()
    rng = np.random.default_rng(5)
    for c in range(3):
        new = np.abs(centers[c] + 0.04 * rng.standard_normal(centers.shape[1]))
        new /= np.linalg.norm(new)
        expected = np.bincount(labels[truth == c]).argmax()
        assert model.assign(new[None, :])[0] == expected
    # training users are assigned to their own clusters
    assert (model.assign(x.to_numpy()) == labels).mean() > 0.98


def test_assigner_round_trips_through_a_dict():
    x, _, _ = _blobs()
    model = UserClustering(ClusterConfig(k_min=2)).fit(x)
    again = ClusterAssigner.from_dict(model.assigner_.to_dict())
    assert np.array_equal(again.assign(x.to_numpy()), model.assign(x.to_numpy()))

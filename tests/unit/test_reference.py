import numpy as np
import pytest

from fmnist.runtime.evaluation import frechet_distance
from fmnist.runtime.reference import FEATURES, REFERENCE_GRAPH, reference_features


def test_frechet_distance_is_zero_for_one_set_and_the_mean_shift_for_a_moved_one():
    a = np.random.default_rng(0).normal(size=(5000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, a + np.array([3.0, 0.0, 4.0])) == pytest.approx(25.0, rel=1e-6)


def test_frechet_distance_of_two_known_gaussians():
    # N(0, I) vs N(0, 4 I) in 2-D: tr(I + 4I - 2 * 2I) = 2 * (1 + 4 - 4) = 2
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200_000, 2)), 2 * rng.normal(size=(200_000, 2))
    assert frechet_distance(a, b) == pytest.approx(2.0, abs=0.05)


def test_the_reference_network_ships_and_gives_fixed_features():
    assert REFERENCE_GRAPH.is_file()
    images = np.zeros((3, 28, 28), np.float32)
    images[1, 5:20, 8:20] = 1.0
    f = reference_features(images)
    assert f.shape == (3, FEATURES) and np.isfinite(f).all()
    assert np.allclose(f[0], reference_features(images[:1])[0])
    assert not np.allclose(f[0], f[1])

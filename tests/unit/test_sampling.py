import numpy as np
import pytest
from scipy import linalg
from sklearn.decomposition import PCA
from sklearn.neighbors import KernelDensity

from fmnist.serve.inference import frechet_distance, kde_sample


def test_kde_sampling_matches_scikit_learn_draw_for_draw():
    points = np.random.default_rng(0).normal(size=(300, 5))
    kde = KernelDensity(bandwidth=0.37).fit(points)
    for seed in (0, 7):
        assert np.array_equal(
            kde_sample(np.asarray(kde.tree_.data), kde.bandwidth_, 50, seed), kde.sample(50, random_state=seed)
        )


def test_kde_pca_path_matches_inverse_transform():
    latents = np.random.default_rng(1).normal(size=(200, 8))
    pca = PCA(2).fit(latents)
    kde = KernelDensity(bandwidth=0.5).fit(pca.transform(latents))
    coords = kde_sample(np.asarray(kde.tree_.data), kde.bandwidth_, 20, 3)
    assert np.allclose(coords @ pca.components_ + pca.mean_, pca.inverse_transform(kde.sample(20, random_state=3)))


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(500, 6)), rng.normal(1.0, 2.0, size=(400, 6))
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(sa + sb - 2 * linalg.sqrtm(sa @ sb).real)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)

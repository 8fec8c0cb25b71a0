import numpy as np
import pytest
from scipy import linalg
from sklearn.decomposition import PCA
from sklearn.neighbors import KernelDensity

from fmnist.runtime.evaluation import frechet_distance
from fmnist.runtime.sampling import kde_sample


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


def test_bundle_samplers_reproduce_scikit_learn_from_the_pickle_free_arrays(tmp_path):
    """Fit real PCA and KernelDensity objects, store them as samplers.npz says, and sample through
    Bundle: the same seed gives scikit-learn's samples, for both KDE samplers."""
    from fmnist.runtime.bundle import Bundle
    from tests.toybundle import SAMPLERS, build_toy_bundle

    # the toy bundle's latent size (2), one PCA component so the two widths differ
    latents = np.random.default_rng(3).normal(size=(150, 2)) * [3.0, 1.0]
    pca = PCA(1).fit(latents)
    kde_pca = KernelDensity(kernel="gaussian", bandwidth=0.3).fit(pca.transform(latents[:80]))
    kde_latent = KernelDensity(kernel="gaussian", bandwidth=0.2).fit(latents[:80])
    arrays = {
        "pca_mean": pca.mean_,
        "pca_components": pca.components_,
        "kde_pca_points": np.asarray(kde_pca.tree_.data),
        "kde_pca_bandwidth": kde_pca.bandwidth_,
        "kde_latent_points": np.asarray(kde_latent.tree_.data),
        "kde_latent_bandwidth": kde_latent.bandwidth_,
    }
    model = Bundle(build_toy_bundle(tmp_path / "b", samplers={**SAMPLERS, **arrays}), provider="cpu")
    for seed in (0, 11):
        assert np.array_equal(model.sample_latents(40, "kde", seed), kde_latent.sample(40, random_state=seed))
        want = pca.inverse_transform(kde_pca.sample(40, random_state=seed))
        assert np.allclose(model.sample_latents(40, "kde-pca", seed), want, rtol=0, atol=1e-12)
    assert not np.array_equal(model.sample_latents(40, "kde", 0), model.sample_latents(40, "kde", 1))

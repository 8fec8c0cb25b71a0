"""Bits per dimension (fmnist.runtime.likelihood) against closed forms on tiny synthetic data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fmnist.errors import BundleError
from fmnist.runtime import likelihood as lk


def test_a_uniform_density_over_the_levels_is_eight_bits():
    """Uniform over the 256 bins of width 1/255: density (255/256)^D on [0, 1] scale."""
    assert lk.bits_per_dim(np.full(5, 784 * math.log(255 / 256)), 784) == pytest.approx(8.0)
    # twice that density is one bit per dimension better; the Jacobian counts log 255 per pixel
    assert lk.bits_per_dim(np.full(3, 10 * math.log(2 * 255 / 256)), 10) == pytest.approx(7.0)
    assert lk.bits_per_dim(np.zeros(2), 7) == pytest.approx(math.log2(255))


def test_dequantize_keeps_each_pixel_inside_its_level():
    images = np.array([[[0, 1 / 255], [128 / 255, 1.0]]], dtype=np.float32)
    y = lk.dequantize(images, seed=3)
    assert y.shape == (1, 4)
    assert np.array_equal(np.floor(y * 255 + 0.5), [[0, 1, 128, 255]])
    assert np.array_equal(lk.dequantize(images, 3), y) and not np.array_equal(lk.dequantize(images, 4), y)


def test_a_fitted_gaussian_scores_its_own_data_at_the_entropy():
    """On N(0, C) draws the fitted model's mean log density tends to -(D/2)(1 + log 2 pi) - log|C|/2."""
    rng = np.random.default_rng(0)
    d = 4
    a = rng.standard_normal((d, d))
    cov = a @ a.T + np.eye(d)
    y = rng.multivariate_normal(np.ones(d), cov, size=200_000)
    model = lk.fit_gaussian(y)
    entropy = 0.5 * d * (1 + math.log(2 * math.pi)) + 0.5 * np.linalg.slogdet(cov)[1]
    assert -model.log_density(y).mean() == pytest.approx(entropy, abs=0.01)
    # and the density is scipy's multivariate normal's, written out
    point = np.array([[0.5, -1.0, 2.0, 0.0]])
    r = point - model.mean
    _, cov_fit = lk.moments(y)
    expected = -0.5 * (d * math.log(2 * math.pi) + np.linalg.slogdet(cov_fit)[1] + r @ np.linalg.solve(cov_fit, r.T))
    assert model.log_density(point)[0] == pytest.approx(expected.item(), rel=1e-9)


def test_ppca_with_d_minus_1_components_is_the_full_gaussian():
    """With q = D - 1 the noise is the last eigenvalue, so W W^T + s^2 I is the sample covariance."""
    y = np.random.default_rng(1).standard_normal((500, 6)) @ np.diag([3, 2, 1, 1, 0.5, 0.2])
    full, ppca = lk.fit_gaussian(y), lk.fit_gaussian(y, components=5)
    assert np.allclose(ppca.log_density(y), full.log_density(y))


def test_ppca_noise_is_the_mean_of_the_dropped_eigenvalues():
    """Tipping & Bishop: data with q strong axes and isotropic rest -> noise = the rest's variance."""
    rng = np.random.default_rng(2)
    y = rng.standard_normal((100_000, 5)) * np.array([4.0, 3.0, 0.5, 0.5, 0.5])
    model = lk.fit_gaussian(y, components=2)
    assert model.noise == pytest.approx(0.25, rel=0.02)
    assert sorted(model.variances) == pytest.approx([9.0, 16.0], rel=0.02)
    # fewer components cannot fit better than the full covariance on the training data
    assert model.log_density(y).mean() <= lk.fit_gaussian(y).log_density(y).mean()


def test_eigenvalues_are_floored_so_few_images_still_give_a_density():
    y = np.random.default_rng(0).random((5, 20))  # N < D: a singular sample covariance
    model = lk.fit_gaussian(y)
    assert model.variances.min() == pytest.approx(lk.NOISE_FLOOR)
    assert np.isfinite(model.log_density(y)).all()


def test_discretized_logistic_sums_to_one_over_the_256_levels():
    y = (np.arange(256)[:, None] + 0.3) / 255  # one pixel at every level
    for mean, log_scale in ((0.3, -3.0), (0.0, -6.0), (1.0, 0.5), (0.5, -9.0)):
        p = np.exp(lk.discretized_logistic(y, np.full_like(y, mean), np.full_like(y, log_scale)))
        assert p.sum() == pytest.approx(1.0, abs=1e-9)
        assert np.all(p >= 0)


def test_discretized_logistic_matches_the_cdf_difference():
    y, mean, log_scale = np.array([[100.2 / 255]]), np.array([[0.4]]), np.array([[-3.0]])

    def cdf(t):
        return 1 / (1 + math.exp(-(t - 0.4) / math.exp(-3.0)))

    expected = math.log(cdf(100.5 / 255) - cdf(99.5 / 255))
    assert lk.discretized_logistic(y, mean, log_scale)[0, 0] == pytest.approx(expected, rel=1e-9)


def test_vae_bound_with_an_exact_posterior_is_the_marginal():
    """Linear Gaussian model: z ~ N(0, 1), y | z ~ N(z w, s^2 I). With q(z|y) the exact posterior the
    importance weights are constant, so any k gives log p(y) = log N(y; 0, w w^T + s^2 I)."""
    w, s = np.array([0.8, -0.3, 0.5]), 0.2
    y = np.random.default_rng(0).standard_normal((7, 3)) * 0.5
    precision = 1 + w @ w / s**2
    post_mean, post_var = (y @ w / s**2) / precision, 1 / precision

    def encode(batch):
        return (batch @ w / s**2 / precision)[:, None], np.full((len(batch), 1), math.log(post_var))

    got = lk.vae_log_density(encode, lambda z: z * w, y, k=3, kind="gaussian", log_scale=np.full(3, math.log(s)))
    cov = np.outer(w, w) + s**2 * np.eye(3)
    expected = [-0.5 * (3 * math.log(2 * math.pi) + np.linalg.slogdet(cov)[1] + r @ np.linalg.solve(cov, r)) for r in y]
    assert got == pytest.approx(expected, rel=1e-9)
    assert post_mean.shape == (7,)


def test_manifest_likelihood_reads_old_and_new_bundles():
    kind, scales = lk.manifest_likelihood({"log_scale": -2.0}, 4)
    assert kind == "gaussian" and scales.tolist() == [-2.0] * 4
    kind, scales = lk.manifest_likelihood({"log_scale": -2.0, "likelihood": "logistic", "log_scales": [1, 2, 3, 4]}, 4)
    assert kind == "logistic" and scales.tolist() == [1, 2, 3, 4]
    with pytest.raises(BundleError, match="likelihood 'bernoulli'"):
        lk.manifest_likelihood({"log_scale": 0.0, "likelihood": "bernoulli"}, 4)
    with pytest.raises(BundleError, match="with 3 log scales"):
        lk.manifest_likelihood({"log_scale": 0.0, "likelihood": "logistic", "log_scales": [0, 1, 2]}, 4)


def test_the_bundles_k_comes_from_its_run_else_its_vae_config():
    from fmnist.runtime.evaluation import iw_samples

    assert iw_samples({"training_metrics": {"vae_iw_samples": 16}, "configs": {"vae": {"iw_samples": 4}}}) == 16
    assert iw_samples({"configs": {"vae": {"iw_samples": 4}}, "config": {"iw_samples": 100}}) == 4
    assert iw_samples({"config": {"iw_samples": 100}}) == 100

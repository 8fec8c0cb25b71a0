"""The VAE's likelihoods (Config.vae_likelihood): torch losses against the numpy ones `evaluate` uses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fmnist.config import VAE_LIKELIHOODS, Config
from fmnist.errors import ConfigError
from fmnist.runtime import likelihood as lk
from fmnist.training import losses
from fmnist.training.models import VAE


def test_the_torch_discretized_logistic_is_the_numpy_one_and_sums_to_one():
    x = torch.arange(256, dtype=torch.float64).view(256, 1) / 255  # one pixel at every level
    for mean, log_scale in ((0.3, -3.0), (0.0, -7.0), (1.0, 0.5)):
        m, s = torch.full_like(x, mean), torch.full_like(x, log_scale)
        log_p = losses.discretized_logistic(x, m, s)
        assert log_p.exp().sum().item() == pytest.approx(1.0, abs=1e-6)
        expected = lk.discretized_logistic(x.numpy(), m.numpy(), s.numpy())
        assert np.allclose(log_p.numpy(), expected, atol=1e-6)


def test_each_likelihood_in_torch_matches_evaluate_in_numpy():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    mean = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    scales = {"gaussian": torch.tensor(-2.0, dtype=torch.float64), "gaussian-pixel": None, "logistic": None}
    for kind in VAE_LIKELIHOODS:
        log_scale = scales[kind] if scales[kind] is not None else torch.randn(1, 28, 28, dtype=torch.float64) - 3
        got = losses.reconstruction_log_likelihood(x, mean, log_scale, kind)
        flat = np.broadcast_to(log_scale.numpy().reshape(-1), (784,))
        expected = lk.decoder_log_density(kind, x.numpy().reshape(3, -1), mean.numpy().reshape(3, -1), flat)
        assert np.allclose(got.numpy(), expected), kind


def test_per_pixel_optimal_scales_fit_each_pixel_and_keep_the_floor():
    x = torch.zeros(8, 1, 28, 28)
    x[:, 0, 10, 10] = torch.linspace(0, 1, 8)
    mean = torch.zeros_like(x)
    log_sigma = losses.optimal_log_scale(x, mean, "gaussian-pixel")
    assert log_sigma.shape == (1, 28, 28)
    assert log_sigma[0, 10, 10].item() == pytest.approx(0.5 * math.log((x[:, 0, 10, 10] ** 2).mean().item()))
    assert log_sigma[0, 0, 0].item() == pytest.approx(0.5 * math.log(losses.LEVEL_VARIANCE))
    logistic = losses.optimal_log_scale(x, mean, "logistic")
    assert torch.allclose(logistic, log_sigma + 0.5 * math.log(3) - math.log(math.pi))
    assert losses.optimal_log_scale(x, mean).shape == ()


def test_dequantized_targets_stay_in_their_level():
    x = torch.tensor([0.0, 1 / 255, 0.5, 1.0])
    y = losses.likelihood_target(x, "gaussian-pixel")
    assert torch.equal(torch.round(y * 255), torch.round(x * 255)) and not torch.equal(y, x)
    assert torch.equal(losses.likelihood_target(x, "logistic"), x)


@pytest.mark.parametrize("kind", VAE_LIKELIHOODS)
def test_a_vae_of_each_likelihood_has_its_scales_and_a_finite_bound(kind):
    torch.manual_seed(0)
    vae = VAE(Config(arch="seed", vae_likelihood=kind)).eval()
    assert vae.log_scale.shape == (() if kind == "gaussian" else (1, 28, 28))
    x = torch.rand(4, 1, 28, 28)
    log_px = losses.importance_weighted_log_px(vae, x, k=3)
    assert log_px.shape == (4,) and torch.isfinite(log_px).all()


def test_an_unknown_likelihood_is_refused_naming_the_flag():
    with pytest.raises(ConfigError, match="--vae-likelihood must be one of gaussian, gaussian-pixel, logistic"):
        Config(vae_likelihood="bernoulli")

"""Losses as pure functions of tensors."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_2PI = math.log(2 * math.pi)


def l1_penalty(module: nn.Module) -> torch.Tensor:
    """sum |w| over the module's weight matrices and kernels (biases excluded)."""
    return sum(p.abs().sum() for name, p in module.named_parameters() if name.endswith("weight"))


def ae_loss(recon: torch.Tensor, x: torch.Tensor, module: nn.Module, l1: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(regularised loss, pure pixel MSE). L2 is Adam's weight decay, not part of the loss."""
    mse = F.mse_loss(recon, x)
    return (mse + l1 * l1_penalty(module) if l1 else mse), mse


def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, exp(log_scale)^2) summed over the pixels, (B,) in nats."""
    ll = -0.5 * ((x - mean) / log_scale.exp()) ** 2 - log_scale - 0.5 * LOG_2PI
    return ll.flatten(1).sum(1)


# The VAE's likelihoods of the pixels given the decoder's mean (fmnist.config.VAE_LIKELIHOODS),
# as fmnist.runtime.likelihood computes them in numpy for `fmnist evaluate`
STEP = 255  # pixel = 8-bit level / STEP
LEVEL_VARIANCE = 1.0 / (12 * STEP**2)  # a uniform level's variance: the per-pixel scales' floor


def dequantize(x: torch.Tensor) -> torch.Tensor:
    """Pixels level / 255 -> (level + u - 1/2) / 255, u ~ U(0, 1): a continuous density fitted to
    these cannot pile its mass on the exact levels (Theis et al. 2016, section 3.1)."""
    return (torch.round(x * STEP) + torch.rand_like(x) - 0.5) / STEP


def likelihood_target(x: torch.Tensor, likelihood: str) -> torch.Tensor:
    """What the likelihood scores: dequantized pixels for the per-pixel Gaussian (whose scales
    would otherwise shrink onto the always-black border), the pixels themselves otherwise."""
    return dequantize(x) if likelihood == "gaussian-pixel" else x


def discretized_logistic(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(level | logistic(mean, scale)) per pixel: the logistic's mass on the level's bin
    [level - 1/2, level + 1/2] / 255, the end bins open (Salimans et al. 2017, PixelCNN++, eq. 2)."""
    centre, half = torch.round(x * STEP) / STEP, 0.5 / STEP
    inv = torch.exp(-log_scale)
    inf = torch.full_like(centre, math.inf)
    upper = torch.where(centre >= 1 - half, inf, (centre + half - mean) * inv)
    lower = torch.where(centre <= half, -inf, (centre - half - mean) * inv)
    # sigmoid(a) - sigmoid(b) = sigmoid(-b) - sigmoid(-a): take the side where both are small
    flip = (upper + lower) > 0
    a, b = torch.where(flip, -lower, upper), torch.where(flip, -upper, lower)
    gap = torch.exp(F.logsigmoid(b) - F.logsigmoid(a)).clamp(max=1 - 1e-6)
    return F.logsigmoid(a) + torch.log1p(-gap)


def reconstruction_log_likelihood(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, likelihood: str = "gaussian"
) -> torch.Tensor:
    """log p(x | decoded mean) summed over the pixels, (B,) nats; a discrete likelihood's
    probability counts as a density on the levels' bins (+ log 255 per pixel), so every kind is
    on the scale of a density of dequantized pixels."""
    if likelihood == "logistic":
        return (discretized_logistic(x, mean, log_scale) + math.log(STEP)).flatten(1).sum(1)
    return gaussian_log_likelihood(x, mean, log_scale)


def optimal_log_scale(x: torch.Tensor, mean: torch.Tensor, likelihood: str = "gaussian") -> torch.Tensor:
    """The log scale that maximises the likelihood of ``x`` given ``mean``: for the shared Gaussian
    log sqrt(MSE), the calibrated decoder of the sigma-VAE (Rybkin et al. 2021, eq. 5); per pixel,
    the log RMS error of each pixel over the batch (floored at a level's variance), and for the
    logistic the scale of the same variance (s = sqrt(3) sigma / pi, a moment match).

    Kept out of the gradient: at this value the likelihood's derivative in the scale is zero.
    """
    if likelihood == "gaussian":
        return 0.5 * torch.log(F.mse_loss(mean, x).detach().clamp_min(1e-8))
    log_sigma = 0.5 * torch.log(((mean - x) ** 2).detach().mean(0).clamp_min(LEVEL_VARIANCE))  # (1, 28, 28)
    return log_sigma if likelihood == "gaussian-pixel" else log_sigma + 0.5 * math.log(3) - math.log(math.pi)


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) in closed form, (B,).

    Kingma and Welling 2014, appendix B: -1/2 * sum(1 + log s^2 - mu^2 - s^2).
    """
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


def elbo_terms(
    x, recon, mu, logvar, log_scale, likelihood: str = "gaussian"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ELBO, reconstruction log-likelihood, KL), each (B,) in nats per image; ``x`` the
    likelihood's target (:func:`likelihood_target`)."""
    rec = reconstruction_log_likelihood(x, recon, log_scale, likelihood)
    kl = kl_to_standard_normal(mu, logvar)
    return rec - kl, rec, kl


def diag_gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag exp(logvar)) summed over the last axis."""
    return (-0.5 * ((z - mu) ** 2 / logvar.exp() + logvar + LOG_2PI)).sum(-1)


@torch.no_grad()
def importance_weighted_log_px(vae, x: torch.Tensor, k: int) -> torch.Tensor:
    """log p(x) estimated with k importance samples from q(z|x) (Burda et al. 2016), (B,).

    log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x); at k=1 it is the ELBO in expectation and it
    rises towards log p(x) as k grows.
    """
    mu, logvar = vae.encode(x)  # (B, d)
    eps = torch.randn(k, *mu.shape, device=x.device)  # (k, B, d)
    z = mu + torch.exp(0.5 * logvar) * eps
    recon = vae.decoder(z.flatten(0, 1)).view(k, *x.shape)  # (k, B, 1, 28, 28)
    target = likelihood_target(x, vae.likelihood).expand_as(recon).flatten(0, 1)
    log_px_z = reconstruction_log_likelihood(target, recon.flatten(0, 1), vae.log_scale, vae.likelihood).view(k, -1)
    log_pz = diag_gaussian_log_prob(z, torch.zeros_like(z), torch.zeros_like(z))
    # log q(z|x) from eps, which (z - mu) / sigma is: a posterior so narrow that sigma underflows to 0
    # would otherwise give 0 / 0
    log_qz = (-0.5 * (eps**2 + logvar + LOG_2PI)).sum(-1)
    return torch.logsumexp(log_px_z + log_pz - log_qz, 0) - math.log(k)

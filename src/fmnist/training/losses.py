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


def optimal_log_scale(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """The shared log standard deviation that maximises the Gaussian likelihood of ``x`` given
    ``mean``: log sqrt(MSE), the calibrated decoder of the sigma-VAE (Rybkin et al. 2021, eq. 5).

    Kept out of the gradient: at this value the likelihood's derivative in the scale is zero.
    """
    return 0.5 * torch.log(F.mse_loss(mean, x).detach().clamp_min(1e-8))


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) in closed form, (B,).

    Kingma and Welling 2014, appendix B: -1/2 * sum(1 + log s^2 - mu^2 - s^2).
    """
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


def elbo_terms(x, recon, mu, logvar, log_scale) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ELBO, reconstruction log-likelihood, KL), each (B,) in nats per image."""
    rec = gaussian_log_likelihood(x, recon, log_scale)
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
    log_px_z = gaussian_log_likelihood(x.expand_as(recon).flatten(0, 1), recon.flatten(0, 1), vae.log_scale).view(k, -1)
    log_pz = diag_gaussian_log_prob(z, torch.zeros_like(z), torch.zeros_like(z))
    # log q(z|x) from eps, which (z - mu) / sigma is: a posterior so narrow that sigma underflows to 0
    # would otherwise give 0 / 0
    log_qz = (-0.5 * (eps**2 + logvar + LOG_2PI)).sum(-1)
    return torch.logsumexp(log_px_z + log_pz - log_qz, 0) - math.log(k)

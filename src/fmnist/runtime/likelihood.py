"""Test log-likelihood in bits per dimension on 8-bit data, with numpy only.

A density on continuous pixels is unbounded (a model can pile its mass on the exact values of an
8-bit image), so image models are compared on dequantized data (Theis, van den Oord & Bethge 2016,
"A note on the evaluation of generative models", section 3.1; Papamakarios et al. 2017, "Masked
autoregressive flow", section 4): each pixel level i in 0..255 becomes y = (i + u - 1/2) / 255
with u ~ U(0, 1), the level's bin around i / 255 (the scale the models are trained on). A model's
density p(y) is then a lower bound in expectation on the probability of the 8-bit image, and the
change of variables from levels to [0, 1] adds D log 255 (its Jacobian), so

    bits/dim = -(log p(y) - D log 255) / (D log 2) = log2(255) - log p(y) / (D log 2),

lower is better; a uniform density over the 256 levels gets exactly 8. A model of the levels
themselves (a discretized likelihood) gets log p(y) = log P(levels) + D log 255, the same formula.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from fmnist.config import VAE_LIKELIHOODS
from fmnist.errors import BundleError

LEVELS = 256
STEP = LEVELS - 1  # pixel = level / STEP
LOG_2PI = math.log(2 * math.pi)
CHUNK = 5000  # images per matrix product when fitting on the training set
# The dequantization noise's variance, 1/12 of a level squared: no direction of the dequantized
# data's true covariance has less, so it floors the fitted eigenvalues (a sample covariance of
# N <= D images is singular otherwise; on the 60000 training images it barely acts)
NOISE_FLOOR = 1.0 / (12 * STEP**2)


def levels(images: np.ndarray) -> np.ndarray:
    """Images in [0, 1] (level / 255, as the loaders give them) -> their 8-bit levels, int64."""
    return np.rint(np.asarray(images, dtype=np.float64) * STEP).astype(np.int64)


def dequantize(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, ...) images in [0, 1] -> (N, D) float64 (level + u - 1/2) / 255, u ~ U(0, 1) per pixel."""
    x = levels(images).reshape(len(images), -1)
    return (x + np.random.default_rng(seed).random(x.shape) - 0.5) / STEP


def bits_per_dim(log_density: np.ndarray, dims: int) -> float:
    """Mean bits per dimension from log densities (nats) of dequantized images (module docstring)."""
    return float(math.log2(STEP) - np.mean(log_density) / (dims * math.log(2)))


@dataclass(frozen=True)
class Gaussian:
    """N(mean, U diag(variances) U^T + noise (I - U U^T)): a full covariance when U is square,
    probabilistic PCA when U holds the top q eigenvectors (noise: the mean of the rest)."""

    mean: np.ndarray  # (D,)
    axes: np.ndarray  # (D, q) orthonormal columns
    variances: np.ndarray  # (q,)
    noise: float  # variance off the axes; unused when q = D

    def log_density(self, y: np.ndarray) -> np.ndarray:
        """(N, D) -> (N,) log density in nats."""
        d, q = self.axes.shape
        r = y - self.mean
        proj = r @ self.axes  # (N, q)
        mahalanobis = (proj**2 / self.variances).sum(1)
        log_det = np.log(self.variances).sum()
        if q < d:
            mahalanobis += ((r**2).sum(1) - (proj**2).sum(1)) / self.noise
            log_det += (d - q) * math.log(self.noise)
        return -0.5 * (d * LOG_2PI + log_det + mahalanobis)


def moments(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and maximum-likelihood covariance (D, D) of (N, D) data, in chunks of CHUNK rows."""
    mean = y.mean(0)
    scatter = sum((c - mean).T @ (c - mean) for c in np.array_split(y, max(1, len(y) // CHUNK)))
    return mean, scatter / len(y)


def fit_gaussian(y: np.ndarray, components: int | None = None) -> Gaussian:
    """The maximum-likelihood Gaussian of (N, D) data: full covariance, or with ``components`` q < D
    probabilistic PCA (Tipping & Bishop 1999, eq. 7-8: the top q eigenvalues kept, the rest
    averaged into the isotropic noise); eigenvalues floored at ``NOISE_FLOOR``."""
    mean, cov = moments(y)
    eigenvalues, eigenvectors = np.linalg.eigh(cov)  # ascending
    eigenvalues, eigenvectors = np.maximum(eigenvalues[::-1], NOISE_FLOOR), eigenvectors[:, ::-1]
    q = len(mean) if components is None else components
    noise = float(eigenvalues[q:].mean()) if q < len(mean) else 1.0
    return Gaussian(mean, eigenvectors[:, :q], eigenvalues[:q], noise)


# -- the VAE's decoder likelihoods, log p(y | decoded mean) summed over the pixels --------------


def log_sigmoid(t: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -t)


def discretized_logistic(y: np.ndarray, mean: np.ndarray, log_scale: np.ndarray) -> np.ndarray:
    """log P(level | logistic(mean, scale)) per pixel, y's level being round(255 y) and its bin
    [level - 1/2, level + 1/2] / 255, the end bins open to -inf and +inf (PixelCNN++, Salimans
    et al. 2017, eq. 2); pixels in [0, 1] as the decoder sees them."""
    centre = np.rint(y * STEP) / STEP
    half = 0.5 / STEP
    inv = np.exp(-log_scale)
    upper = np.where(centre >= 1 - half, np.inf, (centre + half - mean) * inv)
    lower = np.where(centre <= half, -np.inf, (centre - half - mean) * inv)
    # sigmoid(a) - sigmoid(b) = sigmoid(-b) - sigmoid(-a): take the side where both are small
    flip = (upper + lower) > 0
    a, b = np.where(flip, -lower, upper), np.where(flip, -upper, lower)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.exp(log_sigmoid(b) - log_sigmoid(a))
    return log_sigmoid(a) + np.log1p(-np.minimum(gap, 1 - 1e-12))


def decoder_log_density(kind: str, y: np.ndarray, mean: np.ndarray, log_scale: np.ndarray) -> np.ndarray:
    """log p(y | mean) in nats, (..., D) -> (...,), for ``kind`` in VAE_LIKELIHOODS; a discrete
    likelihood's probability counts as the density D log 255 on its bins (module docstring)."""
    if kind == "logistic":
        return (discretized_logistic(y, mean, log_scale) + math.log(STEP)).sum(-1)
    return (-0.5 * ((y - mean) * np.exp(-log_scale)) ** 2 - log_scale - 0.5 * LOG_2PI).sum(-1)


def vae_log_density(
    encode: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    decode: Callable[[np.ndarray], np.ndarray],
    y: np.ndarray,
    k: int,
    kind: str,
    log_scale: np.ndarray,
    seed: int = 0,
    batches: Callable[[list], Iterable] = iter,
) -> np.ndarray:
    """The importance-weighted bound on log p(y) with ``k`` samples of q(z|y) (Burda et al. 2016),
    (N, D) -> (N,) nats: log (1/k) sum_i p(y|z_i) p(z_i) / q(z_i|y). ``encode`` maps (B, D) to the
    posterior's (mean, logvar), each (B, d); ``decode`` (M, d) latents to (M, D) means; ``batches``
    wraps the list of row slices (a progress bar)."""
    rng = np.random.default_rng(seed)
    size = max(1, 4096 // k)
    out = np.empty(len(y))
    for rows in batches([slice(i, i + size) for i in range(0, len(y), size)]):
        mu, logvar = (np.asarray(a, dtype=np.float64) for a in encode(y[rows]))
        eps = rng.standard_normal((k, *mu.shape))  # (k, B, d)
        z = mu + np.exp(0.5 * logvar) * eps
        means = np.asarray(decode(z.reshape(-1, z.shape[-1])), dtype=np.float64).reshape(k, len(mu), -1)
        log_px_z = decoder_log_density(kind, y[rows], means, log_scale)  # (k, B)
        log_pz = -0.5 * (z**2 + LOG_2PI).sum(-1)
        log_qz = -0.5 * (eps**2 + logvar + LOG_2PI).sum(-1)
        w = log_px_z + log_pz - log_qz
        top = w.max(0)
        out[rows] = top + np.log(np.exp(w - top).mean(0))
    return out


def manifest_likelihood(vae: dict, dims: int) -> tuple[str, np.ndarray]:
    """(likelihood kind, (dims,) log scales) from a manifest's ``vae`` entry: ``likelihood``
    (absent in bundles made before it: "gaussian") and ``log_scales`` per pixel, else the shared
    ``log_scale``."""
    kind = vae.get("likelihood", "gaussian")
    scales = np.asarray(vae.get("log_scales", vae["log_scale"]), dtype=np.float64).reshape(-1)
    if kind not in VAE_LIKELIHOODS or scales.size not in (1, dims) or not np.isfinite(scales).all():
        raise BundleError(
            f"manifest vae: likelihood {kind!r} with {scales.size} log scales; expected one of "
            f"{', '.join(VAE_LIKELIHOODS)} with 1 or {dims} finite ones: re-export the bundle"
        )
    return kind, np.broadcast_to(scales, (dims,))

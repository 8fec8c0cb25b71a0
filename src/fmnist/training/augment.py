"""Training-time augmentation of image batches, drawn per image from torch's global generator.

The classifier is served on what users photograph, which differs from Fashion-MNIST's framing:
off-centre, smaller or larger, slightly turned, lower contrast, a grey rather than black
background, out of focus, facing either way. Every image may be mirrored; a share ``aug_plain``
of them (still mirrored or not) skips the other transforms. Each transform is one batched tensor
operation (no per-image Python), and the global generator is reseeded per epoch (``EpochSeed``),
so a resumed run draws the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fmnist.config import Config

BLUR_SIGMA = (0.4, 1.2)  # pixels
BLUR_RADIUS = 3  # kernel of 2 * 3 + 1 taps covers 2.5 sigma at the largest sigma


def _uniform(n: int, low: float, high: float, device) -> torch.Tensor:
    return torch.rand(n, device=device) * (high - low) + low


def affine_matrices(n: int, shift: float, scale: tuple[float, float], rotate_deg: float, device=None) -> torch.Tensor:
    """(n, 2, 3) matrices for ``F.affine_grid``: output pixel -> input pixel, normalised coords.

    A garment zoomed by s, turned by t and moved by (dx, dy) (fractions of the side) is read at
    input = R(-t) / s @ (output - 2 * (dx, dy)).
    """
    theta = torch.deg2rad(_uniform(n, -rotate_deg, rotate_deg, device))
    zoom = _uniform(n, *scale, device)
    move = _uniform(2 * n, -2 * shift, 2 * shift, device).view(n, 2, 1)  # normalised coords span 2
    cos, sin = torch.cos(theta) / zoom, torch.sin(theta) / zoom
    linear = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)  # (n, 2, 2)
    return torch.cat([linear, -linear @ move], -1)


def gaussian_kernels(sigmas: torch.Tensor, radius: int = BLUR_RADIUS) -> torch.Tensor:
    """(n,) sigmas -> (n, 2 * radius + 1) normalised 1-D Gaussian kernels."""
    taps = torch.arange(-radius, radius + 1, dtype=sigmas.dtype, device=sigmas.device)
    k = torch.exp(-0.5 * (taps[None] / sigmas[:, None]) ** 2)
    return k / k.sum(1, keepdim=True)


def blur(x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of each image (B, 1, H, W) with its own sigma (B,)."""
    b, _, h, w = x.shape
    k = gaussian_kernels(sigmas)  # (B, K)
    r = k.shape[1] // 2
    y = F.conv2d(F.pad(x.view(1, b, h, w), (r, r, 0, 0), mode="replicate"), k.view(b, 1, 1, -1), groups=b)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k.view(b, 1, -1, 1), groups=b)
    return y.view(b, 1, h, w)


def photo_transforms(x: torch.Tensor, config: Config) -> torch.Tensor:
    """(B, 1, 28, 28) in [0, 1] -> the same shape, each image moved, zoomed, turned, re-contrasted,
    brightened and (with probability ``aug_blur``) blurred by its own random amounts."""
    n, device = len(x), x.device
    theta = affine_matrices(n, config.aug_shift, config.aug_scale, config.aug_rotate, device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    blurred = torch.rand(n, device=device) < config.aug_blur
    if blurred.any():
        y[blurred] = blur(y[blurred], _uniform(int(blurred.sum()), *BLUR_SIGMA, device))
    contrast = _uniform(n, 1 - config.aug_contrast, 1 + config.aug_contrast, device).view(n, 1, 1, 1)
    brightness = _uniform(n, -config.aug_brightness, config.aug_brightness, device).view(n, 1, 1, 1)
    return (y * contrast + brightness).clamp_(0.0, 1.0)


def augment(x: torch.Tensor, config: Config) -> torch.Tensor:
    """(B, 1, 28, 28) in [0, 1] -> the same shape: each image mirrored left-right with probability
    ``aug_flip``, then all but a share ``aug_plain`` of them through :func:`photo_transforms`."""
    n, device = len(x), x.device
    flipped = (torch.rand(n, device=device) < config.aug_flip).view(n, 1, 1, 1)
    x = torch.where(flipped, x.flip(-1), x)
    transformed = torch.rand(n, device=device) >= config.aug_plain
    if not transformed.any():
        return x
    x[transformed] = photo_transforms(x[transformed], config)  # x is torch.where's new tensor
    return x


def jitter_latents(z: torch.Tensor, noise: float) -> torch.Tensor:
    """(B, d) latents plus Gaussian noise of ``noise`` times each latent's spread in the batch (the
    head model's regulariser; the spread without Bessel's correction, so one latent gets none)."""
    return z + noise * z.std(0, correction=0) * torch.randn_like(z)

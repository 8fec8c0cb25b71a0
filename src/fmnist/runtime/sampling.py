"""Latent samplers of a bundle, drawn with numpy alone from the arrays in ``samplers.npz``."""

from __future__ import annotations

import numpy as np

from fmnist.errors import InputError

SAMPLERS = ("kde", "kde-pca", "vae")
DEFAULT_SAMPLER = "kde"
MAX_GENERATE = 10_000  # most images one generate call draws


def kde_sample(points: np.ndarray, bandwidth: float, n: int, seed: int) -> np.ndarray:
    """Gaussian-KDE samples, draw for draw what scikit-learn's KernelDensity.sample gives."""
    rng = np.random.RandomState(seed)
    u = rng.uniform(0, 1, size=n)
    i = (u * points.shape[0]).astype(np.int64)
    return np.atleast_2d(rng.normal(points[i], bandwidth))


def check_generate(n: int, sampler: str) -> None:
    if not 1 <= n <= MAX_GENERATE:
        raise InputError(f"n must be between 1 and {MAX_GENERATE}, not {n}")
    if sampler not in SAMPLERS:
        raise InputError(f"unknown sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}")

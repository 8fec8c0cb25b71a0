"""Latent samplers of a bundle, drawn with numpy alone from the arrays in ``samplers.npz``."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from fmnist.errors import BundleError, InputError

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


def load_samplers(path: Path, latent_dim: int) -> dict[str, np.ndarray]:
    """The arrays of ``samplers.npz``, read without pickle and checked against the contract
    (fmnist.artifacts): floating point, finite, ``pca_mean`` [d], ``pca_components`` [c,d],
    ``kde_pca_points`` [m,c], ``kde_latent_points`` [m,d], positive scalar bandwidths.

    Raises:
        BundleError: one line naming the file and the array.
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except ValueError as e:  # an object array: loading it would need pickle
        raise BundleError(f"bundle file {path} cannot be read without pickle ({e})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise BundleError(f"bundle file {path} is not an .npz archive ({e})") from None
    d = latent_dim
    c = arrays["pca_components"].shape[0] if getattr(arrays.get("pca_components"), "ndim", 0) == 2 else None
    # name -> shape; None: any size of at least 1
    shapes = {
        "pca_mean": (d,),
        "pca_components": (c, d),
        "kde_pca_points": (None, c),
        "kde_pca_bandwidth": (),
        "kde_latent_points": (None, d),
        "kde_latent_bandwidth": (),
    }
    for name, shape in shapes.items():
        if name not in arrays:
            raise BundleError(f"bundle file {path} holds no array {name!r}")
        a = arrays[name]
        fits = a.ndim == len(shape) and all(w is None and n >= 1 or n == w for w, n in zip(shape, a.shape, strict=True))
        if not np.issubdtype(a.dtype, np.floating) or not fits:
            wanted = "[" + ", ".join("m" if w is None else str(w) for w in shape) + "]"
            raise BundleError(
                f"bundle file {path}: {name} is {a.dtype} {list(a.shape)}, the contract (latent_dim {d}) "
                f"says float {wanted}"
            )
        if not np.isfinite(a).all():
            raise BundleError(f"bundle file {path}: {name} holds values that are not finite")
        if not shape and not (float(a) > 0 and math.isfinite(float(a))):
            raise BundleError(f"bundle file {path}: {name} must be positive, not {float(a)}")
    return {name: arrays[name] for name in shapes}

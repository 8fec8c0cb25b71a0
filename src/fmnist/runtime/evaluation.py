"""``fmnist evaluate``: the bundle's metrics on the official test set, with numpy only."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np

from fmnist.errors import DataError
from fmnist.runtime.bundle import Bundle
from fmnist.runtime.sampling import SAMPLERS

GENERATED = 2000  # images per sampler for the sample-quality figures


def read_idx(path: Path) -> np.ndarray:
    """An idx file of unsigned bytes (``path`` or ``path.gz``) as a uint8 array of its shape.

    Format: 0, 0, type 0x08, ndim, then ndim big-endian uint32 sizes, then the data.
    """
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            try:
                raw = (gzip.open if candidate.suffix == ".gz" else open)(candidate, "rb").read()
            except (OSError, EOFError) as e:
                raise DataError(f"{candidate}: cannot be read ({e})") from None
            if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
                raise DataError(f"{candidate}: not an idx file of bytes (bad magic number)")
            ndim = raw[3]
            shape = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
            data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
            if data.size != math.prod(shape):
                raise DataError(f"{candidate}: holds {data.size} bytes of data, its header says {shape}")
            return data.reshape(shape)
    raise DataError(f"{path} not found: point --data-dir or $FMNIST_DATA at the folder holding FashionMNIST/raw")


def load_test_set(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The official test split: float32 images (10000, 28, 28) in [0, 1] and int64 labels."""
    raw = Path(root) / "FashionMNIST" / "raw"
    images = read_idx(raw / "t10k-images-idx3-ubyte")
    labels = read_idx(raw / "t10k-labels-idx1-ubyte").astype(np.int64)
    if images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise DataError(f"{raw}: test images {images.shape} and labels {labels.shape} do not match")
    return images.astype(np.float32) / 255.0, labels


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to feature sets a and b (Heusel et al. 2017):
    |mu_a - mu_b|^2 + tr(Sa + Sb - 2 (Sa Sb)^1/2), the trace term from the eigenvalues of
    Sa^1/2 Sb Sa^1/2 (symmetric, so no complex square roots)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(sa)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ sb @ root_a), 0, None)).sum()
    return max(0.0, float(((mu_a - mu_b) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * cross))


def sampler_quality(bundle: Bundle, real_features: np.ndarray, sampler: str, n: int, seed: int) -> dict:
    images = bundle.generate(n, sampler, seed)
    _, probabilities, features = bundle.run("classifier", images[:, None])
    counts = np.bincount(probabilities.argmax(1), minlength=10) / n
    return {
        "frechet_distance": frechet_distance(real_features, features),
        "mean_top_probability": float(probabilities.max(1).mean()),
        "class_spread": {name: float(c) for name, c in zip(bundle.class_names, counts, strict=True)},
    }


def evaluate_bundle(
    bundle: Bundle, images: np.ndarray, labels: np.ndarray, seed: int = 0, generated: int = GENERATED
) -> dict:
    """What ``fmnist evaluate`` prints: reconstruction MSE, accuracy (overall and per class), VAE ELBO
    and, per sampler, the Frechet distance of ``generated`` samples in the classifier's feature space."""
    recon = bundle.reconstruct(images)
    _, probabilities, features = bundle.run("classifier", images[:, None])
    predicted = probabilities.argmax(1)
    # None for a class with no test images (only in a cut-down test set)
    per_class = [float((predicted[labels == k] == k).mean()) if (labels == k).any() else None for k in range(10)]
    return {
        "reconstruction_mse": float(((recon - images) ** 2).mean()),
        "classifier_accuracy": float((predicted == labels).mean()),
        "per_class_accuracy": dict(zip(bundle.class_names, per_class, strict=True)),
        "vae_elbo": float(bundle.vae_elbo(images, seed).mean()),
        "samplers": {s: sampler_quality(bundle, features, s, generated, seed) for s in SAMPLERS},
        "test_images": len(images),
    }

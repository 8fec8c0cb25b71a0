"""``fmnist evaluate``: the bundle's metrics on the official test set, with numpy only."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np

from fmnist.errors import DataError
from fmnist.serve.inference import SAMPLERS, Model, frechet_distance

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


def sampler_quality(model: Model, real_features: np.ndarray, sampler: str, n: int, seed: int) -> dict:
    images = model.generate(n, sampler, seed)
    _, probabilities, features = model.run("classifier", images[:, None])
    counts = np.bincount(probabilities.argmax(1), minlength=10) / n
    return {
        "frechet_distance": frechet_distance(real_features, features),
        "mean_top_probability": float(probabilities.max(1).mean()),
        "class_spread": {name: float(c) for name, c in zip(model.class_names, counts, strict=True)},
    }


def evaluate(model: Model, images: np.ndarray, labels: np.ndarray, seed: int = 0, generated: int = GENERATED) -> dict:
    recon = model.reconstruct(images)
    _, probabilities, features = model.run("classifier", images[:, None])
    predicted = probabilities.argmax(1)
    # None for a class with no test images (only in a cut-down test set)
    per_class = [float((predicted[labels == k] == k).mean()) if (labels == k).any() else None for k in range(10)]
    return {
        "reconstruction_mse": float(((recon - images) ** 2).mean()),
        "classifier_accuracy": float((predicted == labels).mean()),
        "per_class_accuracy": dict(zip(model.class_names, per_class, strict=True)),
        "vae_elbo": float(model.vae_elbo(images, seed).mean()),
        "samplers": {s: sampler_quality(model, features, s, generated, seed) for s in SAMPLERS},
        "test_images": len(images),
    }

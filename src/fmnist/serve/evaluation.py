"""``fmnist evaluate``: the bundle's metrics on the official test set, with numpy only."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from fmnist.errors import DataError
from fmnist.serve.inference import SAMPLERS, Model, frechet_distance

GENERATED = 2000  # images per sampler for the sample-quality figures


def _read_idx(path: Path, magic: int, header: int) -> np.ndarray:
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            raw = (gzip.open if candidate.suffix == ".gz" else open)(candidate, "rb").read()
            if int.from_bytes(raw[:4], "big") != magic:
                raise DataError(f"{candidate}: not an idx file (bad magic number)")
            return np.frombuffer(raw, dtype=np.uint8, offset=header)
    raise DataError(f"{path} not found: point --data-dir or $FMNIST_DATA at the folder holding FashionMNIST/raw")


def load_test_set(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The official test split: float32 images (10000, 28, 28) in [0, 1] and int64 labels."""
    raw = Path(root) / "FashionMNIST" / "raw"
    images = _read_idx(raw / "t10k-images-idx3-ubyte", 2051, 16).reshape(-1, 28, 28)
    labels = _read_idx(raw / "t10k-labels-idx1-ubyte", 2049, 8).astype(np.int64)
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
    per_class = [float((predicted[labels == k] == k).mean()) for k in range(10)]
    return {
        "reconstruction_mse": float(((recon - images) ** 2).mean()),
        "classifier_accuracy": float((predicted == labels).mean()),
        "per_class_accuracy": dict(zip(model.class_names, per_class, strict=True)),
        "vae_elbo": float(model.vae_elbo(images, seed).mean()),
        "samplers": {s: sampler_quality(model, features, s, generated, seed) for s in SAMPLERS},
        "test_images": len(images),
    }

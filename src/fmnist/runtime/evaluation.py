"""``fmnist evaluate``: the bundle's metrics on the official test set, with numpy only."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np

from fmnist.contract.samplers import SAMPLERS as SAMPLERS_DECLARED
from fmnist.errors import DataError
from fmnist.runtime import likelihood
from fmnist.runtime.bundle import Bundle
from fmnist.runtime.images import load_image
from fmnist.runtime.photos import photo_set
from fmnist.runtime.progress import SILENT, Progress
from fmnist.runtime.reference import reference_classes, reference_features
from fmnist.runtime.sampling import SAMPLERS

PHOTOS = 2000  # test images turned into product photos for the photo-set accuracy


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


def load_split(root: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """An official split (``prefix`` t10k or train): float32 images (N, 28, 28) in [0, 1], int64 labels."""
    raw = Path(root) / "FashionMNIST" / "raw"
    images = read_idx(raw / f"{prefix}-images-idx3-ubyte")
    labels = read_idx(raw / f"{prefix}-labels-idx1-ubyte").astype(np.int64)
    if images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise DataError(f"{raw}: {prefix} images {images.shape} and labels {labels.shape} do not match")
    return images.astype(np.float32) / 255.0, labels


def recorded_data_dir(manifest: dict) -> Path | None:
    """The data folder a bundle was exported with, when it exists here; else None, and the caller
    falls back to ``$FMNIST_DATA``, then the per-user cache (the record is a folder of the machine
    that built the bundle, ``provenance.machine``)."""
    recorded = manifest.get("provenance", {}).get("data_dir")
    return Path(recorded) if recorded and Path(recorded).is_dir() else None


def load_test_set(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The official test split: float32 images (10000, 28, 28) in [0, 1] and int64 labels."""
    return load_split(root, "t10k")


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
    """Frechet distance of ``n`` samples to the real images in the reference network's features;
    the bundle's classifier says how confident and how spread over the classes they look."""
    images = bundle.generate(n, sampler, seed)
    probabilities = bundle.classify(images)
    counts = np.bincount(probabilities.argmax(1), minlength=10) / n
    return {
        "frechet_distance": frechet_distance(real_features, reference_features(images)),
        "mean_top_probability": float(probabilities.max(1).mean()),
        "class_spread": {name: float(c) for name, c in zip(bundle.class_names, counts, strict=True)},
    }


CLASS_SAMPLES = 1000  # at most, samples drawn per class for the class-conditional figures


def class_conditional_quality(
    bundle: Bundle, images: np.ndarray, labels: np.ndarray, n: int | None = None, seed: int = 0
) -> dict | None:
    """Per class, ``n`` samples of the class-conditional sampler judged by the reference network:
    the share it assigns to the class, beside the share for the bundle's reconstructions of the
    class's test images (the decoder's ceiling), and the samples' Frechet distance to those test
    images. ``n`` defaults to the test images per class (1,000 in the official test set), at most
    ``CLASS_SAMPLES``: a cut-down test set is not judged against ten thousand samples. None for a
    bundle without per-class samplers (format 1)."""
    sampler = next((s.name for s in SAMPLERS_DECLARED if s.draw_class is not None), None)
    if sampler is None or not bundle.has_classes(sampler):
        return None
    n = n or min(CLASS_SAMPLES, max(2, len(images) // len(bundle.class_names)))
    classes = {}
    for k, name in enumerate(bundle.class_names):
        real = images[labels == k]
        if not len(real):
            continue
        samples = bundle.generate(n, sampler, seed, label=k)
        share = float((reference_classes(samples) == k).mean())
        recon_share = float((reference_classes(bundle.reconstruct(real)) == k).mean())
        classes[name] = {
            "sample_share": share,
            "reconstruction_share": recon_share,
            "share_ratio": share / recon_share if recon_share else None,
            "frechet_distance": frechet_distance(reference_features(real), reference_features(samples)),
        }
    return {"sampler": sampler, "samples_per_class": n, "classes": classes}


def photo_accuracy(bundle: Bundle, images: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """Accuracy on product photos made from ``images`` (``photos.photo_set``), each read back
    through the preprocessing of ``fmnist classify``."""
    x = np.stack([load_image(jpeg) for jpeg in photo_set(images, seed)])
    return float((bundle.classify(x).argmax(1) == labels).mean())


def iw_samples(manifest: dict) -> int:
    """The bundle's k for the importance-weighted bound: as its run measured log p(x), else its
    VAE's config (bundles that predate ``training_metrics``)."""
    recorded = manifest.get("training_metrics", {}).get("vae_iw_samples")
    config = manifest.get("configs", {}).get("vae") or manifest.get("config", {})
    return int(recorded or config.get("iw_samples") or 1)


def bits_per_dim(bundle: Bundle, images: np.ndarray, train_images: np.ndarray, seed: int, progress: Progress) -> dict:
    """Test log-likelihood in bits per dimension on the dequantized 8-bit images (``likelihood``):
    the VAE's importance-weighted bound with the bundle's k, beside a full-covariance Gaussian and
    probabilistic PCA at the bundle's latent size, both fitted on ``train_images``."""
    test = likelihood.dequantize(images, seed)  # (N, D)
    train = likelihood.dequantize(train_images, seed + 1)
    dims = test.shape[1]
    kind, log_scale = likelihood.manifest_likelihood(bundle.manifest["vae"], dims)
    k = iw_samples(bundle.manifest)
    vae = likelihood.vae_log_density(
        lambda y: bundle.vae_encode(y.reshape(-1, 28, 28)),
        lambda z: bundle.decode(z, "vae_decoder").reshape(len(z), -1),
        test,
        k,
        kind,
        log_scale,
        seed,
        lambda batches: progress.iterate(f"bits/dim: VAE, k={k}", batches),
    )
    gaussian = progress.run("bits/dim: full Gaussian", likelihood.fit_gaussian, train)
    ppca = progress.run("bits/dim: PPCA", likelihood.fit_gaussian, train, bundle.latent_dim)
    return {
        "vae_bits_per_dim": likelihood.bits_per_dim(vae, dims),
        "vae_likelihood": kind,
        "gaussian_bits_per_dim": likelihood.bits_per_dim(gaussian.log_density(test), dims),
        "ppca_bits_per_dim": likelihood.bits_per_dim(ppca.log_density(test), dims),
    }


def headline(result: dict) -> list[str]:
    """The bundle's headline figures from ``evaluate_bundle``'s result, one line each (what
    ``fmnist export`` ends with; ``fmnist evaluate`` prints these and more)."""
    frechet = ", ".join(f"{name} {s['frechet_distance']:.1f}" for name, s in result["samplers"].items())
    return [
        f"reconstruction MSE {result['reconstruction_mse']:.5f}",
        f"classifier accuracy {result['classifier_accuracy']:.4f} (product photos {result['photo_accuracy']:.4f})",
        f"VAE ELBO {result['vae_elbo']:.1f} nats/image",
        bits_per_dim_line(result),
        f"Frechet distance of samples (lower is better): {frechet}",
    ]


def bits_per_dim_line(result: dict) -> str:
    """The bits/dim figures of ``evaluate_bundle`` as one line of ``fmnist evaluate``'s report."""
    return (
        f"bits/dim (8-bit, dequantized; lower is better): VAE {result['vae_bits_per_dim']:.3f} "
        f"({result['vae_likelihood']} likelihood), full Gaussian {result['gaussian_bits_per_dim']:.3f}, "
        f"PPCA {result['ppca_bits_per_dim']:.3f}"
    )


def evaluate_bundle(
    bundle: Bundle,
    images: np.ndarray,
    labels: np.ndarray,
    train_images: np.ndarray,
    seed: int = 0,
    generated: int | None = None,
    photos: int = PHOTOS,
    progress: Progress = SILENT,
) -> dict:
    """What ``fmnist evaluate`` prints: reconstruction MSE, accuracy (overall, per class, on the
    first ``photos`` test images as product photos), VAE ELBO and, per sampler, the Frechet distance
    of ``generated`` samples to the test images in the reference network's features, beside two
    floors: training images and reconstructions of the test images. The estimate's bias depends on
    the count, so every set compared holds ``len(images)`` images unless ``generated`` says otherwise;
    ``progress`` shows each measurement."""
    generated = generated or len(images)
    step = progress.run
    recon = step("reconstructions", bundle.reconstruct, images)
    predicted = step("classifier", bundle.classify, images).argmax(1)
    real = step("reference features", reference_features, images)
    # None for a class with no test images (only in a cut-down test set)
    per_class = [float((predicted[labels == k] == k).mean()) if (labels == k).any() else None for k in range(10)]
    return {
        "reconstruction_mse": float(((recon - images) ** 2).mean()),
        "classifier_accuracy": float((predicted == labels).mean()),
        "per_class_accuracy": dict(zip(bundle.class_names, per_class, strict=True)),
        "photo_accuracy": step("photo accuracy", photo_accuracy, bundle, images[:photos], labels[:photos], seed),
        "photo_images": min(photos, len(images)),
        "vae_elbo": float(step("VAE ELBO", bundle.vae_elbo, images, seed).mean()),
        **bits_per_dim(bundle, images, train_images, seed, progress),
        "frechet_floors": {
            "training_images": frechet_distance(
                real, step("Frechet floor: training", reference_features, train_images[: len(images)])
            ),
            "test_reconstructions": frechet_distance(
                real, step("Frechet floor: reconstructions", reference_features, recon)
            ),
        },
        "samplers": {
            s: step(f"Frechet: {s} samples", sampler_quality, bundle, real, s, generated, seed) for s in SAMPLERS
        },
        "test_images": len(images),
        # the head on the frozen encoder has no graph in the bundle: its figure as the run measured it
        "head_accuracy_recorded": bundle.manifest.get("training_metrics", {}).get("head_accuracy"),
    }

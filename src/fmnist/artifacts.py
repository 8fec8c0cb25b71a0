"""Artifact bundles: file names, the manifest, and integrity checks.

A bundle is a folder holding ONNX graphs, the latent samplers and ``manifest.json``. This module
is imported by the inference side, so it needs the standard library only.

Graph contract (batch size is the dynamic first axis ``N``, all tensors float32):

=================  ===========================  ==========================================
file               inputs                       outputs
=================  ===========================  ==========================================
encoder.onnx       image [N,1,28,28] in [0,1]   latent [N,d]
decoder.onnx       latent [N,d]                 image [N,1,28,28] in [0,1] (sigmoid inside)
classifier.onnx    image [N,1,28,28]            logits [N,10], probabilities [N,10]
                                                (softmax of logits), features [N,h]
vae_encoder.onnx   image [N,1,28,28]            mean [N,d], logvar [N,d]
vae_decoder.onnx   latent [N,d]                 image [N,1,28,28] in [0,1]
=================  ===========================  ==========================================

``samplers.npz`` (float64, pickle-free) holds what sampling needs: ``pca_mean`` [d],
``pca_components`` [c,d], ``kde_pca_points`` [m,c], ``kde_pca_bandwidth`` [],
``kde_latent_points`` [m,d], ``kde_latent_bandwidth`` []. ``pca.joblib``, ``kde_pca.joblib``
and ``kde_latent.joblib`` are the fitted scikit-learn objects for the training side only.

``manifest.json`` keys: ``format_version``, ``package_version``, ``created`` (ISO time),
``libraries`` (name -> version), ``config`` (fmnist.config.Config as a dict), ``latent_dim``,
``class_names`` (10 names), ``input_contract``, ``graphs`` (name -> {file, inputs, outputs}),
``vae`` ({``log_scale``: the likelihood's learned log standard deviation}), ``samplers``
({pca_components, kde_points, kde_pca_bandwidth, kde_latent_bandwidth}), ``metrics``
({reconstruction_mse, classifier_accuracy, vae_elbo, ...} on the official test set),
``provenance`` (run folder, command, git commit) and ``files`` (name -> {size, sha256}).
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from fmnist.errors import BundleError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ENV_VAR = "FMNIST_ARTIFACTS"

GRAPHS = {
    "encoder": "encoder.onnx",
    "decoder": "decoder.onnx",
    "classifier": "classifier.onnx",
    "vae_encoder": "vae_encoder.onnx",
    "vae_decoder": "vae_decoder.onnx",
}
SAMPLERS_NPZ = "samplers.npz"
SKLEARN_PICKLES = ("pca.joblib", "kde_pca.joblib", "kde_latent.joblib")

INPUT_CONTRACT = {
    "shape": [1, 28, 28],
    "dtype": "float32",
    "range": [0.0, 1.0],
    "colour": "grayscale",
    "polarity": "light garment on a dark background (0 = black)",
}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_entries(folder: Path) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every file in ``folder`` except the manifest, by name."""
    return {
        p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(Path(folder).iterdir())
        if p.is_file() and p.name != MANIFEST
    }


def write_manifest(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Add format version and file hashes to ``manifest`` and write it into ``folder``."""
    full = {"format_version": FORMAT_VERSION, **manifest, "files": file_entries(folder)}
    (Path(folder) / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
    return full


def load_manifest(folder: Path) -> dict[str, Any]:
    """Read and verify a bundle's manifest: format version, then every listed file's size and hash.

    Raises:
        BundleError: one line naming the first problem; nothing is loaded then.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"artifact folder {folder} does not exist (run `fmnist export` first)")
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{path} is missing: {folder} is not an fmnist bundle") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BundleError(f"{path} is not valid JSON: the bundle is damaged") from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != FORMAT_VERSION:
        raise BundleError(f"{path}: bundle format {version!r}, this fmnist reads format {FORMAT_VERSION}")
    for name, entry in manifest.get("files", {}).items():
        file = folder / name
        if not file.is_file():
            raise BundleError(f"bundle file {file} is missing")
        if file.stat().st_size != entry["size"]:
            raise BundleError(f"bundle file {file} has the wrong size (truncated or altered)")
        if sha256_file(file) != entry["sha256"]:
            raise BundleError(f"bundle file {file} fails its sha256 check (altered)")
    missing = [f for f in (*GRAPHS.values(), SAMPLERS_NPZ) if f not in manifest.get("files", {})]
    if missing:
        raise BundleError(f"{path} lists no {missing[0]}: the bundle is incomplete")
    return manifest


def default_bundle_dir() -> Path:
    """The bundle shipped inside the package."""
    return Path(str(resources.files("fmnist") / "default_bundle"))


LOCAL_BUNDLE = Path("artifacts")  # where `fmnist export` writes by default


def resolve_bundle_dir(arg: str | os.PathLike[str] | None = None) -> Path:
    """``--artifacts`` if given, else ``$FMNIST_ARTIFACTS``, else ``./artifacts`` when it holds a
    bundle (what `fmnist export` just wrote), else the bundled default."""
    if arg:
        return Path(arg)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    if (LOCAL_BUNDLE / MANIFEST).is_file():
        return LOCAL_BUNDLE
    return default_bundle_dir()

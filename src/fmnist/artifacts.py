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

``check_manifest`` is the manifest's schema: the types and ranges of these keys, ``files`` as a
mapping of plain file names (the loader reads nothing outside the bundle folder), 10 class names,
a finite ``vae.log_scale``; ``load_manifest`` then checks the hashes, and that the graphs' inputs
and outputs have the contract's shapes with ``latent_dim`` as the latent width.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

from fmnist.errors import BundleError
from fmnist.onnx_io import FLOAT, ProtobufError, graph_io

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

NUM_CLASSES = 10
MAX_LATENT_DIM = 1024
# The likelihood's log standard deviation, for pixels in [0, 1]: e^-10 (4.5e-5) to e^2 (7.4).
LOG_SCALE_RANGE = (-10.0, 2.0)
PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")  # no separators, no "..", no leading dot
SHA256 = re.compile(r"[0-9a-f]{64}")
# Keys that, when present, hold an object (their contents are the exporter's, not checked here).
OBJECT_KEYS = (
    "libraries",
    "config",
    "configs",
    "input_contract",
    "graphs",
    "samplers",
    "metrics",
    "training_metrics",
    "provenance",
)

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
    check_manifest(manifest, path)
    for name, entry in manifest["files"].items():
        file = folder / name
        if not file.is_file():
            raise BundleError(f"bundle file {file} is missing")
        if file.resolve().parent != folder.resolve():
            raise BundleError(f"bundle file {file} is a link out of the bundle folder")
        if file.stat().st_size != entry["size"]:
            raise BundleError(f"bundle file {file} has the wrong size (truncated or altered)")
        if sha256_file(file) != entry["sha256"]:
            raise BundleError(f"bundle file {file} fails its sha256 check (altered)")
    check_graphs(folder, manifest["latent_dim"])
    return manifest


def _refuse(path: Path, field: str, expected: str, value: Any) -> BundleError:
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return BundleError(f"{path}: {field} must be {expected}, not {shown}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_manifest(manifest: dict[str, Any], path: Path) -> None:
    """The manifest's schema, checked before any file it names is opened.

    Raises:
        BundleError: one line naming the first field that breaks it.
    """
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise _refuse(path, "files", "an object of file name -> {size, sha256}", files)
    for name, entry in files.items():
        if not PLAIN_NAME.fullmatch(name) or name in (".", ".."):
            raise _refuse(path, "files", "plain file names inside the bundle folder", name)
        if not isinstance(entry, dict):
            raise _refuse(path, f"files.{name}", "an object {size, sha256}", entry)
        if not _is_int(entry.get("size")) or entry["size"] < 0:
            raise _refuse(path, f"files.{name}.size", "a whole number of bytes", entry.get("size"))
        if not isinstance(entry.get("sha256"), str) or not SHA256.fullmatch(entry["sha256"]):
            raise _refuse(path, f"files.{name}.sha256", "64 lowercase hex digits", entry.get("sha256"))
    missing = [f for f in (*GRAPHS.values(), SAMPLERS_NPZ) if f not in files]
    if missing:
        raise BundleError(f"{path} lists no {missing[0]}: the bundle is incomplete")
    latent_dim = manifest.get("latent_dim")
    if not _is_int(latent_dim) or not 1 <= latent_dim <= MAX_LATENT_DIM:
        raise _refuse(path, "latent_dim", f"a whole number from 1 to {MAX_LATENT_DIM}", latent_dim)
    names = manifest.get("class_names")
    if (
        not isinstance(names, list)
        or len(names) != NUM_CLASSES
        or not all(isinstance(n, str) and n.strip() for n in names)
        or len(set(names)) != NUM_CLASSES
    ):
        raise _refuse(path, "class_names", f"a list of {NUM_CLASSES} different non-empty names", names)
    vae = manifest.get("vae")
    if not isinstance(vae, dict):
        raise _refuse(path, "vae", "an object {log_scale}", vae)
    log_scale, (low, high) = vae.get("log_scale"), LOG_SCALE_RANGE
    if (
        not isinstance(log_scale, int | float)
        or isinstance(log_scale, bool)
        or not math.isfinite(log_scale)
        or not low <= log_scale <= high
    ):
        raise _refuse(path, "vae.log_scale", f"a number from {low:g} to {high:g}", log_scale)
    for key in ("package_version", "created"):
        if key in manifest and not isinstance(manifest[key], str):
            raise _refuse(path, key, "a string", manifest[key])
    for key in OBJECT_KEYS:
        if key in manifest and not isinstance(manifest[key], dict):
            raise _refuse(path, key, "an object", manifest[key])


IMAGE_SHAPE = (1, 28, 28)


def check_graphs(folder: Path, latent_dim: int) -> None:
    """Each graph's inputs and outputs as the contract (module docstring) says, with ``latent_dim``
    as the latent width: read from the files, before any session starts.

    Raises:
        BundleError: one line naming the graph and the tensor.
    """
    image, latent = ("N", *IMAGE_SHAPE), ("N", latent_dim)
    # name -> (input shapes, output shapes), by position; "N" is any batch dimension
    expected = {
        "encoder": ([image], [latent]),
        "decoder": ([latent], [image]),
        "classifier": ([image], [("N", NUM_CLASSES), ("N", NUM_CLASSES), ("N", None)]),
        "vae_encoder": ([image], [latent, latent]),
        "vae_decoder": ([latent], [image]),
    }
    for name, (inputs, outputs) in expected.items():
        file = folder / GRAPHS[name]
        try:
            got_inputs, got_outputs = graph_io(file.read_bytes())
        except ProtobufError as e:
            raise BundleError(f"bundle file {file} is not an ONNX model ({e})") from None
        for kind, want, got in (("input", inputs, got_inputs), ("output", outputs, got_outputs)):
            if len(got) < len(want):
                raise BundleError(f"bundle file {file}: {len(got)} {kind}s, the contract has {len(want)}")
            for i, (shape, tensor) in enumerate(zip(want, got, strict=False)):
                if not _shape_matches(shape, tensor.shape) or tensor.elem_type != FLOAT:
                    wanted = "[" + ", ".join("N" if d == "N" else "h" if d is None else str(d) for d in shape) + "]"
                    raise BundleError(
                        f"bundle file {file}: {kind} {i} ({tensor.name}) is {_shown(tensor)}, "
                        f"the contract (latent_dim {latent_dim}) says float32 {wanted}"
                    )


def _shape_matches(want: tuple, got: tuple | None) -> bool:
    """``want``: "N" any batch size, None any fixed size, else that size."""
    if got is None or len(got) != len(want):
        return False
    return all(w == "N" or (_is_int(g) and (w is None or g == w)) for w, g in zip(want, got, strict=True))


def _shown(tensor) -> str:
    dims = "?" if tensor.shape is None else ", ".join("?" if d is None else str(d) for d in tensor.shape)
    kind = "float32" if tensor.elem_type == FLOAT else f"element type {tensor.elem_type}"
    return f"{kind} [{dims}]"


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

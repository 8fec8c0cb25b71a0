"""Artifact bundles: file names, the manifest, and integrity checks.

A bundle is a folder holding ONNX graphs, the latent samplers and ``manifest.json``. This module
is imported by the inference side, so it needs the standard library only. Which graphs and
sampler arrays a bundle holds, with their tensors' names and shapes, is the contract's
(fmnist.contract: ``graphs.GRAPHS``, ``samplers.SAMPLERS``); ``pca.joblib``, ``kde_pca.joblib``
and ``kde_latent.joblib`` are the fitted scikit-learn objects for the training side only.

``manifest.json`` keys: ``format_version`` (2; 1 before the per-class samplers), ``package_version``,
``created`` (ISO time), ``libraries`` (name -> version), ``config`` (fmnist.config.Config as a
dict), ``latent_dim``, ``class_names`` (10 names), ``input_contract``, ``graphs`` (name -> {file,
inputs, outputs}), ``vae`` ({``log_scale``: the likelihood's learned log standard deviation}),
``samplers`` ({pca_components, kde_points, kde_pca_bandwidth, kde_latent_bandwidth, ...}),
``metrics`` ({reconstruction_mse, classifier_accuracy, vae_elbo, ...} on the official test set),
``provenance`` (run folder, command, git commit) and ``files`` (name -> {size, sha256}).

``read_manifest`` reads the manifest and checks its schema (``check_manifest``: the types and
ranges of these keys, ``files`` as a mapping of plain file names, 10 class names, a finite
``vae.log_scale``); ``read_verified`` then reads one listed file and checks its size and hash,
``verify_graph`` also its inputs and outputs against the contract. ``load_manifest`` does all of
it for every file. Every file is opened as a regular file inside the bundle folder (a link may
point elsewhere in it, not out), its size capped before it is read.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

from fmnist.contract import graphs as graph_contract
from fmnist.contract import samplers as sampler_contract
from fmnist.errors import BundleError
from fmnist.onnx_io import ProtobufError, graph_io

FORMAT_VERSION = 2  # what export writes
READABLE_FORMATS = (1, 2)
MANIFEST = "manifest.json"
ENV_VAR = "FMNIST_ARTIFACTS"

GRAPHS = {g.name: g.file for g in graph_contract.GRAPHS}  # name -> file
SAMPLERS_NPZ = sampler_contract.NPZ
SKLEARN_PICKLES = ("pca.joblib", "kde_pca.joblib", "kde_latent.joblib")

NUM_CLASSES = graph_contract.NUM_CLASSES
IMAGE_SHAPE = graph_contract.IMAGE_SHAPE
MAX_LATENT_DIM = 1024
MAX_MANIFEST_BYTES = 1 << 20  # the shipped one is 10 kB; more is not a manifest
MAX_FILE_BYTES = 1 << 31  # any one bundle file
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
    "shape": list(IMAGE_SHAPE),
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


def write_manifest(folder: Path, manifest: dict[str, Any], format_version: int = FORMAT_VERSION) -> dict[str, Any]:
    """Add format version and file hashes to ``manifest`` and write it into ``folder``."""
    rest = {k: v for k, v in manifest.items() if k not in ("format_version", "files")}
    full = {"format_version": format_version, **rest, "files": file_entries(folder)}
    (Path(folder) / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
    return full


def read_file(folder: Path, name: str, cap: int) -> bytes:
    """The bytes of ``folder/name``, which must be a regular file inside ``folder`` (after links)
    of at most ``cap`` bytes: a pipe, a device or a folder is refused before a byte is read.

    Raises:
        BundleError: one line naming the file.
    """
    path = Path(folder) / name
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        raise BundleError(f"bundle file {path} is missing") from None
    except (OSError, RuntimeError) as e:  # a link loop
        raise BundleError(f"bundle file {path} cannot be opened ({e})") from None
    if real.parent != Path(folder).resolve():
        raise BundleError(f"bundle file {path} is a link out of the bundle folder")
    try:  # non-blocking, so that opening a named pipe returns at once instead of waiting for a writer
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise BundleError(f"bundle file {path} cannot be opened ({e.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BundleError(f"bundle file {path} is not a regular file: the bundle is damaged")
        if info.st_size > cap:
            raise BundleError(f"bundle file {path} is {info.st_size:,} bytes, over its {cap:,}: the bundle is damaged")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(cap + 1)
    finally:
        os.close(fd)
    if len(data) > cap:
        raise BundleError(f"bundle file {path} grew past {cap:,} bytes while read")
    return data


def read_manifest(folder: Path) -> dict[str, Any]:
    """Read a bundle's manifest and check its format version and schema (no other file is opened).

    Raises:
        BundleError: one line naming the first problem.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"artifact folder {folder} does not exist (run `fmnist export` first)")
    path = folder / MANIFEST
    if not os.path.lexists(path):
        raise BundleError(f"{path} is missing: {folder} is not an fmnist bundle")
    try:
        manifest = json.loads(read_file(folder, MANIFEST, MAX_MANIFEST_BYTES))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BundleError(f"{path} is not valid JSON: the bundle is damaged") from None
    except RecursionError:
        raise BundleError(f"{path} is nested too deeply to be a manifest: the bundle is damaged") from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version not in READABLE_FORMATS:
        readable = " and ".join(map(str, READABLE_FORMATS))
        raise BundleError(f"{path}: bundle format {version!r}, this fmnist reads formats {readable}")
    check_manifest(manifest, path)
    return manifest


def read_verified(folder: Path, manifest: dict[str, Any], name: str) -> bytes:
    """The bytes of the listed file ``name``, checked against the manifest's size and sha256."""
    entry, path = manifest["files"][name], Path(folder) / name
    data = read_file(folder, name, entry["size"])
    if len(data) != entry["size"]:
        raise BundleError(f"bundle file {path} has the wrong size (truncated or altered)")
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise BundleError(f"bundle file {path} fails its sha256 check (altered)")
    return data


def verify_graph(folder: Path, manifest: dict[str, Any], name: str) -> bytes:
    """The bytes of graph ``name``, hash-checked, whose every input and output is as the contract
    declares it (names, dtypes, shapes with the manifest's ``latent_dim``): read before any
    onnxruntime session starts."""
    graph = graph_contract.graph(name)
    data = read_verified(folder, manifest, graph.file)
    check_graph(Path(folder) / graph.file, data, graph, manifest["latent_dim"])
    return data


def check_graph(path: Path, data: bytes, graph: graph_contract.Graph, latent_dim: int) -> None:
    try:
        inputs, outputs = graph_io(data)
    except ProtobufError as e:
        raise BundleError(f"bundle file {path} is not an ONNX model ({e})") from None
    for kind, got in (("inputs", inputs), ("outputs", outputs)):
        problem = graph_contract.mismatch(graph, kind, got, latent_dim)
        if problem:
            raise BundleError(f"bundle file {path} is not {graph.doc}: its {problem}")


def load_manifest(folder: Path) -> dict[str, Any]:
    """Read and verify a whole bundle: the manifest, every listed file's size and hash, and every
    graph's inputs and outputs (the sampler arrays are ``Bundle``'s, with numpy).

    Raises:
        BundleError: one line naming the first problem; nothing is loaded then.
    """
    manifest = read_manifest(folder)
    graph_files = {g.file: g.name for g in graph_contract.GRAPHS}
    for name in manifest["files"]:
        if name in graph_files:
            verify_graph(folder, manifest, graph_files[name])
        else:
            read_verified(folder, manifest, name)
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
    check_files(manifest.get("files"), path)
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


def check_files(files: Any, path: Path) -> None:
    """``files``: plain names -> {size, sha256}, holding every graph and the sampler arrays."""
    if not isinstance(files, dict) or not files:
        raise _refuse(path, "files", "an object of file name -> {size, sha256}", files)
    for name, entry in files.items():
        if not PLAIN_NAME.fullmatch(name) or name in (".", "..") or name == MANIFEST:
            raise _refuse(path, "files", "plain file names inside the bundle folder", name)
        if not isinstance(entry, dict):
            raise _refuse(path, f"files.{name}", "an object {size, sha256}", entry)
        size = entry.get("size")
        if not _is_int(size) or not 0 <= size <= MAX_FILE_BYTES:
            raise _refuse(path, f"files.{name}.size", f"a whole number of bytes up to {MAX_FILE_BYTES:,}", size)
        if not isinstance(entry.get("sha256"), str) or not SHA256.fullmatch(entry["sha256"]):
            raise _refuse(path, f"files.{name}.sha256", "64 lowercase hex digits", entry.get("sha256"))
    missing = [f for f in (*GRAPHS.values(), SAMPLERS_NPZ) if f not in files]
    if missing:
        raise BundleError(f"{path} lists no {missing[0]}: the bundle is incomplete")


def default_bundle_dir() -> Path:
    """The bundle shipped inside the package (beside this module: importlib.resources, which
    would say the same of an installed package, costs the commands' cold start 10 ms)."""
    return Path(__file__).parent / "default_bundle"


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

"""Latent samplers of a bundle, drawn with numpy alone from the arrays in ``samplers.npz``; which
samplers there are, their arrays and their draws are declared in fmnist.contract.samplers."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from fmnist.contract import samplers as contract
from fmnist.contract.graphs import LATENT, dims_match
from fmnist.contract.samplers import kde_sample  # noqa: F401 (its home before the contract)
from fmnist.errors import BundleError, InputError

SAMPLERS = contract.NAMES
DEFAULT_SAMPLER = contract.DEFAULT
MAX_GENERATE = 10_000  # most images one generate call draws


def check_generate(n: int, sampler: str) -> None:
    if not 1 <= n <= MAX_GENERATE:
        raise InputError(f"n must be between 1 and {MAX_GENERATE}, not {n}")
    contract.sampler(sampler)


def load_samplers(
    path: Path, latent_dim: int, format_version: int = 1, data: bytes | None = None
) -> dict[str, np.ndarray]:
    """The arrays of ``samplers.npz`` (``data``: its bytes, already read), read without pickle and
    checked against every declared sampler's arrays for a bundle of ``format_version``: floating
    point, finite, the declared shapes, positive where declared so.

    Raises:
        BundleError: one line naming the file and the array.
    """
    import zipfile  # here: only generate reads the arrays, and zipfile costs classify's cold start 5 ms

    try:
        with np.load(io.BytesIO(data) if data is not None else path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except ValueError as e:  # an object array: loading it would need pickle
        raise BundleError(f"bundle file {path} cannot be read without pickle ({e})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise BundleError(f"bundle file {path} is not an .npz archive ({e})") from None
    checked = {}
    for s in contract.SAMPLERS:
        for group in contract.arrays_of(s, format_version):
            sizes = {LATENT: latent_dim, **contract.FIXED_SIZES}
            for declared in group:
                checked[declared.name] = _checked(path, arrays, declared, sizes)
    return checked


def _checked(path: Path, arrays: dict[str, np.ndarray], declared: contract.Array, sizes: dict) -> np.ndarray:
    if declared.name not in arrays:
        raise BundleError(f"bundle file {path} holds no array {declared.name!r}")
    a = arrays[declared.name]
    wanted = "[" + ", ".join(str(sizes.get(w, w)) for w in declared.shape) + "]"
    if not np.issubdtype(a.dtype, np.floating) or not dims_match(declared.shape, a.shape, sizes):
        raise BundleError(
            f"bundle file {path}: {declared.name} is {a.dtype} {list(a.shape)}, the contract "
            f"(latent_dim {sizes[LATENT]}) says float {wanted}"
        )
    if not np.isfinite(a).all():
        raise BundleError(f"bundle file {path}: {declared.name} holds values that are not finite")
    if declared.positive and not (a > 0).all():
        raise BundleError(f"bundle file {path}: {declared.name} must be positive, not {float(a.min())}")
    return a

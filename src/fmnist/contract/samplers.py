"""The bundle's latent samplers, each declared once: its arrays in ``samplers.npz`` with their
shapes, the graph that decodes its latents, and its draw (numpy, imported by the draws alone).

A sampler may also draw one class: its ``by_class`` arrays hold one fitted density per class
(bundle format 2 and later); format-1 bundles have none and draw every class. Shapes use the
symbols of fmnist.contract.graphs: ``"d"`` is ``latent_dim``, ``"k"`` the number of classes, any
other string a size of at least 1, the same wherever it appears within one sampler. An array of
shape ``()`` is a scalar. Export writes these arrays, the loader checks them (floating point,
finite, these shapes, ``positive`` ones above 0) and ``Bundle`` draws through ``draw``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from fmnist.contract.graphs import LATENT, NUM_CLASSES
from fmnist.errors import InputError

CLASSES = "k"
NPZ = "samplers.npz"
# the first bundle format whose samplers.npz holds the per-class arrays
CLASS_FORMAT = 2
CLASS_EXPORT = "re-export it with `fmnist export`, or add them with `python -m fmnist.export.refit BUNDLE_DIR`"


class Array(NamedTuple):  # a NamedTuple for the cold start, as graphs.Tensor
    name: str
    shape: tuple[int | str, ...]
    positive: bool = False  # every value above 0 (a bandwidth)


class Sampler(NamedTuple):
    name: str
    decoder: str  # the graph (fmnist.contract.graphs) that turns its latents into images
    arrays: tuple[Array, ...]
    draw: Callable  # (arrays, n, seed, latent_dim) -> float64 latents (n, d)
    doc: str
    by_class: tuple[Array, ...] = ()
    draw_class: Callable | None = None  # (arrays, n, seed, label) -> latents of that class


def kde_sample(points, bandwidth: float, n: int, seed: int):
    """Gaussian-KDE samples, draw for draw what scikit-learn's KernelDensity.sample gives."""
    import numpy as np

    rng = np.random.RandomState(seed)
    u = rng.uniform(0, 1, size=n)
    i = (u * points.shape[0]).astype(np.int64)
    return np.atleast_2d(rng.normal(points[i], bandwidth))


def _kde(arrays, n: int, seed: int, latent_dim: int):
    return kde_sample(arrays["kde_latent_points"], float(arrays["kde_latent_bandwidth"]), n, seed)


def _kde_class(arrays, n: int, seed: int, label: int):
    return kde_sample(arrays["kde_class_points"][label], float(arrays["kde_class_bandwidth"][label]), n, seed)


def _kde_pca(arrays, n: int, seed: int, latent_dim: int):
    coords = kde_sample(arrays["kde_pca_points"], float(arrays["kde_pca_bandwidth"]), n, seed)
    return coords @ arrays["pca_components"] + arrays["pca_mean"]  # PCA.inverse_transform (no whitening)


def _normal(arrays, n: int, seed: int, latent_dim: int):
    import numpy as np

    return np.random.default_rng(seed).standard_normal((n, latent_dim))


SAMPLERS: tuple[Sampler, ...] = (
    Sampler(
        "kde",
        "decoder",
        (Array("kde_latent_points", ("m", LATENT)), Array("kde_latent_bandwidth", (), positive=True)),
        _kde,
        "KDE on the full AE latent, which keeps the correlations between latent dimensions and so decodes "
        "to the most garment-like images; with a class, the KDE fitted on that class's training latents",
        by_class=(
            Array("kde_class_points", (CLASSES, "m", LATENT)),
            Array("kde_class_bandwidth", (CLASSES,), positive=True),
        ),
        draw_class=_kde_class,
    ),
    Sampler(
        "kde-pca",
        "decoder",
        (
            Array("pca_mean", (LATENT,)),
            Array("pca_components", ("c", LATENT)),
            Array("kde_pca_points", ("m", "c")),
            Array("kde_pca_bandwidth", (), positive=True),
        ),
        _kde_pca,
        "the seed's KDE in 2-D PCA space, then inverse PCA (blurrier)",
    ),
    Sampler("vae", "vae_decoder", (), _normal, "z ~ N(0, I) through the VAE decoder"),
)
BY_NAME = {s.name: s for s in SAMPLERS}
NAMES = tuple(BY_NAME)
DEFAULT = "kde"
FIXED_SIZES = {CLASSES: NUM_CLASSES}


def sampler(name: str) -> Sampler:
    """The declaration of ``name``; InputError listing the samplers when there is none."""
    if name not in BY_NAME:
        raise InputError(f"unknown sampler {name!r}: choose one of {', '.join(NAMES)}")
    return BY_NAME[name]


def arrays_of(s: Sampler, format_version: int) -> tuple[tuple[Array, ...], ...]:
    """The groups of arrays a bundle of ``format_version`` holds for ``s``; each group binds its own symbols."""
    return (s.arrays, s.by_class) if format_version >= CLASS_FORMAT and s.by_class else (s.arrays,)


def help_text() -> str:
    """The samplers as the CLI's --sampler help and the API's schema describe them."""
    return "; ".join(f"{s.name}{' (default)' if s.name == DEFAULT else ''}: {s.doc}" for s in SAMPLERS) + "."


def parse_class(value: int | str, class_names: Sequence[str]) -> int:
    """A class given as its label number (0-9) or its name in any case -> the label.

    Raises:
        InputError: one line listing the labels and names.
    """
    text = str(value).strip()
    if text.isdigit() and int(text) < len(class_names):
        return int(text)
    folded = [n.casefold() for n in class_names]
    if text.casefold() in folded:
        return folded.index(text.casefold())
    names = ", ".join(f"{i} {n}" for i, n in enumerate(class_names))
    raise InputError(f"unknown class {text[:40]!r}: give a label number or a class name ({names})")

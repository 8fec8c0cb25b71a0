"""Latent samplers fitted on the encoded training images: PCA, and Gaussian KDEs whose bandwidth
is chosen by cross-validated grid search (as the seed did), in PCA space, on the full latent, and
on each class's latents alone (the class-conditional ``kde``). What ``samplers.npz`` holds is
declared in fmnist.contract.samplers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist.errors import ConfigError

# The grid is Scott's rule times these factors, so it follows the latents' scale (a fixed grid
# leaves a small latent on its floor). Garments form clusters, and cross-validation picks about
# half of Scott's rule, which assumes one Gaussian: the factors sit mostly below 1.
BANDWIDTH_FACTORS = np.logspace(-1, np.log10(3), 20)
FOLDS = 5
# Latents each class's KDE keeps at most: the bundle ships them, and past about a thousand the
# cross-validated bandwidth barely shrinks (Scott's rule goes as n^(-1/(d+4))).
CLASS_POINTS = 1000


@dataclass(frozen=True)
class Samplers:
    pca: object  # sklearn.decomposition.PCA
    kde_pca: object  # sklearn.neighbors.KernelDensity on PCA coordinates
    kde_latent: object  # sklearn.neighbors.KernelDensity on the full latent
    grids: dict[str, tuple[float, float]]  # KDE name -> the ends of its searched bandwidth grid
    notices: tuple[str, ...] = ()  # e.g. a best bandwidth at the grid's edge
    by_class: ClassKDEs | None = None


@dataclass(frozen=True)
class ClassKDEs:
    """One KDE per class, each on the same number of that class's latents."""

    kdes: tuple  # sklearn.neighbors.KernelDensity, by label
    grids: tuple[tuple[float, float], ...]
    notices: tuple[str, ...] = ()


def scott_bandwidth(points: np.ndarray) -> float:
    """Scott's rule for an isotropic Gaussian kernel: the mean standard deviation times n^(-1/(d+4))
    (Scott, Multivariate Density Estimation, 1992)."""
    n, d = points.shape
    return float(points.std(axis=0, ddof=1).mean() * n ** (-1.0 / (d + 4)))


def edge_notice(name: str, best: float, grid: np.ndarray, scott: float) -> str | None:
    """A notice when the chosen bandwidth is an end of the grid: the optimum may lie beyond it."""
    low, high = np.isclose(best, grid[0]), np.isclose(best, grid[-1])
    if not (low or high):
        return None
    return (
        f"{name}: the best KDE bandwidth {best:.3g} is at the {'low' if low else 'high'} end of the searched grid "
        f"({grid[0]:.3g} to {grid[-1]:.3g}, around Scott's rule {scott:.3g}); the best may lie beyond it, "
        f"and the samples may be too {'rough' if low else 'smooth'}"
    )


def bandwidth_search(points: np.ndarray, seed: int):
    """5-fold cross-validated likelihood of Gaussian KDEs on a bandwidth grid around Scott's rule:
    the fitted GridSearchCV (its ``cv_results_`` hold the curve), the grid and Scott's rule."""
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.neighbors import KernelDensity

    scott = scott_bandwidth(points)
    grid = scott * BANDWIDTH_FACTORS
    search = GridSearchCV(
        KernelDensity(kernel="gaussian"), {"bandwidth": grid}, cv=KFold(FOLDS, shuffle=True, random_state=seed)
    )
    return search.fit(points), grid, scott


def fit_kde(points: np.ndarray, seed: int, name: str = "KDE"):
    """A Gaussian KDE whose bandwidth is picked by :func:`bandwidth_search`; returns the fitted
    KDE, its grid and a notice (or None)."""
    search, grid, scott = bandwidth_search(points, seed)
    kde = search.best_estimator_
    return kde, grid, edge_notice(name, kde.bandwidth_, grid, scott)


def _ends(grid: np.ndarray) -> tuple[float, float]:
    return float(grid[0]), float(grid[-1])


def fit_samplers(
    latents: np.ndarray,
    n_components: int,
    kde_points: int,
    seed: int,
    labels: np.ndarray | None = None,
    class_names: tuple[str, ...] = (),
    decoded: np.ndarray | None = None,
) -> Samplers:
    """PCA on all latents; each KDE on a seeded subset of ``kde_points`` of them (it stores its
    points, and the bundle ships them); with ``labels``, a KDE per class too (fit_class_kdes)."""
    from sklearn.decomposition import PCA

    latents = latents.astype(np.float64)
    pca = PCA(n_components=n_components, random_state=seed).fit(latents)
    rng = np.random.default_rng(seed)
    subset = latents[rng.permutation(len(latents))[:kde_points]]
    kde_pca, pca_grid, pca_notice = fit_kde(pca.transform(subset), seed, "kde-pca")
    kde_latent, latent_grid, latent_notice = fit_kde(subset, seed, "kde")
    grids = {"kde_pca": _ends(pca_grid), "kde_latent": _ends(latent_grid)}
    by_class = None
    if labels is not None:
        by_class = fit_class_kdes(latents, labels, kde_points, seed, class_names, decoded)
    notices = (*(n for n in (pca_notice, latent_notice) if n), *(by_class.notices if by_class else ()))
    return Samplers(pca, kde_pca, kde_latent, grids, notices, by_class)


def class_pool(labels: np.ndarray, k: int, decoded: np.ndarray | None) -> np.ndarray:
    """Indices of class ``k``'s latents that decode to ``k`` (all of them when ``decoded`` is None,
    or when too few do for a cross-validated bandwidth, as with a barely trained model)."""
    members = np.flatnonzero(labels == k)
    kept = members if decoded is None else members[np.asarray(decoded)[members] == k]
    return kept if len(kept) >= FOLDS else members


def fit_class_kdes(
    latents: np.ndarray,
    labels: np.ndarray,
    kde_points: int,
    seed: int,
    class_names: tuple[str, ...],
    decoded: np.ndarray | None = None,
) -> ClassKDEs:
    """A KDE per class on a seeded subset of that class's latents, its bandwidth chosen as the
    full KDE's is (fit_kde); every class keeps the same number of points: ``kde_points``, at most
    CLASS_POINTS, or the smallest class pool's size (class_pool) when lower.

    ``decoded``, the bundle's classifier's class for the decoding of each latent, keeps only the
    latents the decoder turns back into their own class: a coat whose latent decodes to a shirt
    would make the coat KDE draw shirts, and the bandwidth spreads them further.
    """
    latents, labels = latents.astype(np.float64), np.asarray(labels)
    pools = [class_pool(labels, k, decoded) for k in range(len(class_names))]
    m = min(kde_points, CLASS_POINTS, *(len(p) for p in pools))
    if m < FOLDS:  # the bandwidth's cross-validation needs a point per fold
        raise ConfigError(f"{m} training latents in a class, too few for a KDE per class: train on more images")
    rng = np.random.default_rng(seed)
    fits = [
        fit_kde(latents[rng.permutation(pool)[:m]], seed, f"kde, class {name}")
        for pool, name in zip(pools, class_names, strict=True)
    ]
    return ClassKDEs(tuple(f[0] for f in fits), tuple(_ends(f[1]) for f in fits), tuple(f[2] for f in fits if f[2]))


def class_arrays(c: ClassKDEs) -> dict[str, np.ndarray]:
    """The per-class arrays of samplers.npz (fmnist.contract.samplers)."""
    return {
        "kde_class_points": np.stack([np.asarray(k.tree_.data) for k in c.kdes]),
        "kde_class_bandwidth": np.array([k.bandwidth_ for k in c.kdes], np.float64),
    }


def class_summary(c: ClassKDEs) -> dict:
    """What the manifest's ``samplers`` says of the per-class KDEs."""
    return {
        "kde_class_points": int(c.kdes[0].tree_.data.shape[0]),
        "kde_class_bandwidth": [float(k.bandwidth_) for k in c.kdes],
        "kde_class_bandwidth_grid": [list(g) for g in c.grids],
    }


def save_samplers(s: Samplers, folder: Path) -> dict:
    """The joblib pickles (training side) and ``samplers.npz`` (pickle-free, for inference)."""
    import joblib

    for name in ("pca", "kde_pca", "kde_latent"):
        joblib.dump(getattr(s, name), folder / f"{name}.joblib")
    np.savez(
        folder / "samplers.npz",
        pca_mean=s.pca.mean_,
        pca_components=s.pca.components_,
        kde_pca_points=np.asarray(s.kde_pca.tree_.data),
        kde_pca_bandwidth=np.float64(s.kde_pca.bandwidth_),
        kde_latent_points=np.asarray(s.kde_latent.tree_.data),
        kde_latent_bandwidth=np.float64(s.kde_latent.bandwidth_),
        **(class_arrays(s.by_class) if s.by_class else {}),
    )
    return {
        "pca_components": int(s.pca.n_components_),
        "pca_explained_variance_ratio": [float(v) for v in s.pca.explained_variance_ratio_],
        "kde_points": int(s.kde_latent.tree_.data.shape[0]),
        "kde_pca_bandwidth": float(s.kde_pca.bandwidth_),
        "kde_latent_bandwidth": float(s.kde_latent.bandwidth_),
        "kde_pca_bandwidth_grid": list(s.grids["kde_pca"]),
        "kde_latent_bandwidth_grid": list(s.grids["kde_latent"]),
        **(class_summary(s.by_class) if s.by_class else {}),
    }

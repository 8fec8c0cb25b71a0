"""Latent samplers fitted on the encoded training images: PCA, and Gaussian KDEs whose bandwidth
is chosen by cross-validated grid search (as the seed did), in PCA space and on the full latent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The grid is Scott's rule times these factors, so it follows the latents' scale (a fixed grid
# leaves a small latent on its floor). Garments form clusters, and cross-validation picks about
# half of Scott's rule, which assumes one Gaussian: the factors sit mostly below 1.
BANDWIDTH_FACTORS = np.logspace(-1, np.log10(3), 20)


@dataclass(frozen=True)
class Samplers:
    pca: object  # sklearn.decomposition.PCA
    kde_pca: object  # sklearn.neighbors.KernelDensity on PCA coordinates
    kde_latent: object  # sklearn.neighbors.KernelDensity on the full latent
    grids: dict[str, tuple[float, float]]  # KDE name -> the ends of its searched bandwidth grid
    notices: tuple[str, ...] = ()  # e.g. a best bandwidth at the grid's edge


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
        KernelDensity(kernel="gaussian"), {"bandwidth": grid}, cv=KFold(5, shuffle=True, random_state=seed)
    )
    return search.fit(points), grid, scott


def fit_kde(points: np.ndarray, seed: int, name: str = "KDE"):
    """A Gaussian KDE whose bandwidth is picked by :func:`bandwidth_search`; returns the fitted
    KDE, its grid and a notice (or None)."""
    search, grid, scott = bandwidth_search(points, seed)
    kde = search.best_estimator_
    return kde, grid, edge_notice(name, kde.bandwidth_, grid, scott)


def fit_samplers(latents: np.ndarray, n_components: int, kde_points: int, seed: int) -> Samplers:
    """PCA on all latents; each KDE on a seeded subset of ``kde_points`` of them (it stores its
    points, and the bundle ships them)."""
    from sklearn.decomposition import PCA

    latents = latents.astype(np.float64)
    pca = PCA(n_components=n_components, random_state=seed).fit(latents)
    rng = np.random.default_rng(seed)
    subset = latents[rng.permutation(len(latents))[:kde_points]]
    kde_pca, pca_grid, pca_notice = fit_kde(pca.transform(subset), seed, "kde-pca")
    kde_latent, latent_grid, latent_notice = fit_kde(subset, seed, "kde")
    grids = {
        "kde_pca": (float(pca_grid[0]), float(pca_grid[-1])),
        "kde_latent": (float(latent_grid[0]), float(latent_grid[-1])),
    }
    return Samplers(pca, kde_pca, kde_latent, grids, tuple(n for n in (pca_notice, latent_notice) if n))


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
    )
    return {
        "pca_components": int(s.pca.n_components_),
        "pca_explained_variance_ratio": [float(v) for v in s.pca.explained_variance_ratio_],
        "kde_points": int(s.kde_latent.tree_.data.shape[0]),
        "kde_pca_bandwidth": float(s.kde_pca.bandwidth_),
        "kde_latent_bandwidth": float(s.kde_latent.bandwidth_),
        "kde_pca_bandwidth_grid": list(s.grids["kde_pca"]),
        "kde_latent_bandwidth_grid": list(s.grids["kde_latent"]),
    }

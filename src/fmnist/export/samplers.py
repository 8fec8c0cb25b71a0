"""Latent samplers fitted on the encoded training images: PCA, and Gaussian KDEs whose bandwidth
is chosen by cross-validated grid search (as the seed did), in PCA space and on the full latent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

BANDWIDTHS = np.logspace(-1, 1, 20)


@dataclass(frozen=True)
class Samplers:
    pca: object  # sklearn.decomposition.PCA
    kde_pca: object  # sklearn.neighbors.KernelDensity on PCA coordinates
    kde_latent: object  # sklearn.neighbors.KernelDensity on the full latent


def fit_kde(points: np.ndarray, seed: int):
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.neighbors import KernelDensity

    search = GridSearchCV(
        KernelDensity(kernel="gaussian"), {"bandwidth": BANDWIDTHS}, cv=KFold(5, shuffle=True, random_state=seed)
    )
    return search.fit(points).best_estimator_


def fit_samplers(latents: np.ndarray, n_components: int, kde_points: int, seed: int) -> Samplers:
    """PCA on all latents; each KDE on a seeded subset of ``kde_points`` of them (it stores its
    points, and the bundle ships them)."""
    from sklearn.decomposition import PCA

    latents = latents.astype(np.float64)
    pca = PCA(n_components=n_components, random_state=seed).fit(latents)
    rng = np.random.default_rng(seed)
    subset = latents[rng.permutation(len(latents))[:kde_points]]
    return Samplers(pca, fit_kde(pca.transform(subset), seed), fit_kde(subset, seed))


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
    }

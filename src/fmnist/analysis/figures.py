"""One function per report figure: numpy arrays and a path in, a PNG out (matplotlib Agg).

The confusion matrix and the sample grids reuse :mod:`fmnist.training.figures`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fmnist import CLASS_NAMES
from fmnist.training.figures import _pyplot

DPI = 110


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)
    return path


def loss_curves(
    epochs: np.ndarray,
    columns: dict[str, np.ndarray],
    panels: Sequence[tuple[str, Sequence[str]]],
    title: str,
    path: Path,
) -> Path:
    """One panel per (y label, metric columns); every column is a curve over ``epochs``.

    Columns absent from ``columns`` are left out of their panel (a run may predate a metric).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (label, names) in zip(axes[0], panels, strict=True):
        for name in names:
            if name in columns:
                ax.plot(epochs, columns[name], marker="o", markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def sample_grid(images: np.ndarray, title: str, path: Path, columns: int = 8) -> Path:
    """(n, 28, 28) in [0, 1] as one titled grid, each image shown large enough to look at."""
    from fmnist.runtime.images import grid

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 7.4))
    ax.imshow(grid(images, columns), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=11)
    return _save(fig, path)


def image_rows(
    rows: Sequence[np.ndarray], row_labels: Sequence[str], col_labels: Sequence[str], title: str, path: Path
) -> Path:
    """A table of 28x28 images: ``rows[i]`` is (n, 28, 28) in [0, 1], labelled by row and column."""
    plt = _pyplot()
    n = len(col_labels)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.05 * n + 0.8, 1.15 * len(rows) + 0.6), squeeze=False)
    for i, (images, row_label) in enumerate(zip(rows, row_labels, strict=True)):
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(images[j], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(col_labels[j], fontsize=7)
            if j == 0:
                ax.set_ylabel(row_label, fontsize=9)
    fig.suptitle(title)
    return _save(fig, path)


def latent_histograms(
    data: np.ndarray, sampled: np.ndarray, axis_labels: tuple[str, str], sampled_label: str, path: Path
) -> Path:
    """2-D histograms of the encoded test set (N, 2) and of KDE samples (M, 2), on shared bins."""
    plt = _pyplot()
    both = np.concatenate([data, sampled])
    lo, hi = np.percentile(both, [0.5, 99.5], axis=0)
    bins = [np.linspace(lo[k], hi[k], 60) for k in range(2)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), sharex=True, sharey=True)
    for ax, points, name in zip(axes, (data, sampled), ("encoded test set", sampled_label), strict=True):
        ax.hist2d(points[:, 0], points[:, 1], bins=bins, cmap="viridis")
        ax.set_title(f"{name} ({len(points)} points)")
        ax.set_xlabel(axis_labels[0])
        ax.set_ylabel(axis_labels[1])
    fig.suptitle("Latent density: data vs KDE samples")
    return _save(fig, path)


def class_map(points: np.ndarray, labels: np.ndarray, title: str, axis_labels: tuple[str, str], path: Path) -> Path:
    """(N, 2) points coloured by class, with a legend of class names."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 6.4))
    cmap = plt.get_cmap("tab10")
    for k, name in enumerate(CLASS_NAMES):
        mask = labels == k
        ax.scatter(points[mask, 0], points[mask, 1], s=4, alpha=0.6, color=cmap(k), label=name, rasterized=True)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title)
    ax.legend(markerscale=3, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, path)


def per_class_accuracy(accuracy: Sequence[float], path: Path) -> Path:
    """Bar chart of test accuracy per class, the mean as a dashed line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    bars = ax.bar(range(10), accuracy, color=plt.get_cmap("tab10")(np.arange(10)))
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.axhline(float(np.mean(accuracy)), color="black", linestyle="--", linewidth=1, label="mean")
    ax.set_xticks(range(10), CLASS_NAMES, rotation=35, ha="right")
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("accuracy")
    ax.set_title("Classifier accuracy per class (test set)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def axes_figure(ax, path: Path) -> Path:
    """Save the figure that holds an existing matplotlib Axes (Optuna's plots return one)."""
    fig = ax.figure
    fig.set_size_inches(8, 5)
    return _save(fig, path)


def bandwidth_curves(curves: dict[str, dict], path: Path) -> Path:
    """One panel per KDE: the cross-validated mean log-likelihood per held-out point against the
    bandwidth (log axis), +- one standard deviation over the folds, the chosen bandwidth marked."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(5.2 * len(curves), 4.0), squeeze=False)
    for ax, (name, c) in zip(axes[0], curves.items(), strict=True):
        ax.plot(c["grid"], c["mean"], marker="o", markersize=3, label="5-fold CV")
        ax.fill_between(c["grid"], c["mean"] - c["std"], c["mean"] + c["std"], alpha=0.2)
        ax.axvline(c["chosen"], color="black", linestyle="--", linewidth=1, label=f"chosen {c['chosen']:.3g}")
        ax.axvline(c["scott"], color="grey", linestyle=":", linewidth=1, label=f"Scott's rule {c['scott']:.3g}")
        ax.set_xscale("log")
        ax.set_xlabel("bandwidth")
        ax.set_ylabel("held-out log-likelihood per point")
        ax.set_title(f"{name}: bandwidth by cross-validation")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("KDE samplers: the bandwidth's cross-validation curves")
    return _save(fig, path)

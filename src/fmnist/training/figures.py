"""Figures written into a model's run folder at the end of training (matplotlib Agg, headless)."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from fmnist import CLASS_NAMES
from fmnist.training.data import Split, to_float


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_confusion(confusion: list[list[float]], folder: Path) -> None:
    """Row-normalised confusion matrix (rows: true class) as CSV and as a labelled heatmap."""
    with open(folder / "confusion_matrix.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *CLASS_NAMES])
        for name, row in zip(CLASS_NAMES, confusion, strict=True):
            writer.writerow([name, *(f"{v:.4f}" for v in row)])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(confusion, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(10), CLASS_NAMES, rotation=45, ha="right")
    ax.set_yticks(range(10), CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i, row in enumerate(confusion):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title("Classifier confusion matrix (test set, row-normalised)")
    fig.tight_layout()
    fig.savefig(folder / "confusion_matrix.png", dpi=110)
    plt.close(fig)


def save_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> None:
    """(N, 1, 28, 28) in [0, 1] -> one PNG grid."""
    from torchvision.utils import save_image

    save_image(images, str(path), nrow=nrow, padding=2, pad_value=0.5)


@torch.inference_mode()
def save_vae_grids(vae, split: Split, folder: Path, seed: int, n: int = 64) -> None:
    """``samples.png``: decoded z ~ N(0, I); ``reconstructions.png``: test images above their
    reconstructions from the posterior mean."""
    vae.eval()
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, vae.mean.out_features, generator=g)
    save_grid(vae.decoder(z), folder / "samples.png")
    x = to_float(split.images[:32])
    mu, _ = vae.encode(x)
    pairs = torch.cat([x[:8], vae.decoder(mu[:8]), x[8:16], vae.decoder(mu[8:16])])
    save_grid(pairs, folder / "reconstructions.png")

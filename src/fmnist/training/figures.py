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


# what each figure's title calls the model it shows
TITLES = {
    "head": "Head on the frozen AE encoder",
    "classifier": "Classifier (fine-tuned AE encoder)",
    "vae": "VAE",
}


def save_confusion(confusion: list[list[float]], folder: Path, model: str = "classifier") -> None:
    """Row-normalised confusion matrix (rows: true class) as CSV and as a labelled heatmap titled
    with ``model`` (head or classifier)."""
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
    ax.set_title(f"{TITLES[model]}: confusion matrix (test set, row-normalised)")
    fig.tight_layout()
    fig.savefig(folder / "confusion_matrix.png", dpi=110)
    plt.close(fig)


@torch.inference_mode()
def save_vae_grids(vae, split: Split, folder: Path, seed: int, n: int = 64) -> None:
    """``samples.png``: decoded z ~ N(0, I); ``reconstructions.png``: the first test image of each
    class above its reconstruction from the posterior mean; both titled and labelled, as legible
    as the report's figures."""
    from fmnist.analysis import figures
    from fmnist.analysis.report import first_of_each_class

    vae.eval()
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, vae.mean.out_features, generator=g)
    title = f"{TITLES['vae']}: {n} samples, z ~ N(0, I) -> decoder"
    figures.sample_grid(vae.decoder(z).squeeze(1).numpy(), title, folder / "samples.png")
    picks = first_of_each_class(split.labels)
    x = to_float(split.images[picks])
    recon = vae.decoder(vae.encode(x)[0])
    names = [CLASS_NAMES[int(split.labels[i])].replace("/", "/\n") for i in picks]
    figures.image_rows(
        [x.squeeze(1).numpy(), recon.squeeze(1).numpy()],
        ["test", "VAE"],
        names,
        f"{TITLES['vae']}: test images and their reconstructions (posterior mean)",
        folder / "reconstructions.png",
    )

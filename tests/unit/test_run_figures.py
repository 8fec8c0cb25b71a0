"""The figures a training run leaves in its model folders: titled with their model, garments large."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fmnist.config import Config
from fmnist.training import figures
from fmnist.training.data import Split
from fmnist.training.models import VAE

MIN_GARMENT_PX = 56


@pytest.fixture
def titles(monkeypatch) -> list[str]:
    """The titles of every figure closed by training.figures (its axes' and its suptitle)."""
    plt = figures._pyplot()
    seen: list[str] = []
    close = plt.close

    def recording_close(fig):
        seen.extend(ax.get_title() for ax in fig.axes if ax.get_title())
        seen.append(fig._suptitle.get_text() if fig._suptitle else "")
        close(fig)

    monkeypatch.setattr(plt, "close", recording_close)
    return seen


@pytest.mark.parametrize(("model", "name"), [("head", "Head on the frozen AE encoder"), ("classifier", "Classifier")])
def test_the_confusion_matrix_is_titled_with_its_model(model, name, titles, tmp_path):
    figures.save_confusion(np.eye(10).tolist(), tmp_path, model)
    assert titles[0].startswith(f"{name}") and ("Classifier" in titles[0]) == (model == "classifier")
    assert (tmp_path / "confusion_matrix.csv").read_text().startswith("true \\ predicted,T-shirt/top")


def test_vae_grids_are_titled_labelled_and_large(titles, tmp_path):
    torch.manual_seed(0)
    labels = torch.arange(10).repeat(2)
    split = Split(torch.randint(0, 256, (20, 28, 28), dtype=torch.uint8), labels)
    figures.save_vae_grids(VAE(Config(arch="seed")), split, tmp_path, seed=0)
    assert any(t.startswith("VAE: 64 samples") for t in titles)
    assert any(t.startswith("VAE: test images and their reconstructions") for t in titles)
    with Image.open(tmp_path / "samples.png") as samples, Image.open(tmp_path / "reconstructions.png") as pairs:
        assert samples.width >= 8 * MIN_GARMENT_PX and samples.height >= 8 * MIN_GARMENT_PX
        assert pairs.width >= 10 * MIN_GARMENT_PX and pairs.height >= 2 * MIN_GARMENT_PX

"""The inference side on a really trained and exported bundle (the toy bundle covers the rest)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fmnist.cli.app import app
from fmnist.runtime.bundle import Bundle
from fmnist.runtime.evaluation import load_test_set


def run_cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def test_pngs(tmp_path_factory, data_dir):
    """Five official test images as PNGs, with their labels."""
    images, labels = load_test_set(data_dir)
    folder = tmp_path_factory.mktemp("pngs")
    for i in range(5):
        Image.fromarray((images[i] * 255).round().astype(np.uint8)).save(folder / f"t{i}.png")
    return folder, labels[:5]


def test_pickle_free_samplers_match_the_joblib_objects(tiny_bundle):
    import joblib

    model = Bundle(tiny_bundle)
    kde, kde_pca, pca = (joblib.load(tiny_bundle / f"{n}.joblib") for n in ("kde_latent", "kde_pca", "pca"))
    assert np.array_equal(model.sample_latents(20, "kde", 5), kde.sample(20, random_state=5))
    assert np.allclose(
        model.sample_latents(20, "kde-pca", 5), pca.inverse_transform(kde_pca.sample(20, random_state=5))
    )


def test_evaluate_reproduces_the_manifest_on_the_data_it_was_exported_with(tiny_bundle, no_default_data):
    result = run_cli("evaluate", "--json", "--artifacts", tiny_bundle)  # no --data-dir: the manifest's
    assert result.exit_code == 0, result.output
    assert "notice" not in result.stderr  # usable models, if small ones
    got = json.loads(result.stdout)
    metrics = json.loads((tiny_bundle / "manifest.json").read_text())["metrics"]
    assert got["reconstruction_mse"] == pytest.approx(metrics["reconstruction_mse"], rel=1e-4)
    assert got["classifier_accuracy"] == pytest.approx(metrics["classifier_accuracy"], abs=2e-4)
    assert got["vae_elbo"] == pytest.approx(metrics["vae_elbo"], abs=1.0)  # one noise draw each
    assert set(got["samplers"]) == {"kde", "kde-pca", "vae"}
    for s in got["samplers"].values():
        assert s["frechet_distance"] >= 0 and 0.1 <= s["mean_top_probability"] <= 1
        assert sum(s["class_spread"].values()) == pytest.approx(1.0)


def test_classify_test_pngs_like_the_raw_arrays(tiny_bundle, test_pngs):
    """Official test images saved as PNGs go through preprocessing unchanged."""
    folder, _ = test_pngs
    result = run_cli("classify", folder, "--json", "--artifacts", tiny_bundle)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    images = np.stack([np.asarray(Image.open(folder / f"t{i}.png"), np.float32) / 255 for i in range(5)])
    probabilities = Bundle(tiny_bundle).classify(images)
    assert [r["label"] for r in rows] == probabilities.argmax(1).tolist()
    # the CLI scales bytes by float32(1/255), the test divides by 255: ~1e-7 apart per pixel
    assert [r["probability"] for r in rows] == pytest.approx(probabilities.max(1).tolist(), rel=1e-5)

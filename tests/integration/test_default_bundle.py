"""The bundle shipped inside the package: present, verified, good, and reproducible."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fmnist import artifacts
from fmnist.cli.app import app
from fmnist.runtime.bundle import Bundle
from fmnist.runtime.evaluation import load_test_set

DEFAULT = artifacts.default_bundle_dir()


@pytest.fixture
def clean_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv("FMNIST_ARTIFACTS", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_default_bundle_is_used_when_nothing_else_is_given(clean_cwd):
    assert artifacts.resolve_bundle_dir(None) == DEFAULT
    manifest = artifacts.load_manifest(DEFAULT)
    assert sum(f["size"] for f in manifest["files"].values()) < 5_000_000
    assert manifest["config"]["arch"] == "seed" and manifest["latent_dim"] == 8
    (clean_cwd / "artifacts").mkdir()  # a folder without a manifest is not taken for a bundle
    assert artifacts.resolve_bundle_dir(None) == DEFAULT


def test_default_bundle_meets_the_ae_and_classifier_targets():
    metrics = artifacts.load_manifest(DEFAULT)["metrics"]
    assert metrics["reconstruction_mse"] <= 0.0152  # the seed's test MSE at d=8
    assert metrics["classifier_accuracy"] >= 0.83  # the seed's frozen-encoder accuracy


def test_default_bundle_meets_the_vae_target():
    assert artifacts.load_manifest(DEFAULT)["metrics"]["vae_elbo"] >= 459  # the seed's test ELBO, nats/image


def test_generate_and_classify_work_right_after_installing(clean_cwd, data_dir):
    result = CliRunner().invoke(app, ["generate", "--n", "16"])
    assert result.exit_code == 0, result.output
    assert Image.open(clean_cwd / "samples.png").size == (122, 122)
    images, labels = load_test_set(data_dir)
    folder = clean_cwd / "test-images"
    folder.mkdir()
    for i in range(20):
        Image.fromarray((images[i] * 255).round().astype(np.uint8)).save(folder / f"{i:02d}.png")
    rows = json.loads(CliRunner().invoke(app, ["classify", str(folder), "--json"]).stdout)
    assert sum(r["label"] == y for r, y in zip(rows, labels[:20], strict=True)) >= 15


def test_evaluate_reproduces_the_default_manifest(data_dir):
    metrics = artifacts.load_manifest(DEFAULT)["metrics"]
    images, labels = load_test_set(data_dir)
    from fmnist.runtime.evaluation import evaluate_bundle

    got = evaluate_bundle(Bundle(DEFAULT, "cpu"), images, labels, generated=500)
    assert got["reconstruction_mse"] == pytest.approx(metrics["reconstruction_mse"], rel=1e-4)
    assert got["classifier_accuracy"] == pytest.approx(metrics["classifier_accuracy"], abs=2e-4)
    assert got["vae_elbo"] == pytest.approx(metrics["vae_elbo"], abs=1.0)

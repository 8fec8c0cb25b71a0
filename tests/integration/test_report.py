"""``fmnist report`` on the tiny run: every figure is a real, non-blank PNG referenced by the page."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fmnist.cli.app import app

FIGURES = [
    "dataset_preview.png",
    "reconstructions_compared.png",
    "kde_bandwidths.png",
    "loss_ae.png",
    "loss_classifier.png",
    "loss_vae.png",
    "reconstructions_ae.png",
    "reconstructions_vae.png",
    "latent_histogram.png",
    "latent_pca.png",
    "latent_tsne.png",
    "samples_kde-pca.png",
    "samples_kde.png",
    "samples_vae.png",
    "interpolation.png",
    "confusion_matrix.png",
    "per_class_accuracy.png",
]
STUDY_FIGURES = ["study_tune-demo_history.png", "study_tune-demo_importance.png"]
TSNE = ["--tsne-points", "300", "--tsne-perplexity", "10"]


def run_cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def add_study(run_dir):
    """A tiny Optuna study in the run folder, as `fmnist tune` would leave one."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="demo", storage=f"sqlite:///{run_dir / 'tune.db'}")
    study.optimize(
        lambda t: (t.suggest_float("lr", 1e-4, 1e-1, log=True) - 0.01) ** 2 + t.suggest_int("d", 2, 16) * 1e-3,
        n_trials=8,
    )


@pytest.fixture(scope="module")
def study_run(tiny_run, tmp_path_factory):
    """A copy of the tiny run (the shared one stays untouched) with a tuning study inside."""
    run = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(tiny_run, run)
    add_study(run)
    return run


def assert_real_png(path):
    with Image.open(path) as image:
        assert image.format == "PNG", path
        assert image.width >= 200 and image.height >= 200, (path, image.size)
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.var() > 20.0, (path, pixels.var())  # not blank


@pytest.mark.slow
def test_report_writes_every_figure_and_the_page(study_run, tiny_bundle, tmp_path, no_default_data):
    out = tmp_path / "report"
    # the tiny bundle was exported from tiny_run, not from this copy: PCA/KDE are refitted;
    # no --data-dir: the run's own data folder (run.json)
    result = run_cli("report", "--run-dir", study_run, "--out", out, "--artifacts", tiny_bundle, "--no-download",
                     *TSNE)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "refitting PCA/KDE" in result.output
    assert "t-SNE done in" in result.output
    page = (out / "report.html").read_text()
    for name in FIGURES + STUDY_FIGURES:
        assert_real_png(out / name)
        assert f"alt='{name}'" in page, name
    assert "data:image/png;base64," in page
    assert "test_accuracy" in page and "test_mse" in page  # the key-number table
    assert "[t-SNE]" not in result.output  # scikit-learn's own progress lines are silenced
    assert "the seed recipe&#x27;s bundle" in page and "KDE bandwidths in use: kde " in page


@pytest.mark.slow
def test_compare_shows_another_runs_ae(tiny_run, data_dir):
    import torch

    from fmnist import runs
    from fmnist.analysis.report import compared_reconstructions
    from fmnist.training import data as data_mod

    x = data_mod.to_float(data_mod.load_official(data_dir, train=False, download=False).images[:4])
    images, label = compared_reconstructions(tiny_run, x)
    ae = runs.load_models(tiny_run, ("ae",))["ae"].model.eval()
    with torch.inference_mode():
        assert np.allclose(images, ae(x).squeeze(1).numpy()) and label == tiny_run.name
    seed_images, seed_label = compared_reconstructions(None, x)
    assert seed_images.shape == (4, 28, 28) and seed_label == "seed recipe"


def test_dataset_preview_has_a_row_per_class(tmp_path):
    import torch

    from fmnist.analysis.report import PREVIEW_PER_CLASS, Report, dataset_preview
    from fmnist.training.data import Split

    labels = torch.arange(10).repeat(PREVIEW_PER_CLASS + 1)
    images = torch.randint(0, 256, (len(labels), 28, 28), dtype=torch.uint8)
    report = Report(tmp_path)
    dataset_preview(Split(images, labels), report)
    assert [f.file for f in report.figures] == ["dataset_preview.png"] and not report.notices
    with Image.open(tmp_path / "dataset_preview.png") as png:  # ten rows of garments at least 56 px each
        assert png.height >= 10 * 56 and png.width >= PREVIEW_PER_CLASS * 56
    few = Report(tmp_path / "few")
    dataset_preview(Split(images[:15], labels[:15]), few)
    assert not few.figures and few.notices == ["under 10 training images of T-shirt/top: no dataset preview"]


@pytest.mark.slow
def test_report_uses_the_runs_own_bundle(tiny_run, tiny_bundle, data_dir, tmp_path):
    from fmnist.analysis.report import load_samplers

    def no_refit():
        raise AssertionError("the bundle was exported from this run: no refit expected")

    samplers = load_samplers(tiny_run, tiny_bundle, True, no_refit, 0, print)
    assert samplers.source.startswith("bundle") and samplers.pca.n_components_ == 2


def test_missing_run_folder_exits_2(tmp_path):
    result = run_cli("report", "--run-dir", tmp_path / "nope", "--out", tmp_path / "out")
    assert result.exit_code == 2
    message = result.output.strip()  # the CliRunner mixes stderr in
    assert "does not exist" in message and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_latent_2d_uses_the_latent_itself_when_d_is_2():
    from sklearn.decomposition import PCA

    from fmnist.analysis.report import interpolate, latent_2d

    z = np.random.default_rng(0).normal(size=(50, 2))
    points, labels = latent_2d(z, PCA(2).fit(z))
    assert points is z and labels == ("z1", "z2")
    z8 = np.random.default_rng(0).normal(size=(50, 8))
    points, labels = latent_2d(z8, PCA(3).fit(z8))
    assert points.shape == (50, 2) and labels == ("PC1", "PC2")
    line = interpolate(np.zeros(3), np.ones(3), 5)
    assert line.shape == (5, 3) and np.allclose(line[:, 0], [0, 0.25, 0.5, 0.75, 1])

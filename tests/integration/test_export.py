"""Export: checked ONNX graphs, samplers, manifest integrity, atomic writes."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from fmnist import artifacts
from fmnist.cli.app import app
from fmnist.errors import BundleError
from fmnist.export.graphs import scaled_difference
from fmnist.training.data import load_official, to_float
from fmnist.training.modules import load_module


def test_bundle_files_and_manifest(tiny_bundle, tiny_run):
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    expected = {*artifacts.GRAPHS.values(), artifacts.SAMPLERS_NPZ, *artifacts.SKLEARN_PICKLES}
    assert set(manifest["files"]) == expected
    assert manifest["format_version"] == artifacts.FORMAT_VERSION
    assert manifest["latent_dim"] == 8 and len(manifest["class_names"]) == 10
    assert manifest["config"]["limit_train"] == 2000  # the run's config, not today's defaults
    assert manifest["config"] == json.loads((tiny_run / "config.json").read_text())  # the recipe, not the AE's
    summary = json.loads((tiny_run / "ae" / "summary.json").read_text())
    assert manifest["training_metrics"]["reconstruction_mse"] == summary["test_mse"]  # PyTorch, in the run
    assert manifest["metrics"]["reconstruction_mse"] == pytest.approx(summary["test_mse"], rel=1e-4)  # onnxruntime
    head = json.loads((tiny_run / "head" / "summary.json").read_text())
    assert manifest["training_metrics"]["head_accuracy"] == head["test_accuracy"]
    assert {"torch", "onnx", "onnxruntime", "scikit-learn"} <= set(manifest["libraries"])
    assert manifest["provenance"]["run_dir"] == str(tiny_run.resolve())
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == artifacts.sha256_file(tiny_bundle / name)
    assert artifacts.load_manifest(tiny_bundle)["files"] == manifest["files"]


@pytest.mark.parametrize("name", list(artifacts.GRAPHS))
def test_graphs_pass_the_checker_and_match_pytorch(tiny_bundle, tiny_run, data_dir, name):
    path = tiny_bundle / artifacts.GRAPHS[name]
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = to_float(load_official(data_dir, train=False, download=False).images[-37:])  # not the export batch
    ae = load_module("ae", str(tiny_run / "ae" / "best.ckpt")).model.eval()
    clf = load_module("classifier", str(tiny_run / "classifier" / "best.ckpt")).model.eval()
    vae = load_module("vae", str(tiny_run / "vae" / "best.ckpt")).model.eval()
    with torch.inference_mode():
        z, mu = ae.encoder(x), vae.encode(x)[0]
        hidden = clf.head.hidden(clf.encoder(x))
        logits = clf.head.out(hidden)
        cases = {
            "encoder": (x, [z]),
            "decoder": (z, [ae.decoder(z)]),
            "classifier": (x, [logits, torch.softmax(logits, 1), hidden]),
            "vae_encoder": (x, list(vae.encode(x))),
            "vae_decoder": (mu, [vae.decoder(mu)]),
        }
    inputs, want = cases[name]
    got = session.run(None, {session.get_inputs()[0].name: inputs.numpy()})
    assert [o.name for o in session.get_outputs()] == json.loads((tiny_bundle / "manifest.json").read_text())["graphs"][
        name
    ]["outputs"]
    assert session.get_inputs()[0].shape[0] == "N"  # dynamic batch axis
    for g, w in zip(got, want, strict=True):
        assert g.shape == tuple(w.shape)
        assert scaled_difference(g, w.numpy()) <= 1e-5
        if np.abs(w.numpy()).max() <= 1:  # images and probabilities: absolute
            assert np.abs(g - w.numpy()).max() <= 1e-5


def test_samplers_npz_holds_the_fitted_objects(tiny_bundle):
    import joblib

    arrays = np.load(tiny_bundle / "samplers.npz", allow_pickle=False)
    pca = joblib.load(tiny_bundle / "pca.joblib")
    kde = joblib.load(tiny_bundle / "kde_latent.joblib")
    kde_pca = joblib.load(tiny_bundle / "kde_pca.joblib")
    assert np.array_equal(arrays["pca_components"], pca.components_) and arrays["pca_components"].shape == (2, 8)
    assert np.array_equal(arrays["kde_latent_points"], np.asarray(kde.tree_.data))
    assert arrays["kde_latent_points"].shape == (400, 8) and arrays["kde_pca_points"].shape == (400, 2)
    assert float(arrays["kde_pca_bandwidth"]) == kde_pca.bandwidth_
    low, high = json.loads((tiny_bundle / "manifest.json").read_text())["samplers"]["kde_latent_bandwidth_grid"]
    assert np.isclose(np.geomspace(low, high, 20), kde.bandwidth_).any()  # picked from the grid around Scott's rule


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    return copy


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: (b / "decoder.onnx").unlink(), "decoder.onnx is missing"),
        (
            lambda b: (b / "encoder.onnx").write_bytes((b / "encoder.onnx").read_bytes()[:100]),
            "encoder.onnx has the wrong size",
        ),
        (
            lambda b: (b / "samplers.npz").write_bytes(b"x" * (b / "samplers.npz").stat().st_size),
            "samplers.npz fails its sha256",
        ),
        (lambda b: (b / "manifest.json").unlink(), "manifest.json is missing"),
        (lambda b: (b / "manifest.json").write_text('{"format_version": 99}'), "format 99"),
    ],
)
def test_damaged_bundles_are_refused_naming_the_file(bundle_copy, damage, message):
    damage(bundle_copy)
    with pytest.raises(BundleError, match=message):
        artifacts.load_manifest(bundle_copy)


def test_export_is_atomic(tiny_run, tiny_bundle, data_dir, tmp_path, monkeypatch):
    from fmnist.export import bundle

    out = tmp_path / "out"
    shutil.copytree(tiny_bundle, out)
    before = (out / "manifest.json").read_text()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bundle, "save_samplers", crash)
    result = CliRunner().invoke(
        app,
        ["export", "--run-dir", str(tiny_run), "--out", str(out), "--data-dir", str(data_dir), "--kde-points", "400"],
    )
    assert result.exit_code == 130
    assert (out / "manifest.json").read_text() == before  # the old bundle is untouched
    assert artifacts.load_manifest(out)
    # no temporary folder left behind; the lock beside --out stays (flock: a killed export leaves it unlocked)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]


def test_export_refuses_a_run_without_models_and_a_foreign_out_folder(tmp_path, tiny_run):
    result = CliRunner().invoke(app, ["export", "--run-dir", str(tmp_path)])
    assert result.exit_code == 2 and "export needs a run" in result.output
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(app, ["export", "--run-dir", str(tiny_run), "--out", str(foreign)])
    assert result.exit_code == 2 and "not an fmnist bundle" in result.output
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_export_uses_the_runs_data_folder_links_out_to_a_version_and_names_degenerate_models(
    tiny_run, tmp_path, no_default_data, monkeypatch
):
    from fmnist.training import evaluate

    def at_chance(model, split):
        return {"accuracy": 0.1}

    monkeypatch.setattr(evaluate, "classifier_metrics", at_chance)  # as after a run far too short
    out = tmp_path / "artifacts"
    (tmp_path / ".artifacts.tmp-999999999-x").mkdir()  # what a killed export left
    args = ["export", "--run-dir", tiny_run, "--out", out, "--kde-points", "400", "--no-download"]  # no --data-dir
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    notices = [line for line in result.stdout.splitlines() if line.startswith("notice: ")]
    assert notices == [
        "notice: the classifier is near chance: test accuracy 0.100, chance 0.1; "
        "train longer (more --epochs, all the data: see the README's quick recipe)"
    ]
    folder = sorted(p.name for p in tmp_path.iterdir())
    assert out.is_symlink() and folder == sorted([".artifacts.lock", "artifacts", os.readlink(out)])
    manifest = artifacts.load_manifest(out)
    assert manifest["provenance"]["data_dir"] == json.loads((tiny_run / "run.json").read_text())["data_dir"]


def test_each_class_kde_holds_latents_of_its_class(tiny_bundle, tiny_run, data_dir):
    from fmnist import runs
    from fmnist.export.refit import split_settings
    from fmnist.training.data import load_splits

    manifest = artifacts.load_manifest(tiny_bundle)
    arrays = np.load(tiny_bundle / artifacts.SAMPLERS_NPZ, allow_pickle=False)
    points = arrays["kde_class_points"]
    assert manifest["format_version"] == 2 and points.shape[0] == 10 and 5 <= points.shape[1] <= 400
    assert manifest["samplers"]["kde_class_points"] == points.shape[1]
    assert manifest["samplers"]["kde_class_bandwidth"] == arrays["kde_class_bandwidth"].tolist()
    val_fraction, seed, limit = split_settings(manifest)
    splits = load_splits(data_dir, val_fraction=val_fraction, seed=seed, limit=limit, download=False)
    ae = load_module("ae", str(tiny_run / "ae" / "best.ckpt")).model.eval()
    latents, labels = runs.encode(ae.encoder, splits.train.images), splits.train.labels.numpy()
    for k in range(10):
        rows = {tuple(z) for z in latents[labels == k]}
        assert all(tuple(p) in rows for p in points[k])


def test_refit_adds_class_kdes_to_a_format_1_bundle_leaving_the_graphs_byte_identical(bundle_copy, capsys):
    from fmnist.export.refit import main
    from fmnist.runtime.bundle import Bundle

    with np.load(bundle_copy / artifacts.SAMPLERS_NPZ) as f:
        old = {k: f[k] for k in f.files if not k.startswith("kde_class")}
    np.savez(bundle_copy / artifacts.SAMPLERS_NPZ, **old)
    manifest = json.loads((bundle_copy / artifacts.MANIFEST).read_text())
    artifacts.write_manifest(bundle_copy, manifest, format_version=1)  # as bundles before the per-class KDEs
    graphs = {f: (bundle_copy / f).read_bytes() for f in artifacts.GRAPHS.values()}
    assert Bundle(bundle_copy, "cpu").format_version == 1

    assert main([str(bundle_copy)]) == 0
    assert "added a KDE per class" in capsys.readouterr().out
    model = Bundle(bundle_copy, "cpu", lazy=False)
    assert model.format_version == 2 and model.generate(3, label=7).shape == (3, 28, 28)
    assert {f: (bundle_copy / f).read_bytes() for f in artifacts.GRAPHS.values()} == graphs
    new = model.sampler_arrays()
    assert all(np.array_equal(new[k], v) for k, v in old.items())
    assert sorted(p.name for p in bundle_copy.parent.iterdir()) == ["bundle"]  # no staging folder left

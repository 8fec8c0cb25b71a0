"""The inference commands on the tiny exported bundle."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fmnist.cli import app
from fmnist.serve.evaluation import load_test_set
from fmnist.serve.inference import Model


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


def test_generate_formats_and_seed(tiny_bundle, tmp_path):
    b = ["--artifacts", tiny_bundle]
    assert run_cli("generate", "--n", "16", "--out", tmp_path / "s.png", *b).exit_code == 0
    assert Image.open(tmp_path / "s.png").size == (4 * 30 + 2, 4 * 30 + 2)
    for sampler in ("kde", "kde-pca", "vae"):
        result = run_cli("generate", "--n", "5", "--sampler", sampler, "--out", tmp_path / f"{sampler}.npy", *b)
        assert result.exit_code == 0 and str(tmp_path / f"{sampler}.npy") in result.output
        x = np.load(tmp_path / f"{sampler}.npy")
        assert x.shape == (5, 28, 28) and x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
    run_cli("generate", "--n", "5", "--seed", "3", "--out", tmp_path / "again.npy", *b)
    run_cli("generate", "--n", "5", "--seed", "3", "--out", tmp_path / "again2.npy", *b)
    assert np.array_equal(np.load(tmp_path / "again.npy"), np.load(tmp_path / "again2.npy"))
    assert not np.array_equal(np.load(tmp_path / "again.npy"), np.load(tmp_path / "kde.npy"))
    assert run_cli("generate", "--n", "3", "--out", tmp_path / "dir", *b).exit_code == 0
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == [f"sample-0000{i}.png" for i in range(3)]


def test_pickle_free_samplers_match_the_joblib_objects(tiny_bundle):
    import joblib

    model = Model(tiny_bundle)
    kde, kde_pca, pca = (joblib.load(tiny_bundle / f"{n}.joblib") for n in ("kde_latent", "kde_pca", "pca"))
    assert np.array_equal(model.sample_latents(20, "kde", 5), kde.sample(20, random_state=5))
    assert np.allclose(
        model.sample_latents(20, "kde-pca", 5), pca.inverse_transform(kde_pca.sample(20, random_state=5))
    )


def test_classify_json_and_text(tiny_bundle, test_pngs):
    folder, labels = test_pngs
    result = run_cli("classify", folder, "--json", "--artifacts", tiny_bundle)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [set(r) for r in rows] == [{"path", "label", "class", "probability"}] * 5
    model = Model(tiny_bundle)
    images = np.stack([np.asarray(Image.open(folder / f"t{i}.png"), np.float32) / 255 for i in range(5)])
    probabilities = model.classify(images)
    assert [r["label"] for r in rows] == probabilities.argmax(1).tolist()
    assert [r["probability"] for r in rows] == pytest.approx(probabilities.max(1).tolist())
    assert rows[0]["class"] == model.class_names[rows[0]["label"]]
    text = run_cli("classify", folder / "t0.png", "--top-k", "3", "--artifacts", tiny_bundle).output
    assert text.startswith(f"{folder / 't0.png'}: ") and text.count(",") == 2


def test_reconstruct_and_encode(tiny_bundle, test_pngs, tmp_path):
    folder, _ = test_pngs
    result = run_cli(
        "reconstruct", folder / "t0.png", folder / "t1.png", "--out", tmp_path / "r.png", "--artifacts", tiny_bundle
    )
    assert result.exit_code == 0 and result.output.count("mse ") == 2
    assert Image.open(tmp_path / "r.png").size == (2 * 30 + 2, 2 * 30 + 2)
    result = run_cli("encode", folder, "--json", "--artifacts", tiny_bundle)
    latents = [r["latent"] for r in json.loads(result.output)]
    assert len(latents) == 5 and len(latents[0]) == 8
    assert run_cli("encode", folder, "--out", tmp_path / "z.npy", "--artifacts", tiny_bundle).exit_code == 0
    assert np.allclose(np.load(tmp_path / "z.npy"), latents, atol=1e-6)


def test_evaluate_reproduces_the_manifest(tiny_bundle, data_dir):
    result = run_cli("evaluate", "--data-dir", data_dir, "--json", "--artifacts", tiny_bundle)
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    metrics = json.loads((tiny_bundle / "manifest.json").read_text())["metrics"]
    assert got["reconstruction_mse"] == pytest.approx(metrics["reconstruction_mse"], rel=1e-4)
    assert got["classifier_accuracy"] == pytest.approx(metrics["classifier_accuracy"], abs=2e-4)
    assert got["vae_elbo"] == pytest.approx(metrics["vae_elbo"], abs=1.0)  # one noise draw each
    assert set(got["samplers"]) == {"kde", "kde-pca", "vae"}
    for s in got["samplers"].values():
        assert s["frechet_distance"] >= 0 and 0.1 <= s["mean_top_probability"] <= 1
        assert sum(s["class_spread"].values()) == pytest.approx(1.0)


def test_bad_input_errors(tiny_bundle, test_pngs, tmp_path):
    folder, _ = test_pngs
    (tmp_path / "notes.txt").write_text("not an image")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes((folder / "t0.png").read_bytes()[:100])
    (tmp_path / "empty").mkdir()
    b = ["--artifacts", tiny_bundle]
    cases = [
        ("classify", tmp_path / "missing.png", *b),
        ("classify", tmp_path / "empty", *b),
        ("classify", tmp_path / "notes.txt", *b),
        ("classify", truncated, *b),
        ("generate", "--n", "0", "--out", tmp_path / "x.png", *b),
        ("generate", "--n", "-3", "--out", tmp_path / "x.png", *b),
        ("generate", "--n", "10001", "--out", tmp_path / "x.png", *b),
        ("generate", "--sampler", "gan", "--out", tmp_path / "x.png", *b),
        ("generate", "--out", tmp_path / "x.png", "--artifacts", tmp_path / "nowhere"),
    ]
    for args in cases:
        result = subprocess.run([sys.executable, "-m", "fmnist.cli", *map(str, args)], capture_output=True, text=True)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("fmnist: error: ") and result.stderr.count("\n") == 1, result.stderr
        assert not (tmp_path / "x.png").exists()


def test_one_bad_image_among_several_exits_1(tiny_bundle, test_pngs, tmp_path):
    folder, _ = test_pngs
    result = run_cli(
        "classify", folder / "t0.png", tmp_path / "missing.png", folder / "t1.png", "--json", "--artifacts", tiny_bundle
    )
    assert result.exit_code == 1
    assert [r["path"] for r in json.loads(result.stdout)] == [str(folder / "t0.png"), str(folder / "t1.png")]


def test_altered_bundle_is_refused(tiny_bundle, tmp_path):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    with open(copy / "classifier.onnx", "r+b") as f:
        f.seek(500)
        f.write(b"\x00\x01\x02")
    result = run_cli("generate", "--out", tmp_path / "x.png", "--artifacts", copy)
    assert result.exit_code == 2 and "classifier.onnx fails its sha256" in result.output
    assert not (tmp_path / "x.png").exists()


def test_inference_commands_never_import_torch_or_sklearn(tiny_bundle, test_pngs, tmp_path):
    folder, _ = test_pngs
    probe = (
        "import sys\nfrom fmnist.cli import app\n"
        "for args in ({}):\n"
        "    try: app(args)\n"
        "    except SystemExit as e: assert e.code == 0, (args, e.code)\n"
        "heavy = {{'torch', 'sklearn', 'lightning', 'scipy', 'optuna'}}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "print(bad)\n"
    )
    b = ["--artifacts", str(tiny_bundle)]
    commands = [
        ["generate", "--n", "4", "--out", str(tmp_path / "g.png"), *b],
        ["classify", str(folder), *b],
        ["reconstruct", str(folder / "t0.png"), "--out", str(tmp_path / "r.png"), *b],
        ["encode", str(folder), *b],
    ]
    result = subprocess.run(
        [sys.executable, "-c", probe.format(repr(commands)[1:-1] + ",")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"

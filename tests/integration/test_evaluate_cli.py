"""``fmnist evaluate`` on the toy bundle: bits per dimension, its data folder fallback, progress bars."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fmnist import artifacts
from fmnist.cli.app import app
from tests.integration.test_inference_cli import data_dir  # noqa: F401 (the 40-image data folder fixture)

BITS_KEYS = ("vae_bits_per_dim", "gaussian_bits_per_dim", "ppca_bits_per_dim")


def evaluate_json(*args) -> dict:
    result = CliRunner().invoke(app, ["evaluate", "--json", *map(str, args)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_evaluate_reports_bits_per_dim_of_the_vae_and_both_baselines(toy_bundle, data_dir):  # noqa: F811
    from fmnist.runtime.bundle import Bundle
    from fmnist.runtime.evaluation import bits_per_dim, load_split
    from fmnist.runtime.progress import SILENT

    got = evaluate_json("--data-dir", data_dir, "--artifacts", toy_bundle)
    assert all(np.isfinite(got[k]) for k in BITS_KEYS) and got["vae_likelihood"] == "gaussian"
    test, train = (load_split(data_dir, p)[0] for p in ("t10k", "train"))
    direct = bits_per_dim(Bundle(toy_bundle, "cpu"), test, train, 0, SILENT)
    assert [got[k] for k in BITS_KEYS] == pytest.approx([direct[k] for k in BITS_KEYS])
    # the fixture's training images are its test images: the full Gaussian, floored at the noise
    # level, pins them down; PPCA with 2 components spreads the rest of the uniform noise over every
    # pixel, and a Gaussian on uniform pixels is worse than the uniform density's 8 bits
    assert got["gaussian_bits_per_dim"] < 8 < got["ppca_bits_per_dim"]
    text = CliRunner().invoke(app, ["evaluate", "--data-dir", str(data_dir), "--artifacts", str(toy_bundle)]).stdout
    assert f"VAE {got['vae_bits_per_dim']:.3f} (gaussian likelihood)" in text


@pytest.fixture
def bundle_from_elsewhere(toy_bundle, tmp_path) -> Path:
    """The toy bundle with a recorded data folder that does not exist on this machine."""
    folder = tmp_path / "bundle"
    shutil.copytree(toy_bundle, folder)
    manifest = json.loads((folder / artifacts.MANIFEST).read_text())
    manifest["provenance"]["data_dir"] = "/nonexistent/build-machine/data"
    (folder / artifacts.MANIFEST).write_text(json.dumps(manifest))
    return folder


def test_evaluate_falls_back_to_fmnist_data_then_the_cache(
    bundle_from_elsewhere,
    data_dir,  # noqa: F811
    monkeypatch,
    tmp_path,
):
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("FMNIST_DATA", str(data_dir))
    assert evaluate_json("--artifacts", bundle_from_elsewhere)["test_images"] == 40
    monkeypatch.delenv("FMNIST_DATA")
    result = CliRunner().invoke(app, ["evaluate", "--json", "--artifacts", str(bundle_from_elsewhere)])
    assert result.exit_code == 2 and str(cache / "fmnist") in result.stderr, result.output
    shutil.copytree(data_dir, cache / "fmnist")
    assert evaluate_json("--artifacts", bundle_from_elsewhere)["test_images"] == 40


def test_evaluate_uses_the_recorded_folder_when_it_exists(toy_bundle, data_dir, monkeypatch, tmp_path):  # noqa: F811
    folder = tmp_path / "bundle"
    shutil.copytree(toy_bundle, folder)
    manifest = json.loads((folder / artifacts.MANIFEST).read_text())
    manifest["provenance"]["data_dir"] = str(data_dir)
    (folder / artifacts.MANIFEST).write_text(json.dumps(manifest))
    monkeypatch.delenv("FMNIST_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty"))
    assert evaluate_json("--artifacts", folder)["test_images"] == 40


def run_with_stderr_on_a_terminal(args: list[str], timeout: float = 300) -> tuple[str, str]:
    """(stdout, what the terminal on stderr showed) of ``python -m fmnist *args``."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "fmnist", *args],
        stdout=subprocess.PIPE,
        stderr=terminal,
        start_new_session=True,
    )
    os.close(terminal)
    shown = b""
    try:
        while True:
            ready, _, _ = select.select([controller], [], [], timeout)
            if not ready:
                raise AssertionError(f"no output for {timeout} s")
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed: the command ended
                break
            if not chunk:
                break
            shown += chunk
        stdout = process.stdout.read().decode()
        assert process.wait(timeout) == 0, shown
    finally:
        os.close(controller)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        process.stdout.close()
    return stdout, shown.decode(errors="replace")


def test_evaluate_shows_a_bar_per_measurement_on_a_terminal_only(toy_bundle, data_dir):  # noqa: F811
    args = ["evaluate", "--data-dir", str(data_dir), "--artifacts", str(toy_bundle)]
    stdout, shown = run_with_stderr_on_a_terminal(args)
    assert "classifier accuracy" in stdout and "[####" not in stdout
    for label in ("reconstructions", "photo accuracy", "bits/dim: VAE, k=", "bits/dim: PPCA", "Frechet: vae samples"):
        assert f"\r{label}" in shown, shown
    assert "/1 " in shown and "[" + "#" * 24 + "]" in shown
    stdout, shown = run_with_stderr_on_a_terminal([*args, "--json"])
    assert "[" not in shown and json.loads(stdout)["test_images"] == 40
    piped = subprocess.run([sys.executable, "-m", "fmnist", *args], capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0 and "[" not in piped.stderr and "\r" not in piped.stderr


def test_the_headline_export_prints_holds_evaluates_figures(toy_bundle, data_dir):  # noqa: F811
    from fmnist.runtime.evaluation import headline

    got = evaluate_json("--data-dir", data_dir, "--artifacts", toy_bundle)
    lines = headline(got)
    assert len(lines) == 5 and all("\n" not in line for line in lines)
    assert lines[0] == f"reconstruction MSE {got['reconstruction_mse']:.5f}"
    assert f"PPCA {got['ppca_bits_per_dim']:.3f}" in lines[3]
    assert f"kde-pca {got['samplers']['kde-pca']['frechet_distance']:.1f}" in lines[4]


@pytest.mark.parametrize("kind", ["gaussian-pixel", "logistic"])
def test_a_bundle_with_per_pixel_scales_is_evaluated_with_its_likelihood(kind, toy_bundle, data_dir, tmp_path):  # noqa: F811
    import torch

    from fmnist.config import Config
    from fmnist.export.bundle import vae_likelihood
    from fmnist.runtime.bundle import Bundle
    from fmnist.training.models import VAE

    vae = VAE(Config(arch="seed", vae_likelihood=kind))
    with torch.no_grad():
        vae.log_scale.fill_(-3.0)
    entry = vae_likelihood(vae)
    assert entry["likelihood"] == kind and len(entry["log_scales"]) == 784 and entry["log_scale"] == pytest.approx(-3)
    folder = tmp_path / "bundle"
    shutil.copytree(toy_bundle, folder)
    manifest = json.loads((folder / artifacts.MANIFEST).read_text())
    manifest["vae"] = entry
    (folder / artifacts.MANIFEST).write_text(json.dumps(manifest))
    got = evaluate_json("--data-dir", data_dir, "--artifacts", folder)
    assert got["vae_likelihood"] == kind and np.isfinite(got["vae_bits_per_dim"])
    assert got["vae_elbo"] == pytest.approx(float(Bundle(folder, "cpu").vae_elbo(load_images(data_dir)).mean()))


def load_images(folder: Path) -> np.ndarray:
    from fmnist.runtime.evaluation import load_test_set

    return load_test_set(folder)[0]

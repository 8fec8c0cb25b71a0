"""scripts/vae_compare.py: issue 23's rule for replacing a bundle's VAE, on evaluate's JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "vae_compare.py"


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("vae_compare", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def result(bits: float, frechet: float, likelihood: str = "gaussian") -> dict:
    samplers = {name: {"frechet_distance": 1.0} for name in ("kde", "kde-pca")}
    return {
        "vae_likelihood": likelihood,
        "vae_bits_per_dim": bits,
        "vae_elbo": 500.0,
        "gaussian_bits_per_dim": 6.5,
        "ppca_bits_per_dim": 7.5,
        "samplers": {**samplers, "vae": {"frechet_distance": frechet}},
        "reconstruction_mse": 0.01,
        "classifier_accuracy": 0.9,
    }


@pytest.mark.parametrize(
    ("bits", "frechet", "ships"),
    [(4.0, 100.0, True), (4.0, 140.0, True), (4.0, 140.1, False), (6.9, 100.0, False), (7.0, 100.0, False)],
)
def test_a_new_vae_ships_only_with_fewer_bits_and_samples_no_worse(compare, bits, frechet, ships):
    assert compare.ships(result(6.9, 140.0), result(bits, frechet)) is ships


def test_the_exit_status_and_table_say_the_verdict(compare, tmp_path, capsys):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(result(6.8766, 139.96)))
    new.write_text(json.dumps(result(4.1793, 113.64, "logistic")))
    assert compare.main([str(old), str(new)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["VAE", "likelihood", "gaussian", "logistic"]
    assert out[2].split() == ["VAE", "bits/dim", "6.8766", "4.1793"]
    assert out[-1] == "ships: fewer bits/dim, VAE samples no worse"
    assert compare.main([str(new), str(old)]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "does not ship: the old VAE stays"

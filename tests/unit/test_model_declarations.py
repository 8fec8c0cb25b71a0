"""Every model is declared once (fmnist.contract.models) and every stage knows each one."""

from __future__ import annotations

import subprocess
import sys

from fmnist import artifacts, runs
from fmnist.config import DEFAULT_EPOCHS, DEFAULTS, HEAD_SHAPES, MODELS
from fmnist.contract.models import BY_NAME, EXPORTED, MODEL_SPECS
from fmnist.training.modules import MODULES


def test_every_declared_model_has_its_training_module_and_defaults():
    assert tuple(s.name for s in MODEL_SPECS) == MODELS
    assert set(MODULES) == set(BY_NAME)
    for spec in MODEL_SPECS:
        assert MODULES[spec.name].model_name == spec.name
        assert DEFAULT_EPOCHS[spec.name] == spec.default_epochs == DEFAULTS.for_model(spec.name).epochs
        if spec.head_shape is not None:
            assert HEAD_SHAPES[spec.name] == spec.head_shape
            config = DEFAULTS.for_model(spec.name)
            assert (config.head_width, config.head_depth) == spec.head_shape


def test_a_model_trains_from_one_declared_before_it():
    for i, spec in enumerate(MODEL_SPECS):
        if spec.trains_from is not None:
            assert spec.trains_from in MODELS[:i], spec.name
        assert not spec.needs_start or spec.trains_from is not None


def test_the_exported_models_yield_the_bundle_graphs():
    assert runs.BUNDLED_MODELS == EXPORTED
    graphs = [g for name in EXPORTED for g in BY_NAME[name].graphs]
    assert sorted(graphs) == sorted(artifacts.GRAPHS)


def test_the_cli_offers_every_declared_model():
    from typer.testing import CliRunner

    from fmnist.cli.app import app

    help_text = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    for name in MODELS:
        assert name in help_text


def test_the_declaration_is_standard_library_only():
    probe = "import sys, fmnist.contract.models; print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"

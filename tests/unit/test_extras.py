"""The training extra: its list of libraries matches pyproject.toml, and the commands that need it
say how to install it, in one line, when torch is missing (simulated here by blocking the import;
tests/integration/test_base_install.py does it for real, in a venv without it)."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from fmnist.cli.extras import INSTALL_TRAIN, TRAINING_MODULES

ROOT = Path(__file__).resolve().parents[2]
# Distribution names whose import name differs.
IMPORT_NAMES = {"scikit-learn": "sklearn", "optuna-integration": "optuna_integration"}
BASE_NEEDS = {"numpy", "onnxruntime", "pillow", "fastapi", "uvicorn", "prometheus-client"}


def requirement_names(requirements: list[str]) -> list[str]:
    return [re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in requirements]


def test_the_training_modules_are_the_train_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    train = requirement_names(project["optional-dependencies"]["train"])
    assert tuple(IMPORT_NAMES.get(name, name) for name in train) == TRAINING_MODULES
    base = requirement_names(project["dependencies"])
    assert not set(base) & set(train), "a training library in the base install"
    assert set(base) >= BASE_NEEDS


BLOCKED = "import sys; sys.modules['torch'] = None; from fmnist.__main__ import main; main(sys.argv[1:])"


@pytest.mark.parametrize("args", [["train"], ["tune", "ae"], ["export"], ["report"]], ids=lambda a: a[0])
def test_training_commands_without_torch_print_one_line_and_exit_2(args):
    r = subprocess.run([sys.executable, "-c", BLOCKED, *args], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr == (
        f"fmnist: error: fmnist {args[0]} needs the training libraries (torch not installed): {INSTALL_TRAIN}\n"
    )


def test_help_and_serve_help_need_no_torch():
    for args in (["--help"], ["serve", "--help"]):
        r = subprocess.run([sys.executable, "-c", BLOCKED, *args], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr

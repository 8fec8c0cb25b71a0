"""The training extra. ``pip install fmnist`` runs bundles (the inference commands and ``fmnist serve``);
``train``, ``tune``, ``export`` and ``report`` also need ``pip install "fmnist[train]"``, and without it
say so in one line instead of a traceback from deep inside an import."""

from __future__ import annotations

import importlib.util
import sys

from fmnist.errors import MissingExtraError

INSTALL_TRAIN = 'pip install "fmnist[train]"'
# The import names of the `train` extra in pyproject.toml (a test keeps the two lists equal).
TRAINING_MODULES = (
    "torch",
    "torchvision",
    "lightning",
    "onnx",
    "onnxscript",
    "sklearn",
    "joblib",
    "optuna",
    "optuna_integration",
    "matplotlib",
    "tqdm",
)


def _installed(module: str) -> bool:
    if sys.modules.get(module) is not None:  # imported already: optuna_integration's lazy module has no __spec__
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or a module blocked with sys.modules[name] = None
        return False


def require_training_extra(command: str) -> None:
    """Raise MissingExtraError, naming the install command, unless every training library is installed.

    Looked up without importing them (``find_spec``), so the check costs milliseconds.
    """
    missing = [m for m in TRAINING_MODULES if not _installed(m)]
    if missing:
        raise MissingExtraError(
            f"fmnist {command} needs the training libraries ({', '.join(missing)} not installed): {INSTALL_TRAIN}"
        )

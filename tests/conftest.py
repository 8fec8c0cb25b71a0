"""Shared fixtures. Nothing here downloads: the data comes from $FMNIST_DATA or ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("FMNIST_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    raw = DATA_DIR / "FashionMNIST" / "raw"
    if not (raw / "t10k-images-idx3-ubyte").exists():
        pytest.fail(f"Fashion-MNIST not found under {raw}: set FMNIST_DATA to the folder holding FashionMNIST/raw")
    return DATA_DIR

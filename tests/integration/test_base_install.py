"""``pip install fmnist`` without extras, into a fresh virtual environment: none of the training stack
is there, and the inference commands and the server run from it.

The venv is built from a wheelhouse (``benchmarks/base_install.py``: filled once by ``pip download``,
offline after that; ``$FMNIST_WHEELHOUSE`` overrides where it lives), then every command runs with
the venv's own ``fmnist``, outside this checkout (no PYTHONPATH, another working folder).
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from benchmarks.base_install import DEFAULT_WHEELHOUSE, fill_wheelhouse, importable, make_base_venv
from fmnist import CLASS_NAMES
from fmnist.cli.extras import INSTALL_TRAIN, TRAINING_MODULES
from tests import servers

pytestmark = pytest.mark.slow

WHEELHOUSE = Path(os.environ.get("FMNIST_WHEELHOUSE", DEFAULT_WHEELHOUSE))


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    fill_wheelhouse(WHEELHOUSE)
    venv = tmp_path_factory.mktemp("base") / "venv"
    make_base_venv(venv, WHEELHOUSE)
    return venv


@pytest.fixture
def run(venv, tmp_path):
    """Run ``fmnist ARGS`` of the base venv in an empty folder, with none of this checkout's paths."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "FMNIST_", "PROMETHEUS_"))}

    def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(venv / "bin" / "fmnist"), *args], cwd=tmp_path, env=env, capture_output=True, text=True, **kwargs
        )

    run.env = env
    return run


def garment_png() -> bytes:
    yy, xx = np.mgrid[:28, :28]
    blob = np.exp(-(((yy - 14) / 9) ** 2 + ((xx - 14) / 6) ** 2)) * 220
    buf = io.BytesIO()
    Image.fromarray(blob.astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file of unsigned bytes: 0, 0, 0x08, ndim, big-endian sizes, data."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_the_training_stack_is_not_installed(venv):
    assert importable(venv, TRAINING_MODULES) == []
    assert importable(venv, ("fmnist", "onnxruntime", "fastapi", "prometheus_client")) == [
        "fmnist",
        "onnxruntime",
        "fastapi",
        "prometheus_client",
    ]


def test_classify_generate_and_evaluate(run, tmp_path):
    (tmp_path / "one.png").write_bytes(garment_png())
    r = run("classify", "one.png")
    assert r.returncode == 0, r.stderr
    assert any(name in r.stdout for name in CLASS_NAMES), r.stdout

    r = run("generate", "--n", "16")
    assert r.returncode == 0, r.stderr
    with Image.open(tmp_path / "samples.png") as grid:
        assert grid.size[0] > 4 * 28

    # evaluate reads the official files with numpy alone: a made-up 40-image test set in their layout
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix in ("t10k", "train"):  # training images: the Frechet floor
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (40, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(40) % 10)
    r = run("evaluate", "--data-dir", "data", "--json")
    assert r.returncode == 0, r.stderr
    assert '"test_images": 40' in r.stdout


@pytest.mark.parametrize("args", [["train"], ["tune", "ae"], ["export"], ["report"]], ids=lambda a: a[0])
def test_training_commands_name_the_extra(run, args):
    r = run(*args)
    assert r.returncode == 2
    assert r.stdout == "" and len(r.stderr.splitlines()) == 1 and INSTALL_TRAIN in r.stderr, r.stderr


def test_serve_answers_classify_and_its_docs_stay_on_the_server(venv, run, tmp_path):
    port = servers.free_port()
    cmd = [venv / "bin" / "fmnist", "serve", "--port", str(port), "--log-level", "warning"]
    url = f"http://127.0.0.1:{port}"
    with servers.running(cmd, cwd=tmp_path, env=run.env) as proc:
        servers.wait_ready(proc, url)
        r = httpx.post(f"{url}/v1/classify", files=[("file", ("one.png", garment_png(), "image/png"))])
        assert r.status_code == 200, r.text
        (result,) = r.json()["results"]
        assert result["filename"] == "one.png" and result["class"] in CLASS_NAMES
        docs = httpx.get(f"{url}/docs").text
        assert not re.search(r"https?://", docs), "the docs page names another host"
        log = servers.stop(proc)
        assert proc.returncode != -signal.SIGKILL, f"SIGTERM did not stop the server:\n{log}"
        assert "Traceback" not in log, log

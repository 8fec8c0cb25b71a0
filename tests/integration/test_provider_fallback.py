"""A real onnxruntime-gpu whose CUDA provider cannot start (no CUDA/cuDNN of the versions it was
built for, or no visible GPU): the command falls back to the CPU with one `fmnist: notice:` line and
nothing else on stderr; onnxruntime's own coloured error and warning banners stay silent.

Runs where onnxruntime-gpu is importable: in this interpreter, or in the one $FMNIST_ORT_GPU_PYTHON
names (a virtual environment with onnxruntime-gpu, numpy and Pillow; the CPU build and the GPU
build cannot share one environment).
"""

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import fmnist

SRC = Path(fmnist.__file__).resolve().parents[1]  # what the other interpreter imports fmnist from


def gpu_python() -> str | None:
    try:
        importlib.metadata.distribution("onnxruntime-gpu")
        return sys.executable
    except importlib.metadata.PackageNotFoundError:
        return os.environ.get("FMNIST_ORT_GPU_PYTHON")


@pytest.fixture(scope="module")
def python() -> str:
    found = gpu_python()
    if found is None:
        pytest.skip(
            "onnxruntime-gpu is not installed here; set $FMNIST_ORT_GPU_PYTHON to a Python that has it "
            "(with numpy and Pillow) to run this test"
        )
    return found


@pytest.mark.parametrize(
    "args",
    [["classify", "{image}"], ["classify", "{image}", "--json"], ["generate", "--out", "{tmp}/s.png"]],
    ids=["classify", "classify-json", "generate"],
)
def test_a_cuda_provider_that_fails_to_start_is_one_notice_line(python, toy_bundle, tmp_path, args):
    image = tmp_path / "shirt.png"
    shirt = Image.new("L", (28, 28))
    shirt.paste(200, (8, 4, 20, 24))  # a garment, so classify adds no blank-image notice
    shirt.save(image)
    args = [a.format(image=image, tmp=tmp_path) for a in args]
    # No visible GPU: where CUDA and cuDNN are installed, the provider fails to start all the same.
    env = {**os.environ, "PYTHONPATH": str(SRC), "CUDA_VISIBLE_DEVICES": "-1"}
    r = subprocess.run(
        [python, "-m", "fmnist", *args, "--artifacts", str(toy_bundle)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("fmnist: notice: the CUDA provider failed to start (")
    assert r.stderr.endswith("; using the CPU\n") and r.stderr.count("\n") == 1, r.stderr
    if "--json" in args:
        assert json.loads(r.stdout)[0]["path"] == str(image)
    elif args[0] == "classify":
        assert r.stdout.startswith(f"{image}: ")
    else:
        assert (tmp_path / "s.png").is_file()

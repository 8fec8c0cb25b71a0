"""Every file the loader opens must be a regular file inside the bundle, under a size cap, read
without hanging: a manifest or graph that is a named pipe, a link to /dev/zero, a folder, or
JSON nested beyond the parser's depth is refused in one line (exit code 2), by ``Bundle``, by
``fmnist generate`` and by ``fmnist serve`` at start-up."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fmnist import artifacts
from fmnist.errors import BundleError
from fmnist.runtime.bundle import Bundle


def _replace(name: str, make):
    def change(folder: Path) -> None:
        (folder / name).unlink()
        make(folder / name)

    return change


def _pipe_link(path: Path) -> None:
    os.mkfifo(path.with_name("pipe"))
    path.symlink_to("pipe")


MANIFEST = "manifest.json"
# (id, change, file, words in the one-line error)
CASES = [
    ("manifest a named pipe", _replace(MANIFEST, os.mkfifo), MANIFEST, "is not a regular file"),
    ("manifest a link to /dev/zero", _replace(MANIFEST, lambda p: p.symlink_to("/dev/zero")), MANIFEST, "link out"),
    ("manifest a link to a pipe in the folder", _replace(MANIFEST, _pipe_link), MANIFEST, "is not a regular file"),
    ("manifest a folder", _replace(MANIFEST, os.mkdir), MANIFEST, "is not a regular file"),
    (
        "manifest of 200,000 nested brackets",
        _replace(MANIFEST, lambda p: p.write_text("[" * 200_000 + "]" * 200_000)),
        MANIFEST,
        "is nested too deeply to be a manifest",
    ),
    (
        "manifest over 1 MiB",
        _replace(MANIFEST, lambda p: p.write_text(" " * (2 << 20) + "{}")),
        MANIFEST,
        "is 2,097,154 bytes, over its 1,048,576",
    ),
    ("sampler arrays a named pipe", _replace(artifacts.SAMPLERS_NPZ, os.mkfifo), "samplers.npz", "not a regular file"),
    (
        "decoder a link to /dev/zero",
        _replace("decoder.onnx", lambda p: p.symlink_to("/dev/zero")),
        "decoder.onnx",
        "link out",
    ),
]


@pytest.fixture
def damaged(toy_bundle, tmp_path):
    def make(change) -> Path:
        folder = tmp_path / "bundle"
        shutil.copytree(toy_bundle, folder)
        change(folder)
        return folder

    return make


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m fmnist ARGS`` in its own session, its whole process group killed whatever happens."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.Popen(
        [sys.executable, "-m", "fmnist", *args],
        env=env,
        text=True,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = p.communicate(timeout=timeout)
        return subprocess.CompletedProcess(p.args, p.returncode, out, err)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()


@pytest.mark.parametrize("change,file,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_generate_refuses_a_special_or_oversized_file_in_one_line_without_hanging(
    damaged, tmp_path, change, file, words
):
    folder = damaged(change)
    out = tmp_path / "s.png"
    r = _run(["generate", "--n", "2", "--out", str(out), "--artifacts", str(folder), "--provider", "cpu"])
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("fmnist: error: ") and f"{folder / file} " in r.stderr and words in r.stderr
    assert len(r.stderr.splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("change,file,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bundle_refuses_it_at_load_with_lazy_false(damaged, change, file, words):
    with pytest.raises(BundleError) as caught:
        Bundle(damaged(change), "cpu", lazy=False)
    assert words in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("case", [CASES[0], CASES[4]], ids=[CASES[0][0], CASES[4][0]])
def test_serve_refuses_it_at_start_in_one_line(damaged, case):
    folder = damaged(case[1])
    r = _run(["serve", "--artifacts", str(folder), "--port", "0"])
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("fmnist: error: ") and case[3] in r.stderr
    assert len(r.stderr.splitlines()) == 1

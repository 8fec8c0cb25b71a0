"""Every command that writes checks its output path before any work: a path that cannot be written
is one line on stderr and exit code 2, and no model is loaded. The image commands refuse images
over --max-pixels from their header, as the server does."""

import io
import os
import time
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from fmnist.cli import inference
from fmnist.cli.app import app
from tests import servers

UNWRITABLE = Path("/proc")  # no file can be created there, not even by root


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a command gets as far as loading the bundle."""

    def refuse(*args, **kwargs):
        raise AssertionError("the bundle was loaded before the output path was checked")

    monkeypatch.setattr(inference, "_bundle", refuse)


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "shirt.png"
    Image.new("L", (28, 28), 200).save(path)
    return path


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = inference.run(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error(err: str, *words: str) -> None:
    assert err.startswith("fmnist: error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, err


@pytest.mark.parametrize(
    "args,out",
    [
        (["generate"], UNWRITABLE / "s.png"),
        (["generate"], UNWRITABLE / "s.npy"),
        (["generate"], UNWRITABLE / "samples"),  # a folder of PNGs
        (["reconstruct", "{image}"], UNWRITABLE / "r.png"),
        (["encode", "{image}"], UNWRITABLE / "z.npy"),
    ],
    ids=["generate-png", "generate-npy", "generate-folder", "reconstruct", "encode"],
)
def test_an_unwritable_out_is_one_line_before_any_work(capsys, no_model, image, args, out):
    args = [a.format(image=image) for a in args]
    code, stdout, err = run(capsys, *args, "--out", str(out))
    assert (code, stdout) == (2, "")
    one_error(err, f"--out {out}", "cannot write")


@pytest.mark.parametrize("command", ["generate", "reconstruct", "encode"])
def test_an_impossible_out_is_one_line_before_any_work(capsys, no_model, image, tmp_path, command):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    suffix = ".npy" if command == "encode" else ".png"
    args = [command] if command == "generate" else [command, str(image)]
    code, _, err = run(capsys, *args, "--out", str(a_file / f"out{suffix}"))
    assert code == 2
    one_error(err, f"{a_file} is not a folder")
    code, _, err = run(capsys, *args, "--out", str(tmp_path / ("x" * 300 + suffix)))
    assert code == 2
    one_error(err, "cannot write there (file name too long)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits (the /proc cases cover it)")
def test_a_read_only_folder_is_one_line_before_any_work(capsys, no_model, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, _, err = run(capsys, "generate", "--out", str(folder / "s.png"))
        assert code == 2
        one_error(err, "cannot write there (permission denied)")
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize(
    "args,flag",
    [
        (["export", "--run-dir", "{tmp}", "--out", str(UNWRITABLE / "bundle")], "--out"),
        (["report", "--run-dir", "{tmp}", "--out", str(UNWRITABLE / "report")], "--out"),
        (["train", "--run-dir", str(UNWRITABLE / "run")], "--run-dir"),
        (["tune", "ae", "--run-dir", str(UNWRITABLE / "run")], "--run-dir"),
    ],
    ids=["export", "report", "train", "tune"],
)
def test_training_side_commands_check_where_they_write_first(tmp_path, args, flag):
    r = CliRunner().invoke(app, [a.format(tmp=tmp_path) for a in args])
    assert r.exit_code == 2, r.output
    one_error(r.output, f"{flag} {UNWRITABLE}/", "cannot write in /proc")


# --------------------------------------------------------------------------- --max-pixels


def big_png(path: Path, side: int) -> Path:
    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, "PNG")  # a few kB for millions of pixels
    path.write_bytes(buf.getvalue())
    return path


@pytest.mark.parametrize("command", ["classify", "encode"])
def test_images_over_the_pixel_limit_are_refused_from_their_header(capsys, toy_bundle, image, tmp_path, command):
    big = big_png(tmp_path / "big.png", 2100)  # 4.41M pixels, over the default 2048x2048
    t0 = time.monotonic()
    code, out, err = run(capsys, command, str(big), "--artifacts", str(toy_bundle), "--provider", "cpu")
    assert time.monotonic() - t0 < servers.scaled(5)
    assert (code, out) == (2, "")
    limit = "over the limit of 4194304 (2048x2048; --max-pixels raises it)"
    assert err == f"fmnist: error: {big}: image of 4410000 pixels is {limit}\n"
    # with a good image too: the big one is reported, the good one answered, exit code 1
    code, out, err = run(capsys, command, str(big), str(image), "--artifacts", str(toy_bundle), "--provider", "cpu")
    assert code == 1 and str(image) in out and "over the limit" in err
    # the limit is a flag, as a pixel count or as WIDTHxHEIGHT
    for limit in (str(2100 * 2100), "2100x2100"):
        code, out, err = run(
            capsys, command, str(big), "--max-pixels", limit, "--artifacts", str(toy_bundle), "--provider", "cpu"
        )
        blank = f"fmnist: notice: {big}: no garment found (the image is blank or one flat colour), its class is a guess"
        assert (code, err) == (0, blank + "\n" if command == "classify" else "") and str(big) in out


def test_max_pixels_below_one_image_is_refused(capsys, image):
    code, _, err = run(capsys, "classify", str(image), "--max-pixels", "100")
    assert code == 2
    one_error(err, "--max-pixels must be >= 784, not 100")

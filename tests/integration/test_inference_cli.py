"""generate, classify, reconstruct, encode and evaluate on the fixed-weight toy bundle."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fmnist.cli.app import app
from tests import toybundle as toy

HEAVY = ("torch", "sklearn", "lightning", "scipy", "optuna")


def run_cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *words: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit)  # not a crash
    assert result.stdout == ""
    assert result.stderr.startswith("fmnist: error: ") and result.stderr.count("\n") == 1, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def save_png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


@pytest.fixture(scope="module")
def pngs(tmp_path_factory) -> Path:
    """black.png (uniform: label 0, p 0.1), white.png (dark border: inverted to black too),
    top.png (a light top half on black: class 0), bottom.png (class 1), in one folder."""
    folder = tmp_path_factory.mktemp("pngs")
    top = np.zeros((28, 28), np.uint8)
    top[2:12, 4:24] = 255
    save_png(folder / "black.png", np.zeros((28, 28), np.uint8))
    save_png(folder / "top.png", top)
    save_png(folder / "bottom.png", top[::-1].copy())
    return folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A 40-image stand-in for the official test set, in the torchvision layout (gzip and plain)."""
    root = tmp_path_factory.mktemp("data")
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = (rng.random((40, 28, 28)) * 255).astype(np.uint8)
    labels = rng.integers(0, 10, 40).astype(np.uint8)
    header = (2051).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (40, 28, 28))
    for prefix in ("t10k", "train"):  # evaluate reads training images for its Frechet floor
        with gzip.open(raw / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(header + images[::-1].tobytes() if prefix == "train" else header + images.tobytes())
        label_bytes = (2049).to_bytes(4, "big") + (40).to_bytes(4, "big") + labels.tobytes()
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(label_bytes)
    return root


# generate


def test_generate_png_grid_folder_and_npy(toy_bundle, tmp_path):
    b = ("--artifacts", toy_bundle)
    result = run_cli("generate", "--n", "16", "--out", tmp_path / "s.png", *b)
    assert result.exit_code == 0 and str(tmp_path / "s.png") in result.stdout
    # 4x4 tiles of 28 + 2 padding, each pixel shown 4x4 (112 px per image)
    assert Image.open(tmp_path / "s.png").size == (4 * (4 * 30 + 2), 4 * (4 * 30 + 2))
    assert run_cli("generate", "--n", "16", "--scale", "1", "--out", tmp_path / "s1.png", *b).exit_code == 0
    small, large = (np.asarray(Image.open(tmp_path / n)) for n in ("s1.png", "s.png"))
    assert small.shape == (4 * 30 + 2, 4 * 30 + 2) and np.array_equal(large[::4, ::4], small)
    assert run_cli("generate", "--n", "3", "--scale", "1", "--out", tmp_path / "dir", *b).exit_code == 0
    files = sorted((tmp_path / "dir").iterdir())
    assert [f.name for f in files] == [f"sample-0000{i}.png" for i in range(3)]
    assert all(Image.open(f).size == (28, 28) for f in files)
    for bad in ("0", "17", "two"):
        result = run_cli("generate", "--scale", bad, "--out", tmp_path / "bad.png", *b)
        assert result.exit_code == 2 and not (tmp_path / "bad.png").exists()
    for sampler in ("kde", "kde-pca", "vae"):
        out = tmp_path / f"{sampler}.npy"
        assert run_cli("generate", "--n", "5", "--sampler", sampler, "--out", out, *b).exit_code == 0
        x = np.load(out)
        assert x.shape == (5, 28, 28) and x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1


def test_generate_is_the_models_output_and_repeatable_by_seed(toy_bundle, tmp_path):
    from fmnist.runtime.bundle import Bundle

    def npy(name, *extra):
        result = run_cli("generate", "--n", "6", "--out", tmp_path / name, "--artifacts", toy_bundle, *extra)
        assert result.exit_code == 0
        return np.load(tmp_path / name)

    default, again, other = npy("a.npy"), npy("b.npy"), npy("c.npy", "--seed", "1")
    assert np.array_equal(default, again) and not np.array_equal(default, other)
    assert np.array_equal(default, Bundle(toy_bundle, "cpu").generate(6, "kde", 0))  # kde and seed 0 by default


def test_generate_help_says_why_kde_is_the_default():
    help_text = " ".join(run_cli("generate", "--help").stdout.split())
    assert "correlations" in help_text and "10,000" in help_text


# classify, reconstruct, encode


def test_classify_json_is_exact(toy_bundle, pngs):
    result = run_cli("classify", pngs, "--json", "--artifacts", toy_bundle)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [set(r) for r in rows] == [{"path", "label", "class", "probability"}] * 3
    by_name = {Path(r["path"]).name: r for r in rows}
    assert [by_name[n]["label"] for n in ("black.png", "top.png", "bottom.png")] == [0, 0, 1]
    assert by_name["bottom.png"]["class"] == "Trouser"
    assert by_name["black.png"]["probability"] == pytest.approx(0.1)
    x = np.asarray(Image.open(pngs / "top.png"), np.float32)[None] / 255
    assert by_name["top.png"]["probability"] == pytest.approx(float(toy.toy_probabilities(x).max()), rel=1e-5)


def test_classify_says_when_an_image_holds_no_garment(toy_bundle, tmp_path):
    white = save_png(tmp_path / "white.png", np.full((300, 300), 255, np.uint8))
    garment = np.full((300, 300), 255, np.uint8)
    garment[60:240, 100:200] = 30  # a dark garment on white
    shirt = save_png(tmp_path / "shirt.png", garment)
    result = run_cli("classify", white, shirt, "--json", "--artifacts", toy_bundle)
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 2  # both still answered
    assert result.stderr == f"fmnist: notice: {white}: {NO_GARMENT}\n"


NO_GARMENT = "no garment found (the image is blank or one flat colour), its class is a guess"


@pytest.mark.parametrize(
    "size, colour, mode",
    [((1, 1), 255, "L"), ((200, 300), 128, "L"), ((200, 300), 230, "L"), ((200, 300), (255, 0, 0), "RGB")],
    ids=["blank-1x1", "grey-128", "grey-230", "red"],
)
def test_every_flat_image_gets_the_no_garment_notice(toy_bundle, tmp_path, size, colour, mode):
    flat = tmp_path / "flat.jpg"
    Image.new(mode, size, colour).save(flat, quality=90)
    result = run_cli("classify", flat, "--artifacts", toy_bundle)
    assert result.exit_code == 0, result.output
    assert result.stderr == f"fmnist: notice: {flat}: {NO_GARMENT}\n"


def test_classify_text_and_top_k(toy_bundle, pngs):
    result = run_cli("classify", pngs / "bottom.png", "--top-k", "3", "--artifacts", toy_bundle)
    assert result.exit_code == 0
    line = result.stdout.strip()
    assert result.stdout.count("\n") == 1 and line.startswith(f"{pngs / 'bottom.png'}: Trouser ")
    assert line.count(",") == 2
    rows = json.loads(run_cli("classify", pngs / "top.png", "--top-k", "2", "--json", "--artifacts", toy_bundle).stdout)
    assert [k["label"] for k in rows[0]["top_k"]][0] == rows[0]["label"] == 0


def test_classify_any_size_and_mode_with_invert(toy_bundle, tmp_path):
    """A dark garment on white, RGB and 3x the size: auto inverts it to the training polarity (and
    frames it: the garment's box fills the 28 pixels, so its shape, not its margins, decides)."""
    photo = np.full((84, 60, 3), 255, np.uint8)
    photo[60:80, 10:50] = (30, 20, 10)  # dark, an inverted T: a wide foot
    photo[20:60, 28:32] = (30, 20, 10)  # and a thin stem, so the framed garment is bottom-heavy
    path = tmp_path / "photo.jpg"
    Image.fromarray(photo).save(path, quality=95)
    rows = {
        invert: json.loads(run_cli("classify", path, "--json", "--invert", invert, "--artifacts", toy_bundle).stdout)
        for invert in ("auto", "no")
    }
    assert rows["auto"][0]["class"] == "Trouser"  # light block at the bottom after inversion
    assert rows["no"][0]["class"] == "Ankle boot"  # left as is: mostly light, the toy's "white" class


def test_reconstruct_writes_originals_over_reconstructions_and_prints_mse(toy_bundle, pngs, tmp_path):
    out = tmp_path / "r.png"
    args = ("reconstruct", pngs / "black.png", pngs / "top.png", "--out", out, "--artifacts", toy_bundle)
    result = run_cli(*args, "--scale", "1")
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (2 * 30 + 2, 2 * 30 + 2)
    assert run_cli(*args).exit_code == 0 and Image.open(out).size == (4 * (2 * 30 + 2), 4 * (2 * 30 + 2))
    x = np.stack([np.asarray(Image.open(pngs / n), np.float32) / 255 for n in ("black.png", "top.png")])
    mse = ((toy.toy_decode(toy.toy_encode(x)) - x) ** 2).mean((1, 2))
    assert f"{pngs / 'black.png'}: mse {mse[0]:.5f}" in result.stdout
    assert f"{pngs / 'top.png'}: mse {mse[1]:.5f}" in result.stdout
    assert mse[0] == pytest.approx(0.25)  # sigmoid(0) = 0.5 everywhere against black


def test_encode_json_and_npy(toy_bundle, pngs, tmp_path):
    result = run_cli("encode", pngs / "black.png", pngs / "top.png", "--json", "--artifacts", toy_bundle)
    rows = json.loads(result.stdout)
    assert [set(r) for r in rows] == [{"path", "latent"}] * 2
    x = np.asarray(Image.open(pngs / "top.png"), np.float32)[None] / 255
    assert rows[0]["latent"] == [0.0, 0.0] and rows[1]["latent"] == pytest.approx(toy.toy_encode(x)[0].tolist())
    out = tmp_path / "z.npy"
    assert run_cli("encode", pngs, "--out", out, "--artifacts", toy_bundle).exit_code == 0
    z = np.load(out)
    assert z.shape == (3, 2) and z.dtype == np.float32


# evaluate


@pytest.mark.slow  # the whole test set, or a subprocess per command
def test_evaluate_json(toy_bundle, data_dir):
    from fmnist.runtime.bundle import Bundle
    from fmnist.runtime.evaluation import load_test_set

    result = run_cli("evaluate", "--data-dir", data_dir, "--json", "--artifacts", toy_bundle)
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    keys = {"reconstruction_mse", "classifier_accuracy", "per_class_accuracy", "photo_accuracy", "vae_elbo"}
    assert keys | {"samplers", "frechet_floors"} <= set(got)
    assert 0 <= got["photo_accuracy"] <= 1 and got["photo_images"] == 40
    assert set(got["frechet_floors"]) == {"training_images", "test_reconstructions"}
    images, labels = load_test_set(data_dir)
    assert images.shape == (40, 28, 28) and got["test_images"] == 40
    model = Bundle(toy_bundle, "cpu")
    recon = toy.toy_decode(toy.toy_encode(images))
    assert got["reconstruction_mse"] == pytest.approx(float(((recon - images) ** 2).mean()))
    assert got["classifier_accuracy"] == pytest.approx(float((model.classify(images).argmax(1) == labels).mean()))
    assert got["vae_elbo"] == pytest.approx(float(model.vae_elbo(images, 0).mean()), rel=1e-6)
    assert set(got["samplers"]) == {"kde", "kde-pca", "vae"}
    for s in got["samplers"].values():
        assert s["frechet_distance"] >= 0 and 0.1 <= s["mean_top_probability"] <= 1
        assert sum(s["class_spread"].values()) == pytest.approx(1.0)
    text = run_cli("evaluate", "--data-dir", data_dir, "--artifacts", toy_bundle).stdout
    assert "classifier accuracy" in text and "Frechet" in text


@pytest.mark.slow  # the whole test set, or a subprocess per command
def test_evaluate_says_when_a_model_is_degenerate(toy_bundle, data_dir):
    """The toy's fixed weights classify noise at chance and reconstruct it worse than its mean image."""
    from fmnist.runtime.evaluation import load_test_set

    images = load_test_set(data_dir)[0]
    baseline = float(((images - images.mean(0)) ** 2).mean())
    result = run_cli("evaluate", "--data-dir", data_dir, "--json", "--artifacts", toy_bundle)
    got = json.loads(result.stdout)  # the notices go to stderr, so --json stays parseable
    advice = "train longer (more --epochs, all the data: see the README's quick recipe)"
    assert result.stderr.splitlines() == [
        f"fmnist: notice: the classifier is near chance: test accuracy {got['classifier_accuracy']:.3f}, "
        f"chance 0.1; {advice}",
        f"fmnist: notice: the AE is no better than the mean image: test MSE {got['reconstruction_mse']:.4f}, "
        f"the mean test image's {baseline:.4f}; {advice}",
    ]


@pytest.mark.slow  # the whole test set, or a subprocess per command
def test_evaluate_reads_fmnist_data(toy_bundle, data_dir, monkeypatch):
    monkeypatch.setenv("FMNIST_DATA", str(data_dir))
    assert run_cli("evaluate", "--json", "--artifacts", toy_bundle).exit_code == 0


# bad input: one line on stderr, exit code 2, nothing written


@pytest.fixture
def bad_inputs(tmp_path, pngs) -> Path:
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "cut.png").write_bytes((pngs / "top.png").read_bytes()[:60])
    (tmp_path / "empty").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("classify", "{tmp}/missing.png"), ("missing.png", "no such file")),
        (("classify", "{tmp}/empty"), ("empty", "no images")),
        (("classify", "{tmp}/notes.txt"), ("notes.txt", "not an image")),
        (("classify", "{tmp}/cut.png"), ("cut.png", "truncated")),
        (("reconstruct", "{tmp}/cut.png", "--out", "{tmp}/x.png"), ("cut.png",)),
        (("encode", "{tmp}/notes.txt", "--out", "{tmp}/x.npy"), ("notes.txt",)),
        (("classify", "{tmp}/notes.txt", "--invert", "maybe"), ("--invert",)),
        (("generate", "--n", "0", "--out", "{tmp}/x.png"), ("between 1 and 10000", "not 0")),
        (("generate", "--n", "-3", "--out", "{tmp}/x.png"), ("not -3",)),
        (("generate", "--n", "10001", "--out", "{tmp}/x.png"), ("not 10001",)),
        (("generate", "--sampler", "gan", "--out", "{tmp}/x.png"), ("gan", "'kde', 'kde-pca', 'vae'")),
        (("generate", "--out", "{tmp}/x.jpg"), ("x.jpg",)),
        (("generate", "--out", "{tmp}/x.txt"), ("x.txt", "a folder")),
        (("generate", "--out", "{tmp}/nowhere/x.png"), ("does not exist",)),
        (("generate", "--provider", "tpu", "--out", "{tmp}/x.png"), ("--provider",)),
    ],
)
def test_bad_input_is_one_line_and_exit_2(toy_bundle, bad_inputs, args, words):
    result = run_cli(*(a.format(tmp=bad_inputs) for a in args), "--artifacts", toy_bundle)
    assert_one_line_error(result, *words)
    assert sorted(p.name for p in bad_inputs.iterdir()) == ["cut.png", "empty", "notes.txt"]


def test_missing_bundle_folder(bad_inputs):
    result = run_cli("generate", "--out", bad_inputs / "x.png", "--artifacts", bad_inputs / "nowhere")
    assert_one_line_error(result, "nowhere", "does not exist")
    assert not (bad_inputs / "x.png").exists()


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        ("alter", ("samplers.npz", "sha256")),  # generate reads the graphs and files it uses, not classifier.onnx
        ("truncate", ("decoder.onnx", "wrong size")),
        ("delete", ("samplers.npz", "missing")),
        ("manifest", ("manifest.json", "missing")),
    ],
)
def test_a_bundle_failing_its_integrity_check_is_refused(toy_bundle, tmp_path, damage, words):
    copy = tmp_path / "b"
    shutil.copytree(toy_bundle, copy)
    if damage == "alter":
        data = bytearray((copy / "samplers.npz").read_bytes())
        data[200] ^= 0xFF
        (copy / "samplers.npz").write_bytes(bytes(data))
    elif damage == "truncate":
        data = (copy / "decoder.onnx").read_bytes()
        (copy / "decoder.onnx").write_bytes(data[: len(data) // 2])
    else:
        (copy / ("samplers.npz" if damage == "delete" else "manifest.json")).unlink()
    result = run_cli("generate", "--out", tmp_path / "x.png", "--artifacts", copy)
    assert_one_line_error(result, *words)
    assert not (tmp_path / "x.png").exists()


def test_one_bad_image_among_several_is_reported_and_the_rest_classified(toy_bundle, pngs, tmp_path):
    result = run_cli(
        "classify", pngs / "top.png", tmp_path / "missing.png", pngs / "bottom.png", "--json", "--artifacts", toy_bundle
    )
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "missing.png" in result.stderr
    assert [r["class"] for r in json.loads(result.stdout)] == ["T-shirt/top", "Trouser"]


# a real process: exit codes, stderr, and the training stack never imported


def test_a_real_process_reports_bad_input_in_one_line(toy_bundle, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "fmnist.cli", "classify", str(tmp_path / "missing.png"), "--artifacts", str(toy_bundle)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"fmnist: error: {tmp_path / 'missing.png'}: no such file\n"


@pytest.mark.slow  # the whole test set, or a subprocess per command
def test_inference_commands_never_import_the_training_stack(toy_bundle, pngs, data_dir, tmp_path):
    b = ["--artifacts", str(toy_bundle)]
    commands = [
        ["generate", "--n", "4", "--out", str(tmp_path / "g.png"), *b],
        ["generate", "--n", "4", "--sampler", "kde-pca", "--out", str(tmp_path / "g.npy"), *b],
        ["classify", str(pngs), "--json", *b],
        ["reconstruct", str(pngs / "top.png"), "--out", str(tmp_path / "r.png"), *b],
        ["encode", str(pngs), *b],
        ["evaluate", "--data-dir", str(data_dir), *b],
    ]
    probe = (
        "import sys\n"
        "from fmnist.cli.app import app\n"
        f"for args in {commands!r}:\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (0, None), (args, e.code)\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print('loaded:', 'onnxruntime' in sys.modules, 'PIL' in sys.modules, 'heavy:', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "loaded: True True heavy: []"


def test_the_fmnist_entry_point_runs_inference_without_typer(toy_bundle, pngs):
    probe = (
        "import sys\n"
        "from fmnist.__main__ import main\n"
        "try:\n"
        f"    main(['classify', {str(pngs / 'top.png')!r}, '--json', '--artifacts', {str(toy_bundle)!r}])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        f"slow = sorted(m for m in {SLOW!r} if m in sys.modules)\n"
        "print('slow:', slow)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert json.loads(lines[0])[0]["class"] == "T-shirt/top"
    assert lines[-1] == "slow: []"


# what the cold start of an inference command does without: typer and its kin, and standard
# modules that cost it milliseconds (dataclasses, zipfile, shutil, importlib.resources, ...)
SLOW = ("typer", "click", "pydantic", "rich", "dataclasses", "zipfile", "shutil", "importlib.resources")
SLOW += ("tempfile", "multiprocessing", "PIL.ImageOps")


@pytest.mark.parametrize("sampler", ["vae", "kde"])
def test_generate_starts_without_the_slow_modules(toy_bundle, tmp_path, sampler):
    out = tmp_path / "s.png"
    args = ["generate", "--n", "4", "--sampler", sampler, "--out", str(out), "--artifacts", str(toy_bundle)]
    probe = (
        "import sys\n"
        "from fmnist.__main__ import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        f"print('slow:', sorted(m for m in {SLOW!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # the kde sampler's arrays are an .npz, which numpy reads with zipfile (and zipfile with shutil)
    read_npz = ["shutil", "zipfile"] if sampler == "kde" else []
    assert result.stdout.strip().splitlines()[-1] == f"slow: {read_npz}"
    assert out.is_file()


def test_the_command_ends_its_process_itself_with_its_output_flushed(toy_bundle, pngs, tmp_path):
    """As a program (no argv given), an inference command ends the process without the
    interpreter's teardown: its output all there, its exit code kept, an atexit hook never run."""
    probe = "import atexit, sys\natexit.register(print, 'teardown')\nfrom fmnist.__main__ import main\nmain()\n"
    paths = [str(pngs / "top.png"), str(tmp_path / "missing.png")]
    cmd = [sys.executable, "-c", probe, "classify", *paths, "--json", "--artifacts", str(toy_bundle)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 1, result.stderr  # one of two inputs unreadable
    assert [r["class"] for r in json.loads(result.stdout)] == ["T-shirt/top"]
    assert "teardown" not in result.stdout
    assert result.stderr.count("\n") == 1 and "missing.png: no such file" in result.stderr


def test_a_library_call_of_main_raises_system_exit():
    probe = (
        "import atexit\n"
        "atexit.register(print, 'teardown')\n"
        "from fmnist.__main__ import main\n"
        "try:\n"
        "    main(['classify', '--top-k', 'x'])\n"
        "except SystemExit as e:\n"
        "    print('exit', e.code)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.split() == ["exit", "2", "teardown"]


def test_usage_errors_are_one_line_too(toy_bundle):
    result = subprocess.run(
        [sys.executable, "-m", "fmnist", "classify", "--top-k", "three", "x.png", "--artifacts", str(toy_bundle)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("fmnist: error: argument --top-k: invalid int value: 'three'")
    assert result.stderr.count("\n") == 1


def test_options_may_sit_between_the_image_paths(toy_bundle, pngs):
    b = ["--artifacts", toy_bundle]
    result = run_cli("classify", pngs / "top.png", "--top-k", "2", pngs / "bottom.png", "--json", *b)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["class"] for r in rows] == ["T-shirt/top", "Trouser"] and len(rows[0]["top_k"]) == 2


def test_a_closed_pipe_ends_quietly(toy_bundle, pngs):
    cmd = [sys.executable, "-m", "fmnist", "classify", str(pngs), "--json", "--artifacts", str(toy_bundle)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `| head -c 0`: the reader is gone before anything is written
    stderr = proc.stderr.read().decode()
    assert proc.wait() == 1
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr

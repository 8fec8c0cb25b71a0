"""A bundle whose hashes match but whose manifest or files break the contract is refused in one
line naming the field, before any onnxruntime session of the broken file starts: by ``Bundle``
(``lazy=False`` at load; by default a graph when first used, the samplers when first drawn), by
the inference commands (exit code 2) and by ``fmnist serve`` (exit code 2, no traceback).

Each case tampers with a copy of the toy bundle and re-hashes it (``toybundle.retamper``), so the
schema, not the hash check, is what refuses it.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist import artifacts
from fmnist.errors import BundleError
from fmnist.runtime.bundle import Bundle
from tests.toybundle import SAMPLERS, retamper


def _set(key, value):
    def edit(manifest):
        manifest[key] = value

    return edit


def _files_entry(name: str, target: Path):
    """A files entry for ``name`` with ``target``'s real size and hash."""

    def edit(manifest):
        manifest["files"][name] = {"size": target.stat().st_size, "sha256": artifacts.sha256_file(target)}

    return edit


def _log_scale(value):
    def edit(manifest):
        manifest["vae"]["log_scale"] = value

    return edit


def _samplers(**changes):
    """samplers.npz with some arrays replaced (None: removed)."""

    def prepare(folder: Path):
        arrays = {k: np.asarray(v) for k, v in SAMPLERS.items()}
        for k, v in changes.items():
            if v is None:
                del arrays[k]
            else:
                arrays[k] = v
        np.savez(folder / artifacts.SAMPLERS_NPZ, **arrays)

    return prepare


def _graph(name: str, edit):
    """Replace graph ``name`` by the toy graph after ``edit(onnx.GraphProto)``."""

    def change(folder: Path):
        import onnx

        model = onnx.load(folder / artifacts.GRAPHS[name])
        edit(model.graph)
        onnx.save(model, folder / artifacts.GRAPHS[name])

    return change


def _rename_output(graph, old="latent", new="z"):
    for node in graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
    next(o for o in graph.output if o.name == old).name = new


def _extra_output(graph):
    from onnx import TensorProto, helper

    graph.node.append(helper.make_node("Identity", ["latent"], ["latent_copy"]))
    graph.output.append(helper.make_tensor_value_info("latent_copy", TensorProto.FLOAT, ["N", 2]))


def _double_output(graph):
    from onnx import TensorProto

    graph.output[0].type.tensor_type.elem_type = TensorProto.DOUBLE


def _swap_encoder(folder: Path):
    """encoder.onnx replaced by the VAE's encoder, as an attacker or a careless copy would."""
    shutil.copyfile(folder / "vae_encoder.onnx", folder / "encoder.onnx")


def _outside_link(folder: Path):
    (folder / "extra.bin").symlink_to("/etc/hostname")


ETC_HOSTNAME = Path("/etc/hostname")

# (id, change to the folder's files before re-hashing, edit of the manifest after, words in the error)
CASES = [
    ("latent_dim a string", None, _set("latent_dim", "eight"), "latent_dim must be a whole number"),
    ("latent_dim a bool", None, _set("latent_dim", True), "latent_dim must be a whole number"),
    ("latent_dim not the graphs'", None, _set("latent_dim", 3), "(latent_dim 3) says latent float32 [N, 3]"),
    (
        "encoder.onnx the VAE's encoder",
        _swap_encoder,
        None,
        "encoder.onnx is not the AE's encoder: its outputs mean float32 [N, 2], logvar float32 [N, 2]; "
        "the contract (latent_dim 2) says latent float32 [N, 2]",
    ),
    (
        "a graph with an extra output",
        _graph("encoder", _extra_output),
        None,
        "its outputs latent float32 [N, 2], latent_copy float32 [N, 2]; the contract",
    ),
    ("a graph with a renamed output", _graph("encoder", _rename_output), None, "its outputs z float32 [N, 2]; the"),
    ("a graph output of doubles", _graph("encoder", _double_output), None, "its outputs latent type 11 [N, 2]"),
    (
        "a graph with a renamed input",
        _graph("decoder", lambda g: g.input[0].__setattr__("name", "z")),
        None,
        "decoder.onnx is not the AE's decoder (sigmoid inside): its inputs z float32 [N, 2]",
    ),
    (
        "per-class points of another class count",
        _samplers(kde_class_points=np.zeros((9, 2, 2))),
        None,
        "kde_class_points is float64 [9, 2, 2], the contract (latent_dim 2) says float [10, m, 2]",
    ),
    ("per-class bandwidth negative", _samplers(kde_class_bandwidth=-np.ones(10)), None, "must be positive"),
    ("per-class arrays missing", _samplers(kde_class_bandwidth=None), None, "holds no array 'kde_class_bandwidth'"),
    ("files a list", None, _set("files", ["encoder.onnx"]), "files must be an object"),
    (
        "files outside the folder",
        None,
        _files_entry("../../../../etc/hostname", ETC_HOSTNAME),
        "files must be plain file names inside the bundle folder, not '../../../../etc/hostname'",
    ),
    (
        "files absolute",
        None,
        _files_entry("/etc/hostname", ETC_HOSTNAME),
        "files must be plain file names inside the bundle folder, not '/etc/hostname'",
    ),
    ("files a link out", _outside_link, _files_entry("extra.bin", ETC_HOSTNAME), "extra.bin is a link out"),
    ("size not a number", None, lambda m: m["files"]["decoder.onnx"].update(size="9"), "files.decoder.onnx.size"),
    ("sha256 not hex", None, lambda m: m["files"]["decoder.onnx"].update(sha256="x" * 64), "files.decoder.onnx.sha256"),
    ("class_names cut to 3", None, lambda m: m.update(class_names=m["class_names"][:3]), "class_names must be"),
    ("class_names repeated", None, lambda m: m.update(class_names=["a"] * 10), "class_names must be"),
    ("log_scale too large", None, _log_scale(50), "vae.log_scale must be a number from -10 to 2, not 50"),
    ("log_scale not finite", None, _log_scale(float("nan")), "vae.log_scale must be a number"),
    ("log_scale a string", None, _log_scale("-1.5"), "vae.log_scale must be a number"),
    ("vae missing", None, lambda m: m.pop("vae"), "vae must be an object"),
    ("metrics a list", None, _set("metrics", [1, 2]), "metrics must be an object"),
    (
        "samplers.npz with an object array",
        _samplers(pca_mean=np.array([0.25, "x"], dtype=object)),
        None,
        "cannot be read without pickle",
    ),
    (
        "sampler points of another width",
        _samplers(kde_latent_points=np.zeros((4, 3))),
        None,
        "kde_latent_points is float64 [4, 3], the contract (latent_dim 2) says float [m, 2]",
    ),
    ("sampler array of ints", _samplers(pca_mean=np.array([1, 0])), None, "pca_mean is int64 [2]"),
    ("sampler array missing", _samplers(kde_pca_bandwidth=None), None, "holds no array 'kde_pca_bandwidth'"),
    ("sampler bandwidth zero", _samplers(kde_latent_bandwidth=np.float64(0)), None, "must be positive"),
    ("sampler points not finite", _samplers(kde_pca_points=np.full((4, 2), np.inf)), None, "not finite"),
    (
        "a graph file that is not ONNX",
        lambda folder: (folder / "decoder.onnx").write_bytes(b"\xff" * 64),
        None,
        "decoder.onnx is not an ONNX model",
    ),
]


@pytest.fixture
def tampered(toy_bundle, tmp_path):
    """Make a tampered copy of the toy bundle: tampered(change, edit) -> its folder."""

    def make(change, edit) -> Path:
        folder = tmp_path / "bundle"
        shutil.copytree(toy_bundle, folder)
        if change is not None:
            change(folder)
        retamper(folder, edit)
        return folder

    return make


@pytest.mark.parametrize("change,edit,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_tampered_bundle_is_refused_at_load_naming_the_field(tampered, monkeypatch, change, edit, words):
    import onnxruntime

    def no_session(*args, **kwargs):
        raise AssertionError("a session was started before the bundle was verified")

    monkeypatch.setattr(onnxruntime, "InferenceSession", no_session)
    folder = tampered(change, edit)
    with pytest.raises(BundleError) as caught:
        Bundle(folder, "cpu", lazy=False)
    message = str(caught.value)
    assert words in message and "\n" not in message


def test_the_untampered_toy_and_default_bundles_pass(toy_bundle, tampered):
    rehashed = tampered(None, None)  # re-hashing alone changes nothing
    for lazy in (True, False):
        for folder in (toy_bundle, None, rehashed):  # None: the bundled default
            Bundle(folder, "cpu", lazy=lazy)


@pytest.mark.parametrize(
    "change",
    [_swap_encoder, _graph("encoder", _extra_output), _graph("encoder", _rename_output)],
    ids=["swapped encoder", "extra output", "renamed output"],
)
def test_a_graph_off_contract_is_refused_when_used_by_the_cli_in_one_line(tampered, capsys, tmp_path, change):
    from fmnist.cli.inference import run

    folder = tampered(change, None)
    image = tmp_path / "x.png"
    Image.new("L", (28, 28), 200).save(image)
    assert run(["reconstruct", str(image), "--out", str(tmp_path / "r.png"), "--artifacts", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fmnist: error: bundle file {folder / 'encoder.onnx'} is not the AE's encoder: its ")
    assert len(err.splitlines()) == 1 and not (tmp_path / "r.png").exists()


def test_a_graph_a_command_does_not_use_does_not_block_it_and_is_refused_when_used(tampered, capsys, tmp_path):
    """Lazy verification: classify opens classifier.onnx alone, so a damaged VAE decoder and
    samplers.npz do not stop it; generate --sampler vae is refused, naming the file."""
    from fmnist.cli.inference import run

    def damage(folder: Path):
        (folder / "vae_decoder.onnx").write_bytes(b"\xff" * 64)
        (folder / "samplers.npz").write_bytes(b"not an archive")

    folder = tampered(None, None)
    damage(folder)  # after hashing: altered files
    image = tmp_path / "x.png"
    Image.new("L", (28, 28), 200).save(image)
    assert run(["classify", str(image), "--artifacts", str(folder)]) == 0
    capsys.readouterr()
    assert run(["generate", "--sampler", "vae", "--out", str(tmp_path / "s.png"), "--artifacts", str(folder)]) == 2
    err = capsys.readouterr().err
    wrong = "has the wrong size (truncated or altered)"
    assert err == f"fmnist: error: bundle file {folder / 'vae_decoder.onnx'} {wrong}\n"
    assert run(["generate", "--out", str(tmp_path / "s.png"), "--artifacts", str(folder)]) == 2
    assert "samplers.npz has the wrong size" in capsys.readouterr().err and not (tmp_path / "s.png").exists()
    with pytest.raises(BundleError, match="has the wrong size"):
        Bundle(folder, "cpu", lazy=False)


def test_a_graph_altered_after_load_is_refused_at_its_first_use(tampered):
    folder = tampered(_swap_encoder, None)
    model = Bundle(folder, "cpu")  # lazy: the manifest alone
    with pytest.raises(BundleError, match="encoder.onnx is not the AE's encoder"):
        model.encode(np.zeros((1, 28, 28), np.float32))
    assert "encoder" not in model._sessions


@pytest.mark.parametrize("command", ["classify", "generate"])
def test_the_cli_refuses_a_tampered_bundle_in_one_line_with_exit_2(tampered, capsys, tmp_path, command):
    from fmnist.cli.inference import run

    folder = tampered(None, _set("latent_dim", "eight"))
    image = tmp_path / "x.png"
    Image.new("L", (28, 28)).save(image)
    args = [str(image)] if command == "classify" else ["--out", str(tmp_path / "s.png")]
    assert run([command, *args, "--artifacts", str(folder), "--provider", "cpu"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    field = "latent_dim must be a whole number from 1 to 1024, not 'eight'"
    assert captured.err == f"fmnist: error: {folder / 'manifest.json'}: {field}\n"
    assert not (tmp_path / "s.png").exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_refuses_a_tampered_bundle_with_exit_2_and_no_traceback(tampered, workers):
    folder = tampered(_samplers(pca_mean=np.array([0.25, "x"], dtype=object)), None)
    r = subprocess.run(
        [sys.executable, "-m", "fmnist", "serve", "--artifacts", str(folder), "--port", "0", "--workers", workers],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("fmnist: error: bundle file ") and "cannot be read without pickle" in r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stdout == ""

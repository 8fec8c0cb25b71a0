"""The image commands on many files (a process pool decoding while the model runs, output in
input order, bounded grids), outputs that are inputs, seeds out of range, the bundle a command
took by itself, and the argparse commands' help and usage errors."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist.cli import inference
from fmnist.runtime import stream
from tests import toybundle as toy

N = 170  # over one grid at --scale 16 (160 pairs), over several chunks


def run(capsys, *args) -> tuple[int, str, str]:
    try:
        code = inference.run([str(a) for a in args])
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Path:
    """N 28x28 garments (a light block at a varying height on black), named in order."""
    folder = tmp_path_factory.mktemp("many")
    for i in range(N):
        a = np.zeros((28, 28), np.uint8)
        top = i % 20
        a[top : top + 6, 4:24] = 100 + i % 150
        Image.fromarray(a).save(folder / f"{i:04d}.png")
    return folder


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 8 paths: N images make 22 tasks for the pool, batches of 256 span many chunks."""
    monkeypatch.setattr(stream, "CHUNK", 8)


def expected_classes(paths: list[Path]) -> list[int]:
    x = np.stack([np.asarray(Image.open(p), np.float32) / 255 for p in paths])
    return toy.toy_probabilities(x).argmax(1).tolist()


def test_a_folder_is_classified_in_order_by_the_pool(capsys, toy_bundle, many, small_chunks):
    paths = sorted(many.iterdir())
    code, out, err = run(capsys, "classify", many, "--jsonl", "--jobs", "2", "--artifacts", toy_bundle)
    assert (code, err) == (0, "")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["path"] for r in rows] == [str(p) for p in paths]
    assert [r["label"] for r in rows] == expected_classes(paths)
    code, one_process, _ = run(capsys, "classify", many, "--jsonl", "--jobs", "1", "--artifacts", toy_bundle)
    assert code == 0 and one_process == out


def test_json_is_one_array_the_same_as_before(capsys, toy_bundle, many, small_chunks):
    code, out, _ = run(capsys, "classify", many, "--json", "--artifacts", toy_bundle)
    rows = json.loads(out)
    assert code == 0 and len(rows) == N
    assert out == json.dumps(rows) + "\n"  # byte for byte what json.dumps of the whole list prints


def test_json_and_jsonl_exclude_each_other(capsys, toy_bundle, many):
    code, out, err = run(capsys, "classify", many, "--json", "--jsonl", "--artifacts", toy_bundle)
    assert (code, out) == (2, "") and "not allowed with argument" in err and err.count("\n") == 1


def test_bad_files_among_many_are_reported_and_the_rest_classified(capsys, toy_bundle, many, tmp_path, small_chunks):
    folder = tmp_path / "mixed"
    shutil.copytree(many, folder)
    (folder / "0050.png").write_bytes(b"not a png")
    (folder / "0120.png").write_bytes(b"")
    code, out, err = run(capsys, "classify", folder, "--jsonl", "--jobs", "2", "--artifacts", toy_bundle)
    assert code == 1
    assert len(out.splitlines()) == N - 2
    assert err.count("fmnist: error: ") == 2 and "0050.png" in err and "0120.png" in err


def test_only_bad_files_is_one_error(capsys, toy_bundle, tmp_path):
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"junk")
    code, out, err = run(capsys, "classify", tmp_path, "--artifacts", toy_bundle)
    assert (code, out) == (2, "")
    assert err == "fmnist: error: no readable image among 2 inputs\n"


def test_encode_streams_to_npy(capsys, toy_bundle, many, tmp_path, small_chunks):
    out = tmp_path / "z.npy"
    code, printed, _ = run(capsys, "encode", many, "--out", out, "--jobs", "2", "--artifacts", toy_bundle)
    assert code == 0 and printed == f"wrote {N}x2 latents to {out}\n"
    x = np.stack([np.asarray(Image.open(p), np.float32) / 255 for p in sorted(many.iterdir())])
    z = np.load(out)
    assert z.dtype == np.float32 and z.shape == (N, 2)
    np.testing.assert_allclose(z, toy.toy_encode(x), rtol=1e-5, atol=1e-5)
    assert sorted(os.listdir(tmp_path)) == ["z.npy"]  # no temporary file left


def test_reconstruct_writes_one_grid_per_batch_of_pairs_pillow_opens(capsys, toy_bundle, many, tmp_path):
    out = tmp_path / "r.png"
    code, printed, _ = run(capsys, "reconstruct", many, "--out", out, "--scale", "16", "--artifacts", toy_bundle)
    assert code == 0
    first, second = tmp_path / "r-0001.png", tmp_path / "r-0002.png"
    assert printed.splitlines()[-1] == f"wrote {second}" and f"wrote {first}" in printed
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["r-0001.png", "r-0002.png"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a DecompressionBombWarning
        sizes = [Image.open(p).size for p in (first, second)]
        for p in (first, second):
            Image.open(p).load()
    step = 30 * 16
    assert sizes[0] == (32 * step + 32, 10 * step + 32)  # 160 pairs: 5 pairs of rows of 32
    assert sizes[1] == (10 * step + 32, 2 * step + 32)  # the 10 left


def test_reconstruct_labels_name_the_rows(capsys, toy_bundle, many, tmp_path):
    paths = sorted(many.iterdir())[:3]
    plain, labelled = tmp_path / "plain.png", tmp_path / "labelled.png"
    assert run(capsys, "reconstruct", *paths, "--out", plain, "--artifacts", toy_bundle)[0] == 0
    assert run(capsys, "reconstruct", *paths, "--out", labelled, "--labels", "--artifacts", toy_bundle)[0] == 0
    a, b = np.asarray(Image.open(plain)), np.asarray(Image.open(labelled))
    margin = b.shape[1] - a.shape[1]
    assert b.shape[0] == a.shape[0] and margin > 0
    np.testing.assert_array_equal(b[:, margin:], a)  # the grid itself unchanged
    assert (b[:, :margin] == 255).any()  # white text on the grey margin


# --------------------------------------------------------------------------- outputs that are inputs


def _spellings(tmp_path: Path, image: Path) -> dict[str, Path]:
    link, hard = tmp_path / "link.png", tmp_path / "hard.png"
    link.symlink_to(image)
    os.link(image, hard)
    return {"same": image, "dotted": Path(os.path.relpath(image)).parent / "." / image.name, "link": link, "hard": hard}


@pytest.mark.parametrize("spelling", ["same", "dotted", "link", "hard"])
def test_reconstruct_refuses_to_write_over_its_input(capsys, toy_bundle, tmp_path, spelling, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image = tmp_path / "x.png"
    Image.fromarray(np.eye(28, dtype=np.uint8) * 200).save(image)
    before = image.read_bytes()
    out = _spellings(tmp_path, image)[spelling]
    code, printed, err = run(capsys, "reconstruct", image, "--out", out, "--artifacts", toy_bundle)
    assert (code, printed) == (2, "")
    assert err.startswith(f"fmnist: error: --out {out} is also an input") and err.count("\n") == 1
    assert image.read_bytes() == before


def test_encode_refuses_to_write_over_its_input(capsys, toy_bundle, tmp_path):
    image = tmp_path / "x.npy"
    Image.fromarray(np.eye(28, dtype=np.uint8) * 200).save(image, format="PNG")  # an image named .npy
    before = image.read_bytes()
    code, _, err = run(capsys, "encode", tmp_path / "." / "x.npy", "--out", image, "--artifacts", toy_bundle)
    assert code == 2 and "is also an input" in err and image.read_bytes() == before


def test_an_output_inside_an_input_folder_is_refused(capsys, toy_bundle, many, tmp_path):
    folder = tmp_path / "f"
    shutil.copytree(many, folder)
    code, _, err = run(capsys, "reconstruct", folder, "--out", folder / "0003.png", "--artifacts", toy_bundle)
    assert code == 2 and "is also an input" in err


# --------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("seed", ["-1", str(2**76), str(2**32)])
@pytest.mark.parametrize("command", [("generate", "--out", "{tmp}/s.png"), ("evaluate",)])
def test_a_seed_out_of_range_is_one_line(capsys, toy_bundle, tmp_path, seed, command):
    args = [a.format(tmp=tmp_path) for a in command]
    code, out, err = run(capsys, *args, "--seed", seed, "--artifacts", toy_bundle)
    assert (code, out) == (2, "")
    assert err == f"fmnist: error: --seed must be a whole number from 0 to 4,294,967,295 (2**32 - 1), not {seed}\n"


def test_the_largest_seed_works(capsys, toy_bundle, tmp_path):
    code, _, _ = run(
        capsys, "generate", "--seed", str(2**32 - 1), "--out", tmp_path / "s.npy", "--artifacts", toy_bundle
    )
    assert code == 0 and np.load(tmp_path / "s.npy").shape == (16, 28, 28)


# --------------------------------------------------------------------------- which bundle


def test_the_bundle_taken_by_default_is_named_once(capsys, toy_bundle, many, tmp_path, monkeypatch):
    monkeypatch.delenv("FMNIST_ARTIFACTS", raising=False)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(toy_bundle, tmp_path / "artifacts")
    code, _, err = run(capsys, "classify", many / "0001.png")
    assert code == 0
    assert err == (
        "fmnist: notice: using the bundle in artifacts, exported from an unrecorded run; "
        "choose one with --artifacts or $FMNIST_ARTIFACTS\n"
    )
    monkeypatch.setenv("FMNIST_ARTIFACTS", str(toy_bundle))  # named: nothing said
    assert run(capsys, "classify", many / "0001.png")[2] == ""
    monkeypatch.delenv("FMNIST_ARTIFACTS")
    assert run(capsys, "classify", many / "0001.png", "--artifacts", "artifacts")[2] == ""


def test_the_notice_names_the_run_and_commit():
    manifest = {"provenance": {"run_dir": "runs/default", "git_commit": "2975ee2c9d9b1e65"}}
    text = inference.bundle_notice(Path("artifacts"), manifest)
    assert text.startswith("using the bundle in artifacts, exported from runs/default (commit 2975ee2);")


# --------------------------------------------------------------------------- help and usage


def test_a_mistyped_flag_gets_the_nearest(capsys, toy_bundle, many):
    code, _, err = run(capsys, "classify", many / "0001.png", "--top_k", "3", "--artifacts", toy_bundle)
    assert code == 2
    assert err.startswith("fmnist: error: unrecognized arguments: --top_k") and "did you mean --top-k?" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "command, shown",
    [
        ("classify", ["--top-k K", "[default: 1]", "[default: 2048x2048]", "auto|yes|no", "[default: auto]"]),
        ("generate", ["--sampler kde|kde-pca|vae", "[default: 16]", "[default: samples.png]", "[default: 4]"]),
        ("reconstruct", ["--labels", "[default: reconstructions.png]", "--jobs N"]),
        ("encode", ["--jsonl", "--max-pixels WxH"]),
        ("evaluate", ["--seed N", "[default: 0]"]),
    ],
)
def test_help_reads_like_the_typer_commands(capsys, command, shown):
    with pytest.raises(SystemExit) as exit_:
        inference.run([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal's width
    assert exit_.value.code == 0
    assert "(default:" not in text and "4,194,304" not in text
    for piece in shown:
        assert piece in text, piece


# --------------------------------------------------------------------------- stopping


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[1] == str(pid):
                found.append(int(stat.parent.name))
        except (OSError, IndexError):
            continue
    return found


def _gone(pid: int) -> bool:
    """Ended (or a zombie, ended but not yet reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_sigterm_stops_the_pool_in_one_line(toy_bundle, many, tmp_path):
    """A named pipe nobody writes to holds the first chunk, so the command is surely mid-work."""
    import signal
    import subprocess
    import sys
    import time

    fifo = tmp_path / "stuck.png"
    os.mkfifo(fifo)
    cmd = [sys.executable, "-m", "fmnist", "classify", fifo, many, "--jobs", "2", "--artifacts", toy_bundle]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(workers := _children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(workers) >= 2, "the decoding pool never started"
        proc.send_signal(signal.SIGTERM)  # the command alone, as a service manager would
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 143
        assert err.decode() == "fmnist: stopped (SIGTERM)\n"
        for pid in workers:  # the workers went with it
            for _ in range(100):
                if _gone(pid):
                    break
                time.sleep(0.05)
            else:
                raise AssertionError(f"decoding process {pid} outlived the command")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

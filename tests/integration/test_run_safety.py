"""Runs and bundles kept whole: one writer per folder, no training over a trained model, one line
for a full disk or a checkpoint carrying code (issue 22, 25)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fmnist import runs
from fmnist.cli.app import app
from fmnist.config import DEFAULTS
from tests.conftest import TINY

TUNE_TINY = ["--limit-train", "300", "--batch-size", "100", "--no-progress"]  # tune ae searches --lr


def run_cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line(result) -> str:
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output, result.output
    return result.stderr.strip()


@contextmanager
def held(lock: Path, command: str = "fmnist train", shared: bool = False):
    """Another process holding ``lock`` as ``command`` does; killed (its whole group) on leaving."""
    code = (
        "import sys, time\nfrom fmnist import runs\n"
        f"with runs.hold_lock({str(lock)!r}, {command!r}, 'R', shared={shared}):\n"
        "    print('held', flush=True)\n    time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def a_run(folder: Path, data_dir: Path, models=("ae",)) -> Path:
    """A run folder as `fmnist train` starts one (config.json, run.json), nothing trained yet."""
    folder.mkdir(parents=True)
    runs.write_json(folder / runs.CONFIG_FILE, DEFAULTS.updated(limit_train=300, batch_size=100).to_dict())
    runs.write_record(folder, data_dir=data_dir, models=models)
    return folder


def test_a_second_train_tune_resume_or_export_into_a_busy_folder_is_refused(data_dir, tmp_path):
    run = a_run(tmp_path / "run", data_dir)
    with held(run / runs.LOCK_FILE) as first:
        in_use = f"run folder {run} is in use by process {first.pid} (fmnist train)"
        for args in (
            ["train", "--model", "ae", "--run-dir", run, *TINY],
            ["train", "--resume", "--run-dir", run, "--no-progress"],
            ["tune", "ae", "--trials", 1, "--run-dir", run, *TUNE_TINY],
        ):
            result = run_cli(*args)
            assert result.exit_code == 2, result.output
            assert one_line(result).startswith(f"fmnist: error: {in_use}: wait for it to end"), args
    assert not (run / "ae").exists() and not (run / "study.db").exists()

    out = tmp_path / "bundle"
    with held(tmp_path / ".bundle.lock", "fmnist export") as first:
        result = run_cli("export", "--run-dir", run, "--out", out)
        assert result.exit_code == 2
        assert f"--out {out} is in use by process {first.pid} (fmnist export)" in one_line(result)
    assert not out.exists()


def test_tune_workers_share_a_folder_but_train_may_not_join_them(tmp_path):
    run = tmp_path / "tune"
    with held(run / runs.LOCK_FILE, "fmnist tune", shared=True) as worker:
        result = run_cli("train", "--model", "ae", "--run-dir", run, *TINY)
        assert result.exit_code == 2
        assert f"is in use by process {worker.pid} (fmnist tune)" in one_line(result)


def test_a_trained_model_is_not_trained_over(data_dir, tmp_path):
    run = a_run(tmp_path / "run", data_dir)
    (run / "ae").mkdir()
    (run / "ae" / runs.SUMMARY_FILE).write_text("{}")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    result = run_cli("train", "--model", "ae", "--run-dir", run, *TINY)
    assert result.exit_code == 2
    assert one_line(result) == (
        f"fmnist: error: --run-dir {run} already holds a trained ae ({run}/ae/summary.json): "
        "pass a new --run-dir to train again"
    )
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != runs.LOCK_FILE} == before


def test_no_data_and_no_download_names_the_flag_and_the_variable(no_default_data, tmp_path):
    result = run_cli("train", "--model", "ae", "--no-download", "--run-dir", tmp_path / "run", *TINY)
    assert result.exit_code == 2
    line = one_line(result)
    assert "--data-dir" in line and "$FMNIST_DATA" in line and "--no-download" in line
    assert not (tmp_path / "run").exists()  # the run folder it would have made is not left behind


class Payload:
    """Unpickling this would run code: it makes a folder."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_a_checkpoint_carrying_code_is_one_line_and_never_run(data_dir, tmp_path):
    run = a_run(tmp_path / "run", data_dir)
    (run / "ae").mkdir()
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {}, "payload": Payload(marker)}, run / "ae" / runs.LAST)
    result = run_cli("train", "--resume", "--run-dir", run, "--no-progress")
    assert result.exit_code == 2, result.output
    line = one_line(result)
    assert line.startswith(f"fmnist: error: checkpoint {run}/ae/last.ckpt cannot be read (not a plain checkpoint")
    assert "no good checkpoint of the ae is left" in line and "copy it over" not in line
    assert not marker.exists()


def test_code_in_both_checkpoints_names_no_good_one(data_dir, tmp_path):
    run = a_run(tmp_path / "run", data_dir)
    (run / "ae").mkdir()
    marker = tmp_path / "pwned"
    for name in (runs.LAST, runs.BEST):  # whole zip archives both: only torch's unpickler refuses them
        torch.save({"state_dict": {}, "payload": Payload(marker)}, run / "ae" / name)
    result = run_cli("train", "--resume", "--run-dir", run, "--no-progress")
    assert result.exit_code == 2, result.output
    line = one_line(result)
    assert "no good checkpoint of the ae is left" in line
    assert "previous good one" not in line and "copy it over" not in line
    assert not marker.exists()


def test_tune_with_no_trials_says_how_many_the_study_holds(data_dir, tmp_path):
    result = run_cli("tune", "ae", "--trials", 0, "--run-dir", tmp_path / "t", "--no-plots", *TUNE_TINY)
    assert result.exit_code == 0, result.output
    assert "0 trial(s) in the study" in result.output.splitlines()


def test_the_stop_line_starts_on_a_line_of_its_own(capsys, tmp_path):
    from fmnist.errors import Interrupted
    from fmnist.training import run

    with pytest.raises(Interrupted) as stop, run._stop_line("ae", tmp_path, run.Hardware(progress=True)):
        raise Interrupted(signal.SIGTERM)
    assert capsys.readouterr().err == "\n"  # ends the bar's line before `fmnist: SIGTERM: ...`
    assert stop.value.message.startswith(f"SIGTERM: stopped while training the ae; run folder {tmp_path}; resume:")
    with pytest.raises(Interrupted), run._stop_line("ae", tmp_path, run.Hardware(progress=False)):
        raise Interrupted(signal.SIGINT)
    assert capsys.readouterr().err == ""  # no bar, no blank line


@contextmanager
def small_disk(folder: Path, size: str = "2m"):
    """A tmpfs of ``size`` at ``folder`` (root only), unmounted whatever happens."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def left_behind(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name)


@pytest.mark.slow
def test_a_full_disk_during_training_is_one_line_and_the_run_resumes_once_there_is_room(data_dir, tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        run = disk / "run"
        args = ["train", "--model", "ae", "--epochs", "1", "--run-dir", run, *TINY, "--limit-train", "500"]
        result = run_cli(*args)
        assert result.exit_code == 2, result.output
        assert one_line(result) == (
            f"fmnist: error: no space left on the device of run folder {run}; nothing half-written is kept: "
            f"free some space, then resume: fmnist train --resume --run-dir {run} --no-progress"
        )
        assert left_behind(run) == [] and not (run / "ae" / runs.SUMMARY_FILE).exists()
        subprocess.run(["mount", "-o", "remount,size=256m", str(disk)], check=True)
        result = run_cli("train", "--resume", "--run-dir", run, "--no-progress")
        assert result.exit_code == 0, result.output
        assert json.loads((run / "ae" / runs.SUMMARY_FILE).read_text())["epochs"] == 1


@pytest.mark.slow
def test_a_full_disk_during_export_is_one_line_and_keeps_the_old_bundle(tiny_run, toy_bundle, data_dir, tmp_path):
    with small_disk(tmp_path / "disk", "512k") as disk:  # the toy bundle fits, the seed network's does not
        out = disk / "bundle"
        shutil.copytree(toy_bundle, out)
        old = {p.name: p.read_bytes() for p in out.iterdir()}
        result = run_cli("export", "--run-dir", tiny_run, "--out", out, "--data-dir", data_dir, "--kde-points", 400)
        assert result.exit_code == 2, result.output
        assert one_line(result) == (
            f"fmnist: error: no space left on the device of {disk} while writing the bundle {out}; "
            f"the bundle already in {out} is kept whole: free some space and export again"
        )
        assert {p.name: p.read_bytes() for p in out.iterdir()} == old
        assert sorted(p.name for p in disk.iterdir()) == [".bundle.lock", "bundle"]  # no staging folder left

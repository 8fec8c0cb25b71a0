"""Training in processes of its own: stopped by a signal or killed, then resumed; two DDP ranks; a
bad data folder. Apart from tests/integration/test_training.py so that the suite's two workers take
the two halves at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY
from tests.integration.test_training import read_csv, run_cli, without_time


def test_same_seed_gives_the_same_metrics_and_resume_ends_where_a_straight_run_does(data_dir, tmp_path):
    common = ["train", "--model", "ae", "--data-dir", data_dir, "--epochs", "2", *TINY]
    assert run_cli(*common, "--run-dir", tmp_path / "a").exit_code == 0
    assert run_cli(*common, "--run-dir", tmp_path / "b").exit_code == 0
    straight = read_csv(tmp_path / "a" / "ae" / "metrics.csv")
    assert without_time(straight) == without_time(read_csv(tmp_path / "b" / "ae" / "metrics.csv"))

    # the same run, SIGKILLed as soon as its first last.ckpt lands, then resumed
    run = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fmnist.cli", *map(str, common), "--run-dir", str(run)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not (run / "ae" / "last.ckpt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    done = torch.load(run / "ae" / "last.ckpt", map_location="cpu", weights_only=False)["epoch"]
    finished = torch.load(tmp_path / "a" / "ae" / "last.ckpt", map_location="cpu", weights_only=False)["epoch"]
    assert done < finished, "the run finished before it could be killed"
    result = run_cli("train", "--model", "ae", "--data-dir", data_dir, "--run-dir", run, "--resume", "--no-progress")
    assert result.exit_code == 0, result.output
    assert without_time(read_csv(run / "ae" / "metrics.csv")) == without_time(straight)
    assert torch.load(run / "ae" / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] == finished
    result = run_cli("train", "--model", "ae", "--run-dir", run, "--resume", "--lr", "0.5")
    assert result.exit_code == 2 and "--lr" in result.output


@pytest.mark.slow  # a subprocess that imports torch
def test_bad_data_dir_is_a_one_line_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "fmnist.cli", "train", "--model", "ae", "--data-dir", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("train", "--model", "ae", "--data-dir", empty, "--no-download")
    assert result.exit_code == 2
    assert not (empty / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").exists()


def start(args, cwd: Path, **kwargs) -> subprocess.Popen:
    """``fmnist ARGS`` in ``cwd``, in its own process group (DDP's other rank included)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "fmnist.cli", *map(str, args)]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    return subprocess.Popen(cmd, cwd=cwd, env=env, start_new_session=True, **pipes, **kwargs)


def finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """Its output; past ``timeout`` the whole group is killed and the test fails (a hang, not a wait)."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"still running after {timeout} s: {err[-2000:]}")


def stopped_run(tmp_path: Path, signum: int) -> tuple[Path, str, str, int]:
    """A 3-epoch AE run (no --run-dir: runs/<time> below tmp_path) stopped by ``signum`` once its first
    epoch is saved; the run folder, its stdout, its stderr and its exit code."""
    proc = start(["train", "--model", "ae", "--epochs", "3", *TINY], cwd=tmp_path)
    deadline = time.monotonic() + 240
    while not list(tmp_path.glob("runs/*/ae/last.ckpt")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signum)
    out, err = finish(proc, 120)
    (run,) = (tmp_path / "runs").iterdir()
    return run, out, err, proc.returncode


@pytest.mark.slow
def test_sigterm_keeps_the_run_says_how_to_resume_and_resume_alone_continues_it(data_dir, tmp_path):
    run, out, err, code = stopped_run(tmp_path, signal.SIGTERM)
    assert code == 143, err[-3000:]
    assert out.splitlines()[0] == f"run folder: runs/{run.name}"  # said at the start
    assert err.splitlines()[-1] == (
        f"fmnist: SIGTERM: stopped while training the ae; run folder runs/{run.name}; "
        f"resume: fmnist train --resume --run-dir runs/{run.name} --no-progress"
    )
    assert (run / "ae" / "last.ckpt").is_file() and not (run / "ae" / "summary.json").exists()
    # the same command without --run-dir (and with the bars on, to see them named)
    proc = start(["train", "--resume"], cwd=tmp_path)
    out, err = finish(proc, 300)
    assert proc.returncode == 0, err[-3000:]
    assert out.splitlines()[0] == f"resuming runs/{run.name}, the newest unfinished run"
    assert "[1/1] ae, epoch 3/3" in out + err and "[1/1] ae: test set (10000 images)" in out  # bars: either stream
    assert [int(r["epoch"]) for r in read_csv(run / "ae" / "metrics.csv")] == [1, 2, 3]
    assert json.loads((run / "ae" / "summary.json").read_text())["epochs"] == 3


@pytest.mark.slow
def test_ctrl_c_exits_130_with_the_resume_command(data_dir, tmp_path):
    run, _, err, code = stopped_run(tmp_path, signal.SIGINT)
    assert code == 130, err[-3000:]
    assert err.splitlines()[-1].startswith(f"fmnist: SIGINT: stopped while training the ae; run folder runs/{run.name}")
    assert "Traceback" not in err


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_with_an_uneven_batch_count(data_dir, tmp_path):
    """7 batches on 2 ranks: with 4 and 3 the rank a batch short waited for ever in the all-reduce."""
    args = ["train", "--model", "ae", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--epochs", "1"]
    args += ["--arch", "seed"]  # no batch norm: 7 batches leave the medium network's running statistics unsettled
    proc = start([*args, "--limit-train", "2100", "--batch-size", "300", "--lr", "0.01", "--no-progress"], tmp_path)
    _, err = finish(proc, 300)
    assert proc.returncode == 0, err[-3000:]
    (run,) = (tmp_path / "runs").iterdir()  # both ranks in the one folder the first chose
    rows = read_csv(run / "ae" / "metrics.csv")
    assert len(rows) == 1 and float(rows[0]["val_mse"]) < 0.2
    assert json.loads((run / "ae" / "summary.json").read_text())["test_mse"] < 0.2

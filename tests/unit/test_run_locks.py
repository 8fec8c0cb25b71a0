"""One writer per run folder or bundle: an flock that a killed process does not keep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fmnist import runs
from fmnist.errors import ConfigError


def test_a_second_holder_is_refused_naming_the_first_and_the_lock_is_free_after(tmp_path):
    lock = tmp_path / "run" / runs.LOCK_FILE
    with runs.hold_lock(lock, "fmnist train", "run folder R"):
        with pytest.raises(ConfigError) as refused, runs.hold_lock(lock, "fmnist train", "run folder R"):
            pass
        assert str(refused.value) == (
            f"run folder R is in use by process {os.getpid()} (fmnist train): "
            "wait for it to end, or pick another folder"
        )
        with pytest.raises(ConfigError, match="in use by"), runs.hold_lock(lock, "fmnist tune", "R", shared=True):
            pass
    with runs.hold_lock(lock, "fmnist train", "run folder R"):  # released on leaving
        pass


def test_shared_holders_go_together_but_not_with_an_exclusive_one(tmp_path):
    lock = tmp_path / runs.LOCK_FILE
    tune = runs.hold_lock(lock, "fmnist tune", "R", shared=True)
    another_tune = runs.hold_lock(lock, "fmnist tune", "R", shared=True)
    train = runs.hold_lock(lock, "fmnist train", "R")
    with tune, another_tune, pytest.raises(ConfigError, match=r"\(fmnist tune\)"), train:
        pass


def holder(lock: Path) -> subprocess.Popen:
    """Another process holding ``lock`` until killed (it prints once it holds it)."""
    code = (
        "import sys, time\nfrom fmnist import runs\n"
        f"with runs.hold_lock({str(lock)!r}, 'fmnist train', 'R'):\n"
        "    print('held', flush=True)\n    time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_killed_holder_leaves_no_lock_behind(tmp_path):
    lock = tmp_path / runs.LOCK_FILE
    proc = holder(lock)
    try:
        with pytest.raises(ConfigError, match=f"in use by process {proc.pid} "), runs.hold_lock(lock, "x", "R"):
            pass
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while True:
        try:
            with runs.hold_lock(lock, "fmnist train", "R"):
                break
        except ConfigError:
            assert time.monotonic() < deadline, "the lock outlived its process"
            time.sleep(0.05)


def test_the_disk_full_check_sees_through_torchs_wrapping():
    import errno

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos") from None
    except RuntimeError as e:
        wrapped = e
    assert runs.out_of_space(wrapped)  # raised while handling the OSError: its __context__
    assert not runs.out_of_space(RuntimeError("something else"))
    assert not runs.out_of_space(OSError(errno.EACCES, "Permission denied"))


def test_a_model_trained_before_is_not_trained_over(tmp_path):
    run = tmp_path / "run"
    assert runs.trained_before(run, ("ae", "vae")) is None
    (run / "vae").mkdir(parents=True)
    (run / "vae" / runs.LAST).write_bytes(b"x")
    assert "already holds an unfinished vae" in runs.trained_before(run, ("ae", "vae"))
    assert "pass --resume to continue it, or a new --run-dir" in runs.trained_before(run, ("vae",))
    (run / "vae" / runs.SUMMARY_FILE).write_text("{}")
    assert runs.trained_before(run, ("vae",)) == (
        f"--run-dir {run} already holds a trained vae ({run}/vae/summary.json): pass a new --run-dir to train again"
    )


def test_a_damaged_last_checkpoint_with_no_good_one_left_says_to_retrain(tmp_path):
    folder = tmp_path / "run" / "ae"
    folder.mkdir(parents=True)
    (folder / runs.LAST).write_bytes(b"")
    (folder / runs.BEST).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ConfigError) as error:
        runs.resume_checkpoint(tmp_path / "run", "ae")
    message = str(error.value)
    assert "previous good one" not in message and "copy it over" not in message
    assert f"no good checkpoint of the ae is left: delete {folder} to train it again" in message
    assert "or pass a new --run-dir" in message

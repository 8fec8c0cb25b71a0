"""The run folder's layout (fmnist.runs): which run, which data folder, which checkpoint can be read."""

from __future__ import annotations

import json
import os
import time

import pytest
import torch

from fmnist import runs
from fmnist.errors import ConfigError


def make_run(root, name, models=("ae", "classifier", "vae"), finished=(), started=None):
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    runs.write_record(run, data_dir=root / "data", models=models)
    for model in finished:
        (run / model).mkdir()
        runs.write_summary(run, model, {"model": model})
    if started is not None:
        os.utime(run / "run.json", (started, started))
    return run


def test_the_data_folder_is_the_flag_else_fmnist_data_else_the_runs_own_else_the_cache(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FMNIST_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    run = tmp_path / "run"
    run.mkdir()
    assert runs.data_dir_for(run, None) == tmp_path / "cache" / "fmnist"  # nothing recorded yet
    runs.write_record(run, data_dir=tmp_path / "sub" / ".." / "data", models=("ae",))
    assert json.loads((run / "run.json").read_text())["data_dir"] == str(tmp_path / "data")  # absolute, normalised
    assert runs.data_dir_for(run, None) == tmp_path / "data"
    monkeypatch.setenv("FMNIST_DATA", "../shared")  # relative: from the folder the command starts in
    assert runs.data_dir_for(run, None) == tmp_path.parent / "shared"
    assert runs.data_dir_for(run, tmp_path / "flag") == tmp_path / "flag"


def test_a_later_model_adds_to_the_recorded_models(tmp_path):
    run = make_run(tmp_path, "r", models=("classifier",))
    runs.write_record(run, data_dir=tmp_path, models=("vae", "ae"))
    assert runs.read_record(run)["models"] == ["ae", "classifier", "vae"]  # training order


def test_newest_unfinished_run(tmp_path):
    now = time.time()
    make_run(tmp_path, "old-unfinished", finished=("ae",), started=now - 300)
    make_run(tmp_path, "newest-finished", finished=("ae", "classifier", "vae"), started=now)
    make_run(tmp_path, "ae-only-finished", models=("ae",), finished=("ae",), started=now - 10)
    make_run(tmp_path, "unfinished", finished=("ae", "classifier"), started=now - 100)
    assert runs.newest_unfinished(tmp_path) == tmp_path / "unfinished"
    assert runs.is_finished(tmp_path / "ae-only-finished") and not runs.is_finished(tmp_path / "old-unfinished")
    with pytest.raises(ConfigError, match="no unfinished run under .*pass --run-dir"):
        runs.newest_unfinished(tmp_path / "nothing-here")


def test_a_damaged_checkpoint_is_one_line_naming_it_and_the_previous_good_one(tmp_path):
    folder = tmp_path / "run" / "ae"
    folder.mkdir(parents=True)
    torch.save({"epoch": 3, "weights": torch.randn(100, 100)}, folder / "best.ckpt")
    whole = (folder / "best.ckpt").read_bytes()
    assert runs.resume_checkpoint(tmp_path / "run", "ae") is None  # no epoch finished yet: start afresh
    mid = len(whole) // 2  # inside the tensor's bytes
    damaged = {
        "empty": b"",
        "truncated": whole[:mid],
        "damaged member": whole[:mid] + bytes(b ^ 0xFF for b in whole[mid : mid + 100]) + whole[mid + 100 :],
    }
    for reason, content in damaged.items():
        (folder / "last.ckpt").write_bytes(content)
        with pytest.raises(ConfigError) as caught:
            runs.resume_checkpoint(tmp_path / "run", "ae")
        message = str(caught.value)
        assert "\n" not in message and reason in message, message
        assert f"checkpoint {folder / 'last.ckpt'} cannot be read" in message
        assert f"the previous good one is {folder / 'best.ckpt'}" in message
    (folder / "last.ckpt").write_bytes(whole)
    assert runs.resume_checkpoint(tmp_path / "run", "ae") == folder / "last.ckpt"


def test_export_and_report_name_the_missing_or_damaged_best_checkpoint(tmp_path):
    run = tmp_path / "run"
    for model in ("ae", "classifier", "vae"):
        (run / model).mkdir(parents=True)
        torch.save({"epoch": 1}, run / model / "best.ckpt")
    assert set(runs.best_checkpoints(run)) == {"ae", "classifier", "vae"}
    (run / "vae" / "best.ckpt").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"vae/best.ckpt cannot be read \(empty\)"):
        runs.best_checkpoints(run)
    (run / "vae" / "best.ckpt").unlink()
    with pytest.raises(ConfigError, match="vae/best.ckpt not found: the report needs"):
        runs.best_checkpoints(run, needed_by="the report")


def test_latest_run_is_the_one_with_the_newest_ae(tmp_path):
    for name, age in (("a", 100), ("b", 10), ("c", 50)):
        (tmp_path / name / "ae").mkdir(parents=True)
        (tmp_path / name / "ae" / "best.ckpt").write_bytes(b"x")
        os.utime(tmp_path / name / "ae" / "best.ckpt", (time.time() - age,) * 2)
    assert runs.latest_run(tmp_path) == tmp_path / "b"
    with pytest.raises(ConfigError, match="no trained run"):
        runs.latest_run(tmp_path / "none")


def test_a_run_with_only_the_ae_names_the_models_it_lacks(tmp_path):
    run = tmp_path / "run"
    (run / "ae").mkdir(parents=True)
    torch.save({"epoch": 1}, run / "ae" / "best.ckpt")
    with pytest.raises(ConfigError) as error:
        runs.best_checkpoints(run, needed_by="the report")
    message = str(error.value)
    assert "all three" not in message
    assert "the report needs a run with the ae, classifier, vae models; this one lacks the classifier, vae" in message
    assert f"(fmnist train --model classifier --run-dir {run})" in message

"""``fmnist tune`` on a tiny slice of the real data: one epoch on 300 images per trial."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from fmnist.cli.app import app

TINY = ["--limit-train", "300", "--batch-size", "100", "--epochs", "1", "--no-progress"]
AE_RANGES = ["--latent-dim-range", "2", "4", "--lr-range", "1e-4", "1e-3", "--l1-range", "1e-6", "1e-5"]


def run_cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def study_of(run_dir: Path, name: str = "fmnist-ae") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir / 'study.db'}")


def sqlite_trials(db: Path) -> dict[int, tuple[str, bool]]:
    """Trial number -> (state, has a heartbeat), read straight from the database another process writes."""
    if not db.exists():
        return {}
    query = (
        "SELECT t.number, t.state, h.heartbeat IS NOT NULL FROM trials t "
        "LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id"
    )
    with sqlite3.connect(db, timeout=30) as con:
        try:
            return {n: (state, bool(beat)) for n, state, beat in con.execute(query)}
        except sqlite3.OperationalError:  # tables not created yet
            return {}


def tune_process(data_dir: Path, run_dir: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "fmnist.cli", "tune", "ae", "--data-dir", str(data_dir), "--run-dir", str(run_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    return subprocess.Popen([*cmd, *TINY, "--no-plots", *args], env=env, **pipes)


@pytest.fixture(scope="module")
def ae_study(tmp_path_factory, data_dir) -> Path:
    """Three AE trials in narrowed ranges, the study in RUN/study.db."""
    run = tmp_path_factory.mktemp("tune") / "ae"
    result = run_cli("tune", "ae", "--trials", 3, *AE_RANGES, "--data-dir", data_dir, "--run-dir", run, *TINY)
    assert result.exit_code == 0, result.output
    assert "3 complete trial(s) in the study" in result.output
    return run


def test_trials_stay_in_their_ranges_and_score_the_best_validation_epoch(ae_study):
    study = study_of(ae_study)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert [t.number for t in trials] == [0, 1, 2]
    for t in trials:
        p = t.params
        assert set(p) == {"latent_dim", "lr", "l1", "l2"}
        assert isinstance(p["latent_dim"], int) and 2 <= p["latent_dim"] <= 4
        assert 1e-4 <= p["lr"] <= 1e-3 and 1e-6 <= p["l1"] <= 1e-5 and 1e-6 <= p["l2"] <= 1e-3  # l2: default range
        folder = Path(t.user_attrs["folder"])
        assert folder == (ae_study / f"trial-{t.number:04d}").resolve()
        assert json.loads((folder / "config.json").read_text())["latent_dim"] == p["latent_dim"]
        with open(folder / "ae" / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 1  # --epochs 1
        assert t.value == pytest.approx(float(rows[0]["val_mse"])) == t.user_attrs["val_mse"]
        assert t.user_attrs["best_epoch"] == 1 and (folder / "ae" / "best.ckpt").is_file()  # counted from 1
    assert study.user_attrs == {"target": "ae", "fixed": {}}
    assert json.loads((ae_study / "best_params.json").read_text()) == study.best_trial.params


def test_plots_are_written_beside_the_study(ae_study):
    for name in ("history", "importances", "slice"):
        png = ae_study / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, name


def test_best_params_retrain_with_params_or_from_study(ae_study, data_dir, tmp_path):
    best = json.loads((ae_study / "best_params.json").read_text())
    common = ["train", "--model", "ae", "--data-dir", data_dir, *TINY]
    result = run_cli(*common, "--params", ae_study / "best_params.json", "--run-dir", tmp_path / "p")
    assert result.exit_code == 0, result.output
    result = run_cli(*common, "--from-study", "--storage", ae_study, "--run-dir", tmp_path / "s")
    assert result.exit_code == 0, result.output
    for run in ("p", "s"):
        config = json.loads((tmp_path / run / "config.json").read_text())
        assert {k: config[k] for k in best} == best
        assert config["epochs"] == 1
    result = run_cli(*common, "--from-study", "--storage", tmp_path / "none.db")
    assert result.exit_code == 2 and "no such study database" in result.output
    assert not (tmp_path / "none.db").exists()


def test_resuming_adds_trials_and_a_classifier_study_pins_the_encoder(ae_study, data_dir, tmp_path):
    # rerunning with the same run folder resumes the study: 3 + 1 trials, the first three untouched
    before = {t.number: (t.params, t.value) for t in study_of(ae_study).trials}
    result = run_cli("tune", "ae", "--trials", 1, *AE_RANGES, "--data-dir", data_dir, "--run-dir", ae_study, *TINY)
    assert result.exit_code == 0, result.output
    after = {t.number: (t.params, t.value) for t in study_of(ae_study).trials}
    assert len(after) == 4 and {n: after[n] for n in before} == before

    ae_run = ae_study / "trial-0000"  # a trial folder is a run folder
    latent_dim = json.loads((ae_run / "config.json").read_text())["latent_dim"]
    args = ["tune", "classifier", "--ae-run", ae_run, "--head-width-range", 16, 24, "--pruner", "none"]
    result = run_cli(*args, "--trials", 2, "--data-dir", data_dir, "--run-dir", tmp_path, *TINY)
    assert result.exit_code == 0, result.output
    study = study_of(tmp_path, "fmnist-classifier")
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 2
    for t in trials:
        assert 16 <= t.params["head_width"] <= 24
        assert 0.0 <= t.user_attrs["val_acc"] <= 1.0 and t.value == t.user_attrs["val_loss"]
        assert json.loads((Path(t.user_attrs["folder"]) / "config.json").read_text())["latent_dim"] == latent_dim
    best = json.loads((tmp_path / "best_params.json").read_text())
    arch = json.loads((Path(trials[0].user_attrs["folder"]) / "config.json").read_text())["arch"]  # the AE's
    assert best == {"latent_dim": latent_dim, "arch": arch, "head_width": study.best_trial.params["head_width"]}


def test_pruning_goes_through_lightnings_trainer(data_dir, tmp_path):
    """Optuna's Lightning callback stops a trial that is worse than the median at its first epoch."""
    from optuna.distributions import FloatDistribution

    from fmnist.config import DEFAULTS
    from fmnist.training import tuning
    from fmnist.training.run import Hardware

    config = DEFAULTS.updated(limit_train=300, batch_size=100, epochs=3)
    splits = tuning.validation_splits(data_dir, config, download=False)
    assert len(splits.test) == 0 and len(splits.train) == 300  # the test set is never loaded
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    dist = FloatDistribution(1e-5, 1e-3)
    # an earlier trial that reached val_mse 0.0 at epoch 0: any real trial is worse, so pruned there
    earlier = optuna.trial.create_trial(
        params={"lr": 1e-4}, distributions={"lr": dist}, value=0.0, intermediate_values={0: 0.0}
    )
    study.add_trial(earlier)
    space = (tuning.Param("lr", 1e-5, 1e-3, log=False),)
    objective = tuning.make_objective(
        tuning.TARGETS["ae"], space, config, splits, tmp_path, Hardware(accelerator="cpu", progress=False)
    )
    study.optimize(objective, n_trials=1)
    pruned = study.trials[1]
    # reported at epoch 0 and stopped there: an unpruned trial would report epochs 0, 1 and 2
    assert pruned.state == TrialState.PRUNED and list(pruned.intermediate_values) == [0]
    assert pruned.intermediate_values[0] > 0.01


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["vae"], "TARGET must be one of ae, classifier"),
        (["ae", "--lr-range", "1e-3", "1e-5"], "LOW must be below HIGH"),
        (["ae", "--latent-dim-range", "0", "4"], "must start above 0"),
        (["ae", "--head-width-range", "8", "16"], "is for `fmnist tune classifier`"),
        (["ae", "--lr", "0.01"], "--lr is searched"),
        (["classifier"], "needs --ae-run"),
        (["ae", "--storage", "bogus://nowhere/db"], "--storage bogus://nowhere/db: cannot open it"),
        (["ae", "--storage", "not a url://x"], "not a database URL"),
        (["ae", "--pruner", "hyperband"], "--pruner must be one of median, none"),
    ],
)
def test_bad_input_is_a_one_line_error(args, message, data_dir, tmp_path):
    result = run_cli("tune", *args, "--data-dir", data_dir, "--run-dir", tmp_path, "--trials", 1, *TINY)
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and message in result.output
    assert not list(tmp_path.glob("trial-*"))


def test_a_killed_study_resumes_with_its_finished_trials_and_the_killed_one_failed(data_dir, tmp_path):
    run = tmp_path / "k"
    proc = tune_process(data_dir, run, "--trials", "5", "--epochs", "2", "--heartbeat", "1", "--pruner", "none")
    deadline, killed = time.monotonic() + 120, None
    try:
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            states = sqlite_trials(run / "study.db")
            done = sorted(n for n, (s, _) in states.items() if s == "COMPLETE")
            # a trial that has just started (its heartbeat thread running): far from its end
            running = [n for n, (s, beat) in states.items() if s == "RUNNING" and beat]
            if done and running and running[0] > done[-1]:
                killed = running[0]
            time.sleep(0.05)
    finally:
        proc.kill()
        out, err = proc.communicate()
    assert killed is not None and proc.returncode == -9, f"no RUNNING trial to kill: {out}{err[-3000:]}"
    before = {t.number: (t.params, t.value) for t in study_of(run).get_trials(states=(TrialState.COMPLETE,))}
    assert sorted(before) == done and study_of(run).trials[killed].state == TrialState.RUNNING
    # past the grace period (2 heartbeats) of the killed trial, as SQLite's clock tells it: its
    # now() has whole seconds, so a kill just after a heartbeat needs a third second to count
    time.sleep(3.5)
    args = ["tune", "ae", "--trials", 1, "--heartbeat", 1, "--no-plots", "--data-dir", data_dir, "--run-dir", run]
    result = run_cli(*args, *TINY)
    assert result.exit_code == 0, result.output
    assert f"marked trial(s) {killed} failed" in result.output
    trials = study_of(run).trials
    assert trials[killed].state == TrialState.FAIL
    assert {t.number: (t.params, t.value) for t in trials if t.number in before} == before
    assert [t.state for t in trials[killed + 1 :]] == [TrialState.COMPLETE]
    assert len(trials) == len(before) + 2


def test_two_processes_share_one_sqlite_study(data_dir, tmp_path):
    run = tmp_path / "shared"
    procs = [tune_process(data_dir, run, "--trials", "2") for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    # each process prints "trial N: complete ..." for the trials it ran
    ran = [{int(line.split()[1][:-1]) for line in out.splitlines() if line.startswith("trial ")} for out, _ in outs]
    assert len(ran[0]) == len(ran[1]) == 2 and not ran[0] & ran[1]
    trials = study_of(run).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3] == sorted(ran[0] | ran[1])
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert json.loads((run / "best_params.json").read_text()) == study_of(run).best_trial.params

"""Training through the CLI on a small slice of the real data (a few seconds per run)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fmnist.cli.app import app
from tests.conftest import TINY


def run_cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def without_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in rows]


def test_run_folder_layout(tiny_run, data_dir):
    assert json.loads((tiny_run / "config.json").read_text())["epochs"] == 3
    # what is not a hyper-parameter: export, report and --resume find the data without --data-dir
    record = json.loads((tiny_run / "run.json").read_text())
    assert record == {"data_dir": str(data_dir), "models": ["ae", "head", "classifier", "vae"]}
    for model in ("ae", "head", "classifier", "vae"):
        for name in ("best.ckpt", "last.ckpt", "metrics.csv", "summary.json"):
            assert (tiny_run / model / name).is_file(), (model, name)
    for model in ("head", "classifier"):
        for name in ("confusion_matrix.csv", "confusion_matrix.png"):
            assert (tiny_run / model / name).stat().st_size > 500
    for name in ("samples.png", "reconstructions.png"):
        assert (tiny_run / "vae" / name).stat().st_size > 500


def test_metrics_csv_has_one_row_per_epoch_and_the_loss_falls(tiny_run):
    rows = read_csv(tiny_run / "ae" / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]  # counted from 1, as the progress bar counts
    assert {"train_loss", "val_loss", "val_mse", "lr", "epoch_time_s"} <= set(rows[0])
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert float(rows[-1]["val_mse"]) < float(rows[0]["val_mse"])


@pytest.mark.parametrize(("model", "monitor", "pick"), [("ae", "val_mse", min), ("classifier", "val_acc", max)])
def test_best_checkpoint_is_the_best_validation_epoch(tiny_run, model, monitor, pick):
    """The AE by validation MSE, the classifier by validation accuracy (not loss)."""
    rows = read_csv(tiny_run / model / "metrics.csv")
    best = pick(rows, key=lambda r: float(r[monitor]))
    summary = json.loads((tiny_run / model / "summary.json").read_text())
    assert summary["best_epoch"] == int(best["epoch"]) and summary[monitor] == pytest.approx(float(best[monitor]))
    saved = torch.load(tiny_run / model / "best.ckpt", map_location="cpu", weights_only=False)
    assert saved["epoch"] + 1 == int(best["epoch"])  # Lightning's own counter starts at 0; what users read at 1


def test_checkpoint_reload_reproduces_the_test_metric(tiny_run, data_dir):
    from fmnist.training.data import load_official
    from fmnist.training.evaluate import ae_metrics
    from fmnist.training.modules import load_module

    summary = json.loads((tiny_run / "ae" / "summary.json").read_text())
    module = load_module("ae", str(tiny_run / "ae" / "best.ckpt"))
    assert module.config.limit_train == 2000  # rebuilt from the saved config
    test = load_official(data_dir, train=False, download=False)
    assert ae_metrics(module.model, test)["mse"] == summary["test_mse"]
    x = torch.rand(3, 1, 28, 28)
    again = load_module("ae", str(tiny_run / "ae" / "best.ckpt"))
    assert torch.equal(module.model.eval()(x), again.model.eval()(x))


def test_classifier_summary_and_confusion_matrix(tiny_run):
    s = json.loads((tiny_run / "classifier" / "summary.json").read_text())
    assert 0.3 < s["test_accuracy"] <= 1.0  # 10 classes: chance is 0.1
    assert len(s["test_per_class_accuracy"]) == 10
    rows = list(csv.reader((tiny_run / "classifier" / "confusion_matrix.csv").read_text().splitlines()))
    assert rows[0][1:] == [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]
    for row in rows[1:]:
        assert sum(float(v) for v in row[1:]) == pytest.approx(1.0, abs=1e-3)


def test_the_head_keeps_the_ae_encoder_and_the_classifier_fine_tunes_it(tiny_run):
    def state(model: str, name: str = "last.ckpt") -> dict:
        return torch.load(tiny_run / model / name, map_location="cpu", weights_only=False)["state_dict"]

    ae, head, clf = state("ae", "best.ckpt"), state("head"), state("classifier")
    enc = {k: v for k, v in ae.items() if k.startswith("model.encoder.")}
    assert enc and all(torch.equal(v, head[k]) for k, v in enc.items())
    assert not all(torch.equal(v, clf[k]) for k, v in enc.items())
    config = torch.load(tiny_run / "head" / "last.ckpt", map_location="cpu", weights_only=False)["hyper_parameters"]
    assert (config["config"]["unfreeze"], config["config"]["augment"]) == (False, False)


def test_vae_summary_terms(tiny_run):
    s = json.loads((tiny_run / "vae" / "summary.json").read_text())
    assert s["test_elbo"] == pytest.approx(s["test_rec"] - s["test_kl"], rel=1e-6)
    assert s["test_kl"] > 0
    assert s["test_log_px"] >= s["test_elbo"] - 0.5
    rows = read_csv(tiny_run / "vae" / "metrics.csv")
    assert {"train_elbo", "train_rec", "train_kl", "val_elbo", "val_rec", "val_kl"} <= set(rows[0])


def test_unfreeze_changes_the_encoder(tiny_run, data_dir, tmp_path):
    result = run_cli(
        "train",
        "--model",
        "classifier",
        "--ae-run",
        tiny_run,
        "--data-dir",
        data_dir,
        "--run-dir",
        tmp_path / "u",
        "--epochs",
        "1",
        "--unfreeze",
        *TINY,
    )
    assert result.exit_code == 0, result.output
    ae = torch.load(tiny_run / "ae" / "best.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    clf = torch.load(tmp_path / "u" / "classifier" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert not torch.equal(ae["model.encoder.0.weight"], clf["model.encoder.0.weight"])


def test_a_classifier_takes_the_latent_size_and_arch_of_its_ae(data_dir, tmp_path):
    common = ["--data-dir", data_dir, "--epochs", "1", *TINY, "--limit-train", "300"]
    ae_args = ["train", "--model", "ae", "--arch", "wide", "--latent-dim", "4", "--run-dir", tmp_path / "ae"]
    assert run_cli(*ae_args, *common).exit_code == 0
    clf_args = ["train", "--model", "classifier", "--ae-run", tmp_path / "ae", "--unfreeze", *common]
    result = run_cli(*clf_args, "--run-dir", tmp_path / "clf")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "clf" / "config.json").read_text())
    assert (config["arch"], config["latent_dim"], config["unfreeze"]) == ("wide", 4, True)
    assert 0.0 <= json.loads((tmp_path / "clf" / "classifier" / "summary.json").read_text())["test_accuracy"] <= 1.0

    # into the AE's own run folder, after another model rewrote its config.json: the checkpoint decides
    (tmp_path / "ae" / "config.json").write_text(json.dumps({"arch": "seed", "latent_dim": 8}))
    result = run_cli("train", "--model", "classifier", "--run-dir", tmp_path / "ae", *common)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ae" / "classifier" / "best.ckpt").is_file()

    result = run_cli(*clf_args, "--latent-dim", "3", "--run-dir", tmp_path / "clash")
    assert result.exit_code == 2
    assert "--latent-dim 3 does not match the AE" in result.stderr
    assert "(latent_dim 4); drop --latent-dim" in result.stderr
    assert result.stderr.count("\n") == 1


def test_resume_without_a_run_is_an_error(tmp_path):
    result = run_cli("train", "--resume", "--run-dir", tmp_path / "none")
    assert result.exit_code == 2


def test_a_damaged_last_checkpoint_is_one_line_naming_it_and_the_previous_good_one(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "ae" / "summary.json").unlink()
    (run / "ae" / "last.ckpt").write_bytes(b"")  # as SIGKILL during a copy from another filesystem left it
    result = run_cli("train", "--model", "ae", "--resume", "--run-dir", run, "--no-progress")
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"fmnist: error: checkpoint {run}/ae/last.ckpt cannot be read (empty); the previous good one is "
        f"{run}/ae/best.ckpt: copy it over last.ckpt to resume from that epoch, or delete last.ckpt to train "
        "the ae again\n"
    )

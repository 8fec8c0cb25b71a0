"""``fmnist train``: run folders, the Trainer, test metrics and the closing summary."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from fmnist.config import ENCODER_SHAPE, Config, default_data_dir
from fmnist.errors import ConfigError, DataError
from fmnist.training import data as data_mod
from fmnist.training import evaluate, figures, models
from fmnist.training.callbacks import EpochSeed, MetricsCSV
from fmnist.training.modules import MODULES, load_module

CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class Hardware:
    """Passed through to Lightning's Trainer."""

    accelerator: str = "auto"
    devices: str | int = "auto"
    strategy: str = "auto"
    precision: str | None = None
    progress: bool = True


class InMemoryData(L.LightningDataModule):
    """Loaders are built here, after the Trainer knows this process's rank (DDP shards train)."""

    def __init__(self, splits: data_mod.Splits, config: Config):
        super().__init__()
        self.splits, self.config = splits, config

    def train_dataloader(self):
        t = self.trainer
        return data_mod.batch_loader(
            self.splits.train, self.config.batch_size, self.config.seed, True, t.global_rank, t.world_size
        )

    def val_dataloader(self):
        return data_mod.batch_loader(self.splits.val, self.config.batch_size, self.config.seed, False)


def quiet_lightning() -> None:
    """Keep Lightning's start-up banners (accelerator lines, tips) out of the user's terminal."""
    import logging
    import warnings

    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")


def new_run_dir() -> Path:
    return Path("runs") / time.strftime("%Y%m%d-%H%M%S")


def resolve_config(run_dir: Path, base: Config, overrides: dict[str, Any], resume: bool) -> Config:
    """A fresh run takes base + flags; a resumed run takes its saved config unchanged, so it ends
    where the uninterrupted run would have (the lr schedule depends on --epochs, for one)."""
    if not resume:
        return base.updated(**overrides)
    saved = Config.from_json(run_dir / CONFIG_FILE)
    changed = sorted(k for k, v in overrides.items() if v is not None and getattr(saved, k) != v)
    if changed:
        raise ConfigError(
            f"--resume continues the run's saved config; drop the changed flag(s): "
            f"{', '.join('--' + k.replace('_', '-') for k in changed)}"
        )
    return saved


def pin_encoder_shape(ae_checkpoint: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """The AE's latent_dim and arch (from its checkpoint), which a classifier on its encoder must
    share; a flag that sets one of them differently is a ConfigError naming the flag to drop."""
    ae = load_module("ae", str(ae_checkpoint)).config
    shape = {key: getattr(ae, key) for key in ENCODER_SHAPE}
    for key, value in shape.items():
        if overrides.get(key) is not None and overrides[key] != value:
            flag = "--" + key.replace("_", "-")
            raise ConfigError(
                f"{flag} {overrides[key]} does not match the AE in {ae_checkpoint} ({key} {value}); drop {flag}"
            )
    return shape


def _devices(value: str | int) -> str | int:
    return int(value) if isinstance(value, str) and value.isdigit() else value


def make_trainer(
    config: Config, folder: Path, module_cls, hardware: Hardware, callbacks: tuple[L.Callback, ...] = ()
) -> L.Trainer:
    """The Trainer every run uses; ``callbacks`` are extra ones (e.g. Optuna's pruning callback)."""
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=folder,
        filename="best",
        monitor=module_cls.monitor,
        mode=module_cls.monitor_mode,
        save_last=True,
        enable_version_counter=False,
    )
    kwargs = {} if hardware.precision is None else {"precision": hardware.precision}
    return L.Trainer(
        max_epochs=config.epochs,
        accelerator=hardware.accelerator,
        devices=_devices(hardware.devices),
        strategy=hardware.strategy,
        callbacks=[MetricsCSV(folder / "metrics.csv"), EpochSeed(config.seed), checkpoint, *callbacks],
        logger=False,
        enable_progress_bar=hardware.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # EpochBatches shards by rank itself
        default_root_dir=folder,
        **kwargs,
    )


def best_row(folder: Path, monitor: str, mode: str) -> dict[str, float]:
    """The metrics.csv row of the best epoch by ``monitor`` (the epoch best.ckpt holds), as numbers."""
    import csv

    with open(folder / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    pick = min if mode == "min" else max
    row = pick(rows, key=lambda r: float(r[monitor]))
    return {k: int(v) if k == "epoch" else float(v) for k, v in row.items() if v != ""}


def test_metrics(model_name: str, module, splits: data_mod.Splits, folder: Path) -> dict:
    """Final metrics on the official test set, plus each model's figures in its folder."""
    model = module.model
    if model_name == "ae":
        return {"test_" + k: v for k, v in evaluate.ae_metrics(model, splits.test).items()}
    if model_name in ("head", "classifier"):
        m = evaluate.classifier_metrics(model, splits.test)
        figures.save_confusion(m["confusion"], folder)
        return {"test_accuracy": m["accuracy"], "test_per_class_accuracy": m["per_class_accuracy"]}
    m = evaluate.vae_metrics(model, splits.test, module.config.iw_samples, module.config.seed)
    figures.save_vae_grids(model, splits.test, folder, module.config.seed)
    return {"test_" + k: v for k, v in m.items()}


def _require_ae(ae_checkpoint: Path | None, model_name: str) -> Path:
    if ae_checkpoint is None or not ae_checkpoint.is_file():
        raise ConfigError(
            f"the {model_name} needs a trained AE: {ae_checkpoint} not found (train --model ae first, or pass --ae-run)"
        )
    return ae_checkpoint


def _start_from_ae(model_name: str, module, ae_checkpoint: Path | None) -> None:
    """Copy the trained AE's weights in: its encoder into the classifiers; its trunk, last encoder
    layer (as the mean head) and decoder into a VAE of the same shape when ``vae_from_ae``."""
    if model_name in ("head", "classifier"):
        ae = load_module("ae", str(_require_ae(ae_checkpoint, model_name)))
        module.model.encoder.load_state_dict(ae.model.encoder.state_dict())
        return
    if not module.config.vae_from_ae or ae_checkpoint is None or not ae_checkpoint.is_file():
        return
    ae = load_module("ae", str(ae_checkpoint))
    if all(getattr(ae.config, k) == getattr(module.config, k) for k in ENCODER_SHAPE):
        models.start_vae_from_ae(module.model, ae.model)


def fit_model(
    model_name: str,
    config: Config,
    splits: data_mod.Splits,
    folder: Path,
    *,
    ae_checkpoint: Path | None,
    hardware: Hardware,
    ckpt_path: str | None = None,
    callbacks: tuple[L.Callback, ...] = (),
) -> L.Trainer:
    """Seed, build and fit one model in ``folder`` (the classifier starts from the AE's encoder);
    shared by ``fmnist train`` and each ``fmnist tune`` trial."""
    L.seed_everything(config.seed, verbose=False)
    module_cls = MODULES[model_name]
    module = module_cls(config.to_dict())
    if model_name != "ae" and (ckpt_path is None or model_name == "head"):  # the head encodes before resuming
        _start_from_ae(model_name, module, ae_checkpoint)
    if model_name == "head":  # its encoder never changes: train on its latents, computed once
        encoder = module.model.encoder
        splits = data_mod.Splits(
            data_mod.encode_split(encoder, splits.train), data_mod.encode_split(encoder, splits.val), splits.test
        )
    trainer = make_trainer(config, folder, module_cls, hardware, callbacks)
    trainer.fit(module, datamodule=InMemoryData(splits, config), ckpt_path=ckpt_path)
    if trainer.interrupted:
        raise KeyboardInterrupt
    return trainer


def train_one(
    model_name: str,
    config: Config,
    splits: data_mod.Splits,
    run_dir: Path,
    *,
    ae_checkpoint: Path,
    resume: bool,
    hardware: Hardware,
) -> dict | None:
    config = config.for_model(model_name)
    folder = run_dir / model_name
    folder.mkdir(parents=True, exist_ok=True)
    last = folder / "last.ckpt"
    ckpt_path = str(last) if resume and last.is_file() else None
    start = time.perf_counter()
    trainer = fit_model(
        model_name, config, splits, folder, ae_checkpoint=ae_checkpoint, ckpt_path=ckpt_path, hardware=hardware
    )
    if not trainer.is_global_zero:
        return None
    module_cls = MODULES[model_name]
    best = load_module(model_name, str(folder / "best.ckpt"))
    row = best_row(folder, module_cls.monitor, module_cls.monitor_mode)
    summary = {
        "model": model_name,
        "best_epoch": row["epoch"],
        module_cls.monitor: row[module_cls.monitor],
        **test_metrics(model_name, best, splits, folder),
        "wall_time_s": round(time.perf_counter() - start, 2),
        "epochs": config.epochs,
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def format_summary(s: dict) -> str:
    names = ("val_mse", "val_loss", "val_acc", "test_mse", "test_accuracy", "test_elbo", "test_log_px")
    keys = [k for k in names if k in s]
    numbers = ", ".join(f"{k} {s[k]:.4f}" for k in keys)
    return f"{s['model']}: best epoch {s['best_epoch']}, {numbers}, wall {s['wall_time_s']:.1f} s"


def train_models(
    models: tuple[str, ...],
    base: Config,
    overrides: dict[str, Any],
    *,
    data_dir: Path | None,
    run_dir: Path | None,
    ae_run: Path | None,
    resume: bool,
    download: bool,
    hardware: Hardware,
) -> list[dict]:
    if resume and run_dir is None:
        raise ConfigError("--resume needs --run-dir: the run folder to continue")
    if resume and not (run_dir / CONFIG_FILE).is_file():
        raise ConfigError(f"--resume: {run_dir / CONFIG_FILE} not found, nothing to resume")
    if data_dir is not None and not Path(data_dir).exists():
        raise DataError(f"--data-dir {data_dir} does not exist")
    run_dir = Path(run_dir) if run_dir is not None else new_run_dir()
    ae_checkpoint = Path(ae_run or run_dir) / "ae" / "best.ckpt"
    if "ae" not in models and not resume and ae_checkpoint.is_file():  # (missing: _attach_encoder says so)
        overrides = {**overrides, **pin_encoder_shape(ae_checkpoint, overrides)}
    config = resolve_config(run_dir, base, overrides, resume)
    splits = data_mod.load_splits(
        data_dir or default_data_dir(),
        val_fraction=config.val_fraction,
        seed=config.seed,
        limit=config.limit_train,
        download=download,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    torch.set_float32_matmul_precision("high")
    quiet_lightning()
    summaries = []
    for name in models:
        summary = train_one(
            name, config, splits, run_dir, ae_checkpoint=ae_checkpoint, resume=resume, hardware=hardware
        )
        if summary is not None:
            print(format_summary(summary))
            summaries.append(summary)
    if summaries:
        print(f"run folder: {run_dir}")
    return summaries

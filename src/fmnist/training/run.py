"""``fmnist train``: run folders, the Trainer, test metrics and the closing summary."""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from fmnist import runs
from fmnist.config import ENCODER_SHAPE, MODELS, Config
from fmnist.errors import ConfigError, DataError, Interrupted
from fmnist.training import data as data_mod
from fmnist.training import evaluate, figures, models
from fmnist.training.callbacks import EpochSeed, MetricsCSV, ModelProgressBar
from fmnist.training.checkpoint_io import AtomicCheckpointIO
from fmnist.training.modules import MODULES, load_module
from fmnist.training.signals import stop_on_signals

# DDP's other ranks re-run this command; this hands them the run folder rank 0 chose
RUN_DIR_ENV = "FMNIST_DDP_RUN_DIR"


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
    # "Received SIGTERM": the one line fmnist prints on a signal says it, with how to resume
    logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=r".*exists and is not empty.*")  # a resumed run's own folder
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")  # the head's frozen encoder, on purpose


def resolve_config(run_dir: Path, base: Config, overrides: dict[str, Any], resume: bool) -> Config:
    """A fresh run takes base + flags; a resumed run takes its saved config unchanged, so it ends
    where the uninterrupted run would have (the lr schedule depends on --epochs, for one)."""
    if not resume:
        return base.updated(**overrides)
    saved = Config.from_json(run_dir / runs.CONFIG_FILE, saved=True)
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
        callbacks=[MetricsCSV(folder / runs.METRICS_FILE), EpochSeed(config.seed), checkpoint, *callbacks],
        plugins=[AtomicCheckpointIO()],
        logger=False,
        enable_progress_bar=hardware.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # EpochBatches shards by rank itself
        default_root_dir=folder,
        **kwargs,
    )


def test_metrics(model_name: str, module, splits: data_mod.Splits, folder: Path, label: str = "") -> dict:
    """Final metrics on the official test set, plus each model's figures in its folder; with a
    ``label``, a progress bar over the VAE's batches (its log p(x) takes minutes on a CPU)."""
    model = module.model
    if model_name == "ae":
        return {"test_" + k: v for k, v in evaluate.ae_metrics(model, splits.test).items()}
    if model_name in ("head", "classifier"):
        m = evaluate.classifier_metrics(model, splits.test)
        figures.save_confusion(m["confusion"], folder, model_name)
        return {"test_accuracy": m["accuracy"], "test_per_class_accuracy": m["per_class_accuracy"]}
    progress = None
    if label:
        from tqdm import tqdm

        progress = lambda batches: tqdm(batches, desc=f"{label}, test set", leave=False)  # noqa: E731
    m = evaluate.vae_metrics(model, splits.test, module.config.iw_samples, module.config.seed, progress)
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
    label: str = "",
) -> dict | None:
    """Fit one model (``label``, e.g. ``[2/3] classifier``, names its progress), then its test metrics."""
    config = config.for_model(model_name)
    folder = runs.model_dir(run_dir, model_name)
    folder.mkdir(parents=True, exist_ok=True)
    last = runs.resume_checkpoint(run_dir, model_name) if resume else None
    if last is not None:  # the model continues as it began (its epochs, say, even if the defaults moved)
        config = load_module(model_name, str(last)).config
    start = time.perf_counter()
    trainer = fit_model(
        model_name,
        config,
        splits,
        folder,
        ae_checkpoint=ae_checkpoint,
        ckpt_path=None if last is None else str(last),
        hardware=hardware,
        callbacks=(ModelProgressBar(label),) if hardware.progress else (),
    )
    if not trainer.is_global_zero:
        return None
    module_cls = MODULES[model_name]
    best = load_module(model_name, str(runs.checkpoint(run_dir, model_name)))
    row = runs.best_row(folder, module_cls.monitor, module_cls.monitor_mode)
    print(f"{label or model_name}: test set ({len(splits.test)} images), best.ckpt of epoch {row['epoch']}", flush=True)
    summary = {
        "model": model_name,
        "best_epoch": row["epoch"],
        module_cls.monitor: row[module_cls.monitor],
        **test_metrics(model_name, best, splits, folder, label if hardware.progress else ""),
        "wall_time_s": round(time.perf_counter() - start, 2),
        "epochs": config.epochs,
    }
    runs.write_summary(run_dir, model_name, summary)
    return summary


def format_summary(s: dict) -> str:
    names = ("val_mse", "val_loss", "val_acc", "test_mse", "test_accuracy", "test_elbo", "test_log_px")
    keys = [k for k in names if k in s]
    numbers = ", ".join(f"{k} {s[k]:.4f}" for k in keys)
    return f"{s['model']}: best epoch {s['best_epoch']}, {numbers}, wall {s['wall_time_s']:.1f} s"


def _first_process() -> bool:
    """False in the ranks DDP starts besides the first (they re-run this command)."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


@contextmanager
def _shared_run_dir(run_dir: Path) -> Iterator[None]:
    previous = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(run_dir)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = previous


def resume_command(run_dir: Path, hardware: Hardware) -> str:
    """The command that continues ``run_dir``: its config, data folder and models are recorded
    there, so only the hardware flags that differ from the defaults are repeated."""
    parts = ["fmnist", "train", "--resume", "--run-dir", str(run_dir)]
    for field in dataclasses.fields(Hardware):
        value = getattr(hardware, field.name)
        if field.name == "progress":
            parts += [] if value else ["--no-progress"]
        elif value != field.default:
            parts += ["--" + field.name, str(value)]
    return shlex.join(parts)


def _resolve_run(run_dir: Path | None, resume: bool) -> Path:
    """--run-dir; else the folder DDP's first rank chose; else, with --resume, the newest unfinished
    run; else a new runs/<time>."""
    if run_dir is not None:
        run_dir = Path(run_dir)
    elif os.environ.get(RUN_DIR_ENV):
        run_dir = Path(os.environ[RUN_DIR_ENV])
    elif resume:
        run_dir = runs.newest_unfinished()
        if _first_process():
            print(f"resuming {run_dir}, the newest unfinished run", flush=True)
    else:
        return runs.new_run_dir()
    if resume and not (run_dir / runs.CONFIG_FILE).is_file():
        raise ConfigError(f"--resume: {run_dir / runs.CONFIG_FILE} not found, nothing to resume")
    return run_dir


def train_models(
    models: tuple[str, ...] | None,
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
    """Train ``models`` in order (None: all, or with --resume the run's own) into one run folder.

    SIGINT or SIGTERM stops it with an :class:`Interrupted` that names the folder and the command
    that resumes it; last.ckpt then holds the last finished epoch of the model that was training.
    """
    if data_dir is not None and not Path(data_dir).exists():
        raise DataError(f"--data-dir {data_dir} does not exist")
    run_dir = _resolve_run(run_dir, resume)
    models = models or (tuple(runs.models_of(run_dir)) if resume else ()) or MODELS
    data_dir = runs.data_dir_for(run_dir, data_dir)
    ae_checkpoint = runs.checkpoint(ae_run or run_dir, "ae")
    if "ae" not in models and not resume and ae_checkpoint.is_file():  # (missing: _attach_encoder says so)
        overrides = {**overrides, **pin_encoder_shape(ae_checkpoint, overrides)}
    config = resolve_config(run_dir, base, overrides, resume)
    splits = data_mod.load_splits(
        data_dir,
        val_fraction=config.val_fraction,
        seed=config.seed,
        limit=config.limit_train,
        download=download,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    runs.write_json(run_dir / runs.CONFIG_FILE, config.to_dict())
    runs.write_record(run_dir, data_dir=data_dir, models=models)
    if _first_process():
        print(f"run folder: {run_dir}", flush=True)
    torch.set_float32_matmul_precision("high")
    quiet_lightning()
    summaries = []
    with stop_on_signals(), _shared_run_dir(run_dir):
        for i, name in enumerate(models, 1):
            label = f"[{i}/{len(models)}] {name}"
            if resume and runs.read_summary(run_dir, name):
                print(f"{label}: finished before the interruption (summary.json), skipped", flush=True)
                continue
            try:
                summary = train_one(
                    name,
                    config,
                    splits,
                    run_dir,
                    ae_checkpoint=ae_checkpoint,
                    resume=resume,
                    hardware=hardware,
                    label=label,
                )
            except Interrupted as stop:
                signame = signal.Signals(stop.signum).name
                raise Interrupted(
                    stop.signum,
                    f"{signame}: stopped while training the {name}; run folder {run_dir}; "
                    f"resume: {resume_command(run_dir, hardware)}",
                ) from None
            if summary is not None:
                print(format_summary(summary))
                summaries.append(summary)
    if summaries:
        print(f"run folder: {run_dir}")
    return summaries

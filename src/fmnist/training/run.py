"""``fmnist train``: run folders, the Trainer, test metrics and the closing summary."""

from __future__ import annotations

import dataclasses
import os
import pickle
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from fmnist import runs
from fmnist.config import ENCODER_SHAPE, MODELS, Config
from fmnist.contract import models as contract_models
from fmnist.errors import ConfigError, DataError, FmnistError, Interrupted
from fmnist.training import data as data_mod
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


def test_metrics(module, splits: data_mod.Splits, folder: Path, label: str = "") -> dict:
    """Final metrics on the official test set, plus the model's figures in its folder; with a
    ``label``, a progress bar over the batches (the VAE's log p(x) takes minutes on a CPU)."""
    progress = None
    if label:
        from tqdm import tqdm

        progress = lambda batches: tqdm(batches, desc=f"{label}, test set", leave=False)  # noqa: E731
    return module.test_metrics(splits.test, folder, progress)


def _start(model_name: str, module, checkpoint: Path | None) -> None:
    """Copy in the weights of the model ``module`` trains from, when it wants them; a model that
    cannot train without them is a ConfigError when the checkpoint is missing."""
    spec = contract_models.spec(model_name)
    if spec.trains_from is None or not module.wants_start():
        return
    if checkpoint is None or not Path(checkpoint).is_file():
        if not spec.needs_start:
            return
        raise ConfigError(
            f"the {model_name} needs a trained {spec.trains_from}: {checkpoint} not found "
            f"(train --model {spec.trains_from} first, or pass --ae-run)"
        )
    module.start_from(load_module(spec.trains_from, str(checkpoint)))


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
    """Seed, build and fit one model in ``folder`` (started from ``ae_checkpoint``, the model it
    trains from, when it wants that); shared by ``fmnist train`` and each ``fmnist tune`` trial."""
    L.seed_everything(config.seed, verbose=False)
    module_cls = MODULES[model_name]
    module = module_cls(config.to_dict())
    if ckpt_path is None or module.encodes_inputs:  # a resumed model's checkpoint holds its weights
        _start(model_name, module, ae_checkpoint)
    splits = module.training_splits(splits)
    trainer = make_trainer(config, folder, module_cls, hardware, callbacks)
    trainer.fit(module, datamodule=InMemoryData(splits, config), ckpt_path=ckpt_path)
    if trainer.interrupted:
        raise KeyboardInterrupt
    return trainer


# what torch.load (weights only) raises for a checkpoint it will not read
_REFUSED = (pickle.UnpicklingError, RuntimeError, EOFError, KeyError)


def _resumed_config(run_dir: Path, model_name: str, last: Path) -> Config:
    """The config last.ckpt was trained with; a checkpoint torch refuses to unpickle (one carrying
    code, say: it is never run) is one ConfigError, as a damaged one is, naming best.ckpt as the
    one to resume from only when torch reads that one."""
    try:
        return load_module(model_name, str(last)).config
    except _REFUSED as e:
        best = runs.checkpoint(run_dir, model_name)
        best_ok = _plain(model_name, best)
        hint = runs.resume_hint(run_dir, model_name, best_ok)
        runs.check_readable(last, best if best_ok else None, hint, reason=_refusal(e))
        raise AssertionError("unreachable") from None


def _refusal(e: Exception) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    short = first if len(first) <= 120 else first[:120].rsplit(" ", 1)[0] + " ..."
    return f"not a plain checkpoint: {e.__class__.__name__}: {short}"


def _plain(model_name: str, path: Path) -> bool:
    """Whether torch reads ``path`` as a checkpoint of ``model_name`` (weights only: no code runs)."""
    if not runs.is_whole(path):
        return False
    try:
        load_module(model_name, str(path))
    except _REFUSED:
        return False
    return True


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
        config = _resumed_config(run_dir, model_name, last)
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
        **test_metrics(best, splits, folder, label if hardware.progress else ""),
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

    One process at a time writes a run folder (a second is refused, naming the first). SIGINT or
    SIGTERM stops it with an :class:`Interrupted` that names the folder and the command that
    resumes it; last.ckpt then holds the last finished epoch of the model that was training. A
    full disk is one line saying the same.
    """
    if data_dir is not None and not Path(data_dir).exists():
        raise DataError(f"--data-dir {data_dir} does not exist")
    run_dir = _resolve_run(run_dir, resume)
    models = models or (tuple(runs.models_of(run_dir)) if resume else ()) or MODELS
    created = not run_dir.exists()
    try:
        with _run_lock(run_dir), _say_when_full(run_dir, hardware):
            if not resume and _first_process() and (why := runs.trained_before(run_dir, models)):
                raise ConfigError(why)
            return _train_run(models, base, overrides, run_dir, data_dir, ae_run, resume, download, hardware)
    except BaseException:
        if created and {p.name for p in run_dir.iterdir()} <= {runs.LOCK_FILE}:  # nothing of the run yet
            (run_dir / runs.LOCK_FILE).unlink(missing_ok=True)
            run_dir.rmdir()
        raise


def _run_lock(run_dir: Path):
    """The run folder's lock, taken by the first process only (DDP's other ranks run inside its run)."""
    if not _first_process():
        return nullcontext()
    return runs.hold_lock(run_dir / runs.LOCK_FILE, "fmnist train", f"run folder {run_dir}")


@contextmanager
def _say_when_full(run_dir: Path, hardware: Hardware) -> Iterator[None]:
    """A full disk as one line: the folder, and that the run resumes once there is room."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        if not runs.out_of_space(e):
            raise
        if (run_dir / runs.CONFIG_FILE).is_file():
            then = f"resume: {resume_command(run_dir, hardware)}"
        else:
            then = "run the command again"
        raise FmnistError(
            f"no space left on the device of run folder {run_dir}; nothing half-written is kept: "
            f"free some space, then {then}"
        ) from None


def _train_run(
    models: tuple[str, ...],
    base: Config,
    overrides: dict[str, Any],
    run_dir: Path,
    data_dir: Path | None,
    ae_run: Path | None,
    resume: bool,
    download: bool,
    hardware: Hardware,
) -> list[dict]:
    """Resolve the config, load the data, record the run and train each model in turn."""
    data_dir = runs.data_dir_for(run_dir, data_dir)
    ae_checkpoint = runs.checkpoint(ae_run or run_dir, "ae")
    if "ae" not in models and not resume and ae_checkpoint.is_file():  # (missing: _start says so)
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
            with _stop_line(name, run_dir, hardware):
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
            if summary is not None:
                print(format_summary(summary))
                summaries.append(summary)
    if summaries:
        print(f"run folder: {run_dir}")
    return summaries


@contextmanager
def _stop_line(name: str, run_dir: Path, hardware: Hardware) -> Iterator[None]:
    """A signal while ``name`` trains becomes the one line naming the run folder and how to resume."""
    try:
        yield
    except Interrupted as stop:
        if hardware.progress:  # the bar left the cursor at the end of its line: the stop line gets its own
            print(file=sys.stderr, flush=True)
        signame = signal.Signals(stop.signum).name
        raise Interrupted(
            stop.signum,
            f"{signame}: stopped while training the {name}; run folder {run_dir}; "
            f"resume: {resume_command(run_dir, hardware)}",
        ) from None

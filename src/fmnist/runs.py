"""The run folder, in one place: where ``fmnist train`` writes and ``export``, ``report`` and ``tune`` read.

::

    runs/<time>/
      config.json     the resolved Config (hyper-parameters only)
      run.json        the rest: the data folder, the models asked for
      <model>/        best.ckpt last.ckpt metrics.csv summary.json (and the model's figures)

Standard library only at import time (the torch helpers at the end import it inside), so the
command line can find runs without loading the training stack.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fmnist.config import MODELS, Config, default_data_dir
from fmnist.contract.models import EXPORTED
from fmnist.errors import ConfigError

BUNDLED_MODELS = EXPORTED  # what a bundle holds graphs of; the head is the study's alone
RUNS_ROOT = Path("runs")
CONFIG_FILE = "config.json"
RECORD_FILE = "run.json"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.csv"
BEST, LAST = "best.ckpt", "last.ckpt"
LOCK_FILE = ".lock"  # flock-ed by the process writing the folder; the kernel frees it when that one dies


def new_run_dir(root: Path = RUNS_ROOT) -> Path:
    return Path(root) / time.strftime("%Y%m%d-%H%M%S")


def model_dir(run: Path, model: str) -> Path:
    return Path(run) / model


def checkpoint(run: Path, model: str, which: str = BEST) -> Path:
    return model_dir(run, model) / which


# -- small files ----------------------------------------------------------------------------------


def write_json(path: Path, value: Any) -> None:
    """Beside ``path``, then renamed over it: a reader (another rank, a killed run) never sees half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(value, indent=2) + "\n")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# -- one writer per folder ------------------------------------------------------------------------


@contextmanager
def hold_lock(lock: Path, command: str, what: str, *, shared: bool = False) -> Iterator[None]:
    """Inside, this process holds an flock on ``lock`` (its parent folder created); a second
    process is refused with one ConfigError naming the holder's pid. ``shared``: processes of the
    same kind (tune workers on one study) may hold it together, but not with an exclusive holder.
    The kernel drops the lock with the process, so a killed one leaves nothing in the way."""
    import fcntl

    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise ConfigError(f"{what} is in use by {holder}: wait for it to end, or pick another folder") from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()} ({command})\n")
        f.flush()
        yield


def out_of_space(error: BaseException) -> bool:
    """Whether ``error``, or an error it was raised from (torch.save wraps it), is a full disk."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error = error.__cause__ or error.__context__
    return False


def trained_before(run: Path, models: tuple[str, ...]) -> str | None:
    """Why training ``models`` into ``run`` afresh would train over earlier work, or None."""
    for model in models:
        summary, last = model_dir(run, model) / SUMMARY_FILE, checkpoint(run, model, LAST)
        if summary.is_file():
            return f"--run-dir {run} already holds a trained {model} ({summary}): pass a new --run-dir to train again"
        if last.is_file():
            return (
                f"--run-dir {run} already holds an unfinished {model} ({last}): pass --resume to continue it, "
                "or a new --run-dir"
            )
    return None


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e.msg}, line {e.lineno}); delete it or fix it") from None
    return value if isinstance(value, dict) else {}


def read_recipe(run: Path) -> Config | None:
    """The run's resolved config (config.json, the last ``fmnist train`` into it); None without one."""
    path = Path(run) / CONFIG_FILE
    return Config.from_json(path, saved=True) if path.is_file() else None


def read_summary(run: Path, model: str) -> dict:
    """A model's test-set summary; {} until the model has finished."""
    return _read_json(model_dir(run, model) / SUMMARY_FILE)


def write_summary(run: Path, model: str, summary: dict) -> None:
    write_json(model_dir(run, model) / SUMMARY_FILE, summary)


def read_record(run: Path) -> dict:
    return _read_json(Path(run) / RECORD_FILE)


def write_record(run: Path, *, data_dir: Path, models: tuple[str, ...]) -> None:
    """run.json: the data folder (absolute, so the run can be exported from anywhere) and the models
    asked for so far, in training order (a later ``--model vae`` into the same folder adds to them)."""
    asked = set(read_record(run).get("models", [])) | set(models)
    order = [*MODELS, *sorted(asked - set(MODELS))]
    write_json(
        Path(run) / RECORD_FILE,
        {"data_dir": os.path.abspath(Path(data_dir).expanduser()), "models": [m for m in order if m in asked]},
    )


def data_dir_for(run: Path | None, explicit: Path | None) -> Path:
    """``--data-dir`` (or ``$FMNIST_DATA``) when given, else the folder the run was trained on, else
    the per-user cache."""
    if explicit is not None:
        return Path(explicit)
    recorded = read_record(run).get("data_dir") if run is not None else None
    return default_data_dir(Path(recorded) if recorded else None)


# -- metrics --------------------------------------------------------------------------------------


def read_metrics(folder: Path) -> list[dict[str, str]]:
    with open(Path(folder) / METRICS_FILE) as f:
        return list(csv.DictReader(f))


def best_row(folder: Path, monitor: str, mode: str) -> dict[str, float]:
    """The metrics.csv row of the best epoch by ``monitor`` (the epoch best.ckpt holds), as numbers."""
    pick = min if mode == "min" else max
    row = pick(read_metrics(folder), key=lambda r: float(r[monitor]))
    return {k: int(v) if k == "epoch" else float(v) for k, v in row.items() if v != ""}


# -- which run ------------------------------------------------------------------------------------


def models_of(run: Path) -> list[str]:
    """The models the run was asked for (run.json), else those it has a folder for (older runs)."""
    recorded = read_record(run).get("models")
    if recorded:
        return list(recorded)
    return [m for m in MODELS if model_dir(run, m).is_dir()]


def is_finished(run: Path) -> bool:
    models = models_of(run)
    return bool(models) and all((model_dir(run, m) / SUMMARY_FILE).is_file() for m in models)


def _started(run: Path) -> float:
    """When the run was last started or resumed (run.json is rewritten then)."""
    for name in (RECORD_FILE, CONFIG_FILE):
        if (Path(run) / name).is_file():
            return (Path(run) / name).stat().st_mtime
    return 0.0


def latest_run(root: Path = RUNS_ROOT) -> Path:
    """The newest run with a trained AE (the default of ``export`` and ``report``)."""
    runs = [p.parent.parent for p in Path(root).glob(f"*/ae/{BEST}")]
    if not runs:
        raise ConfigError(f"no trained run under {root}/ (run `fmnist train`, or pass --run-dir)")
    return max(runs, key=lambda p: checkpoint(p, "ae").stat().st_mtime)


def newest_unfinished(root: Path = RUNS_ROOT) -> Path:
    """The most recently started run with a model still missing its summary (``train --resume``)."""
    runs = [p.parent for p in Path(root).glob(f"*/{CONFIG_FILE}") if not is_finished(p.parent)]
    if not runs:
        raise ConfigError(f"--resume: no unfinished run under {root}/; pass --run-dir to name one")
    return max(runs, key=_started)


# -- checkpoints ----------------------------------------------------------------------------------


def unreadable(path: Path) -> str | None:
    """Why ``path`` is not a whole checkpoint (torch.save's zip archive, every member's CRC checked), or None."""
    try:
        if Path(path).stat().st_size == 0:
            return "empty"
        if not zipfile.is_zipfile(path):
            return "truncated or not a checkpoint"
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        return f"{e.__class__.__name__}: {e}"
    return f"damaged member {bad}" if bad else None


def is_whole(path: Path | None) -> bool:
    """A file whose zip archive (torch.save's format) is whole; torch may still refuse its pickle."""
    return path is not None and Path(path).is_file() and unreadable(path) is None


def check_readable(path: Path, fallback: Path | None = None, hint: str = "", reason: str | None = None) -> Path:
    """``path`` if it is a whole checkpoint (``reason``: why it is not, found another way);
    otherwise one ConfigError naming it and ``fallback``, the previous good checkpoint, when that
    one is whole."""
    reason = reason or unreadable(path)
    if reason is None:
        return Path(path)
    message = f"checkpoint {path} cannot be read ({reason})"
    if is_whole(fallback):
        message += f"; the previous good one is {fallback}"
    raise ConfigError(message + (f": {hint}" if hint else ""))


def resume_hint(run: Path, model: str, best_ok: bool | None = None) -> str:
    """What to do about a damaged last.ckpt: resume from best.ckpt when it is whole (``best_ok``:
    found another way, by loading it), else retrain."""
    if is_whole(checkpoint(run, model, BEST)) if best_ok is None else best_ok:
        return f"copy it over {LAST} to resume from that epoch, or delete {LAST} to train the {model} again"
    return (
        f"no good checkpoint of the {model} is left: delete {model_dir(run, model)} to train it again "
        "(fmnist train --resume then starts it afresh), or pass a new --run-dir"
    )


def resume_checkpoint(run: Path, model: str) -> Path | None:
    """last.ckpt to resume ``model`` from, checked whole; None when the model has not finished an epoch."""
    last, best = checkpoint(run, model, LAST), checkpoint(run, model, BEST)
    if not last.is_file():
        return None
    return check_readable(last, best, resume_hint(run, model))


def best_checkpoints(run: Path, models: tuple[str, ...] = BUNDLED_MODELS, needed_by: str = "export") -> dict[str, Path]:
    """Each model's best.ckpt, present and whole; otherwise one ConfigError naming the first problem."""
    run = Path(run)
    if not run.is_dir():
        raise ConfigError(f"run folder {run} does not exist (pass --run-dir a folder written by `fmnist train`)")
    paths = {m: checkpoint(run, m) for m in models}
    missing = [m for m, path in paths.items() if not path.is_file()]
    if missing:
        raise ConfigError(
            f"{paths[missing[0]]} not found: {needed_by} needs a run with the {', '.join(models)} models; "
            f"this one lacks the {', '.join(missing)} (fmnist train --model {missing[0]} --run-dir {run})"
        )
    for model, path in paths.items():
        check_readable(path, checkpoint(run, model, LAST), "train that model again (fmnist train --model ...)")
    return paths


# -- the trained models (these import torch) ------------------------------------------------------


def load_models(run: Path, models: tuple[str, ...] = BUNDLED_MODELS, needed_by: str = "export") -> dict:
    """The best LightningModule of each model, rebuilt from its own checkpoint's config, in eval mode."""
    from fmnist.training.modules import load_module

    modules = {m: load_module(m, str(p)) for m, p in best_checkpoints(run, models, needed_by).items()}
    for module in modules.values():
        module.model.eval()
    return modules


def encode(encoder, images, batch: int = 2000):
    """uint8 images (N, 28, 28) through ``encoder`` -> float64 latents (N, d) as a numpy array (the
    samplers' input); training encodes with the same function (data.encode_images)."""
    from fmnist.training.data import encode_images

    return encode_images(encoder, images, batch).double().numpy()

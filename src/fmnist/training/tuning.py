"""``fmnist tune``: Optuna studies over the AE's and the classifier's hyper-parameters.

The search space is data (:data:`TARGETS`): the CLI shows its ranges as the range flags'
defaults and each trial suggests from it; the suggested values go into :meth:`Config.updated`.
A trial trains with the Trainer of ``fmnist train`` (:func:`run.fit_model`) in its own folder
``RUN/trial-0003/ae/`` and returns the validation metric of its best epoch (the epoch its best.ckpt
holds); the test set is not even loaded.

Studies live in an RDB storage (default ``RUN/study.db``, SQLite): several processes or machines
can share one, running the command again resumes the study, and a heartbeat lets a later run mark
a killed process's trial failed instead of leaving it RUNNING for ever.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, Trial, TrialState

from fmnist import runs
from fmnist.config import Config, default_data_dir
from fmnist.errors import ConfigError, DataError
from fmnist.training import data as data_mod
from fmnist.training import run, study_plots
from fmnist.training.modules import MODULES
from fmnist.training.search_space import PRUNERS, TARGETS, TUNE_EPOCHS, Param, Target, parse_target, resolve_space

__all__ = ["PRUNERS", "TARGETS", "TUNE_EPOCHS", "Param", "Target", "tune"]

STUDY_FILE = "study.db"
BEST_FILE = "best_params.json"
PLOTS = ("history", "importances", "slice")
SQLITE_TIMEOUT_S = 60  # wait this long for another process's write lock on a SQLite study


def suggest(trial: Trial, space: tuple[Param, ...]) -> dict[str, int | float]:
    return {p.name: p.suggest(trial) for p in space}


def trial_folder(run_dir: Path, number: int) -> Path:
    return Path(run_dir) / f"trial-{number:04d}"


def validation_splits(root: Path, config: Config, download: bool) -> data_mod.Splits:
    """The train/validation split of ``fmnist train``; the test split is left empty, so no trial can
    look at it."""
    full = data_mod.load_official(root, True, download)
    train, val = data_mod.split_train_val(full, config.val_fraction, config.seed, config.limit_train)
    no_test = data_mod.Split(torch.empty(0, 28, 28, dtype=torch.uint8), torch.empty(0, dtype=torch.long))
    return data_mod.Splits(train, val, no_test)


# --- storage and study -------------------------------------------------------------------------


def storage_url(storage: str | None, run_dir: Path | None) -> str:
    """``--storage`` as a SQLAlchemy URL: a URL as given (a bare ``postgresql://`` with the psycopg
    driver of ``fmnist[postgres]``), a path as a SQLite file (a folder: its study.db), nothing as
    RUN/study.db."""
    if storage is None:
        return f"sqlite:///{(Path(run_dir) / STUDY_FILE).resolve()}"
    if storage.startswith("postgresql://"):  # SQLAlchemy's default driver for it is psycopg2
        return "postgresql+psycopg://" + storage[len("postgresql://") :]
    if "://" in storage:
        return storage
    path = Path(storage)
    return f"sqlite:///{(path / STUDY_FILE if path.is_dir() else path).resolve()}"


def _shown(url: str) -> str:
    """The URL for messages, without its password."""
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def open_storage(url: str, *, heartbeat: int | None = None, must_exist: bool = False) -> optuna.storages.RDBStorage:
    """An RDB storage with a heartbeat (failing killed trials) and, for SQLite, a lock timeout so
    concurrent processes wait for each other's writes instead of failing."""
    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise ConfigError(
            f"--storage {url!r} is not a database URL (e.g. sqlite:///study.db or postgresql://user@host/db)"
        ) from None
    engine_kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if must_exist and not (db and Path(db).is_file()):
            raise ConfigError(f"--storage {_shown(url)}: no such study database")
        if "timeout" not in parsed.query:
            engine_kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_S}
    kwargs = {} if heartbeat is None else {"heartbeat_interval": heartbeat, "grace_period": 2 * heartbeat}
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as e:
            # two processes creating the tables of a new database at once: the loser retries
            # (PostgreSQL runs this under creation_lock; other databases meet it here)
            racing = isinstance(e, sqlalchemy.exc.IntegrityError) or "already exists" in str(e) or "locked" in str(e)
            if not (racing and attempt < 4):
                raise ConfigError(f"--storage {_shown(url)}: cannot open it ({_first_line(e)})") from None
            time.sleep(0.2 * (attempt + 1))
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError, RuntimeError) as e:
            raise ConfigError(f"--storage {_shown(url)}: cannot open it ({_first_line(e)})") from None
    raise AssertionError("unreachable")


CREATION_LOCK = 0x666D6E697374  # "fmnist": the PostgreSQL advisory lock key of study creation


@contextmanager
def creation_lock(url: str) -> Iterator[None]:
    """On PostgreSQL, one process at a time creates the tables and the study: ``CREATE TABLE`` and
    ``CREATE TYPE`` from processes started together otherwise fail with "already exists". Other
    databases rely on open_storage's retries (SQLite locks the whole file anyway)."""
    import sqlalchemy

    try:
        postgres = sqlalchemy.engine.make_url(url).get_backend_name() == "postgresql"
    except sqlalchemy.exc.ArgumentError:
        postgres = False  # open_storage says what is wrong with the URL
    if not postgres:
        yield
        return
    try:
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        connection = engine.connect()
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as e:
        raise ConfigError(f"--storage {_shown(url)}: cannot open it ({_first_line(e)})") from None
    try:
        # a session lock: the server drops it with the connection if this process dies holding it
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": CREATION_LOCK})
        yield
    finally:
        connection.close()
        engine.dispose()


def _first_line(e: BaseException) -> str:
    text = str(e.__cause__ or e).strip()
    return f"{e.__class__.__name__}: {text.splitlines()[0] if text else ''}"


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"--pruner must be one of {', '.join(PRUNERS)}, not {name!r}")


def open_study(
    storage: optuna.storages.BaseStorage,
    study_name: str,
    target_name: str,
    fixed: dict[str, Any],
    *,
    pruner: str = "median",
    sampler_seed: int | None = None,
) -> optuna.Study:
    """Create the study or load it (resume); a study of another target or AE is an error."""
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=sampler_seed),
        pruner=make_pruner(pruner),
        load_if_exists=True,
    )
    saved = study.user_attrs.get("target")
    if saved is None:
        study.set_user_attr("target", target_name)
        study.set_user_attr("fixed", fixed)
    elif saved != target_name:
        raise ConfigError(f"study {study_name!r} tunes the {saved}, not the {target_name}: pick another --study-name")
    elif study.user_attrs.get("fixed", {}) != fixed:
        raise ConfigError(
            f"study {study_name!r} was tuned with {study.user_attrs.get('fixed')}, this run has {fixed}: "
            "pick another --study-name"
        )
    if study.direction != optuna.study.StudyDirection.MINIMIZE:
        raise ConfigError(f"study {study_name!r} maximises its objective; fmnist tune minimises a validation loss")
    return study


def open_shared_study(
    url: str,
    study_name: str,
    target_name: str,
    fixed: dict[str, Any],
    *,
    heartbeat: int,
    pruner: str = "median",
    sampler_seed: int | None = None,
) -> optuna.Study:
    """The storage and the study, created by one process at a time when several start together."""
    with creation_lock(url):
        storage = open_storage(url, heartbeat=heartbeat)
        return open_study(storage, study_name, target_name, fixed, pruner=pruner, sampler_seed=sampler_seed)


def load_study(storage: str, study_name: str | None) -> optuna.Study:
    """An existing study, for ``fmnist train --from-study`` (the only one in the storage by default)."""
    url = storage_url(storage, None)
    backend = open_storage(url, must_exist=True)
    names = [s.study_name for s in optuna.get_all_study_summaries(backend, include_best_trial=False)]
    if study_name is None:
        if len(names) != 1:
            raise ConfigError(
                f"--storage {_shown(url)} holds {len(names)} studies ({', '.join(names) or 'none'}): pass --study-name"
            )
        study_name = names[0]
    if study_name not in names:
        raise ConfigError(f"no study {study_name!r} in {_shown(url)} (it holds {', '.join(names) or 'none'})")
    return optuna.load_study(study_name=study_name, storage=backend)


def best_params(study: optuna.Study) -> dict[str, Any]:
    """The best complete trial's parameters plus the fields the study pinned: a Config-compatible dict."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise ConfigError(f"study {study.study_name!r} has no complete trial yet")
    params = {**study.user_attrs.get("fixed", {}), **study.best_trial.params}
    Config.from_dict(params)  # every key a Config field, every value in range
    return params


def fail_stale(study: optuna.Study) -> list[int]:
    """Mark RUNNING trials whose heartbeat stopped (their process was killed) as failed; their numbers."""
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    failed = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    return sorted(running & failed)


# --- trials ------------------------------------------------------------------------------------


def make_objective(
    target: Target,
    space: tuple[Param, ...],
    base: Config,
    splits: data_mod.Splits,
    run_dir: Path,
    hardware: run.Hardware,
    *,
    ae_checkpoint: Path | None = None,
    pruning: bool = True,
    data_dir: Path | None = None,
) -> Callable[[Trial], float]:
    """The objective: suggest from ``space`` into ``base``, train in the trial's folder, return the
    best epoch's validation metric (the other validation metrics of that epoch become user attrs)."""
    from optuna_integration import PyTorchLightningPruningCallback

    module_cls = MODULES[target.model]

    def objective(trial: Trial) -> float:
        config = base.updated(**suggest(trial, space))
        # a trial folder is laid out as a run folder (config.json, ae/best.ckpt), so it can be
        # the --ae-run of a classifier study or the --run-dir of fmnist export
        trial_run = trial_folder(run_dir, trial.number)
        folder = trial_run / target.model
        folder.mkdir(parents=True, exist_ok=True)
        runs.write_json(trial_run / runs.CONFIG_FILE, config.to_dict())
        if data_dir is not None:  # so `fmnist export --run-dir TRIAL` finds the data without --data-dir
            runs.write_record(trial_run, data_dir=data_dir, models=(target.model,))
        trial.set_user_attr("folder", str(trial_run.resolve()))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # which process of a shared study
        callbacks = (PyTorchLightningPruningCallback(trial, monitor=module_cls.objective),) if pruning else ()
        try:
            run.fit_model(
                target.model,
                config,
                splits,
                folder,
                ae_checkpoint=ae_checkpoint,
                hardware=hardware,
                callbacks=callbacks,
            )
        except SystemExit:  # Lightning turns Ctrl+C into sys.exit(1); Optuna fails a trial on KeyboardInterrupt
            raise KeyboardInterrupt from None
        row = runs.best_row(folder, module_cls.objective, "min")
        for key, value in row.items():
            if key == "epoch" or key.startswith("val_"):
                trial.set_user_attr("best_epoch" if key == "epoch" else key, value)
        return row[module_cls.objective]

    return objective


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def describe(trial: FrozenTrial, monitor: str) -> str:
    """One line per finished trial."""
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
    value = f" {monitor} {trial.value:.5f}" if trial.value is not None else ""
    extra = f" val_acc {trial.user_attrs['val_acc']:.4f}" if "val_acc" in trial.user_attrs else ""
    return f"trial {trial.number}: {trial.state.name.lower()}{value}{extra} ({params})"


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write beside ``path`` and rename, so a concurrent process never reads half a file."""
    import os

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    tmp.replace(path)


def write_best(study: optuna.Study, out_dir: Path) -> Path | None:
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    path = Path(out_dir) / BEST_FILE
    text = json.dumps(best_params(study), indent=2) + "\n"
    _write_atomic(path, lambda p: p.write_text(text))
    return path


def save_plots(study: optuna.Study, out_dir: Path, objective: str = "objective") -> tuple[list[Path], list[str]]:
    """Optimisation history, parameter importances and slice plot as PNGs in ``out_dir``: the paths
    written and notices for the plots skipped (too few complete trials)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure
    from optuna.visualization import matplotlib as ovm

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return [], ["no complete trial yet: plots skipped"]
    varied = sorted(n for n in complete[0].params if len({t.params.get(n) for t in complete}) > 1)
    plots: dict[str, Callable[[], Any]] = {
        "history": lambda: ovm.plot_optimization_history(study),
        "slice": lambda: study_plots.slice_figure(study, objective),
    }
    notices = []
    if len(complete) >= 2 and varied:
        plots["importances"] = lambda: ovm.plot_param_importances(study, params=varied)
    else:
        notices.append(
            f"parameter importances need 2 or more complete trials with varying parameters "
            f"({len(complete)} complete): importances.png skipped"
        )
    written = []
    with warnings.catch_warnings(), plt.rc_context():  # Optuna's plots switch the global style
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)  # e.g. the slice plot's singular xlim with one trial
        for name in PLOTS:
            if name not in plots:
                continue
            try:
                drawn = plots[name]()
            except (ValueError, RuntimeError, ZeroDivisionError) as e:  # e.g. importances of identical values
                notices.append(f"{name}.png skipped ({e.__class__.__name__}: {e})")
                continue
            fig = drawn if isinstance(drawn, Figure) else drawn.figure  # slice_figure lays out its own figure
            if fig is not drawn:
                fig.set_size_inches(8, 5)
                fig.tight_layout()
            path = Path(out_dir) / f"{name}.png"
            _write_atomic(path, lambda p, fig=fig: fig.savefig(p, format="png", dpi=100))
            plt.close(fig)
            written.append(path)
    return written, notices


# --- the command -------------------------------------------------------------------------------


def _classifier_base(ae_run: Path | None, overrides: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """The AE checkpoint the classifier trials start from, and the fields it pins (latent_dim, arch)."""
    if ae_run is None:
        raise ConfigError("fmnist tune classifier needs --ae-run RUN: the run whose AE encoder the trials use")
    checkpoint = runs.checkpoint(ae_run, "ae")
    if not checkpoint.is_file():
        raise ConfigError(f"--ae-run {ae_run}: {checkpoint} not found (train an AE there with fmnist train --model ae)")
    return checkpoint, run.pin_encoder_shape(checkpoint, overrides)


def trial_base(
    target_name: str, space: tuple[Param, ...], base: Config, overrides: dict[str, Any], ae_run: Path | None
) -> tuple[Config, Path | None, dict[str, Any]]:
    """The config every trial starts from (the flags on ``base``, TUNE_EPOCHS unless --epochs), the
    AE checkpoint a classifier study starts from, and the fields that study pins."""
    target = parse_target(target_name)
    for p in space:
        if overrides.get(p.name) is not None:
            flag = "--" + p.name.replace("_", "-")
            raise ConfigError(f"{flag} is searched by `fmnist tune {target_name}`: set its range with {p.flag}")
    config = base.updated(**{"epochs": TUNE_EPOCHS, **{k: v for k, v in overrides.items() if v is not None}})
    for p in space:  # both ends of each range must be valid values (e.g. latent_dim >= 1)
        for end in (p.low, p.high):
            config.updated(**{p.name: p.kind(end)})
    if target.model != "classifier":
        return config, None, {}
    ae_checkpoint, fixed = _classifier_base(ae_run, overrides)
    return config.updated(**fixed), ae_checkpoint, fixed


def tune(
    target_name: str,
    base: Config,
    overrides: dict[str, Any],
    ranges: dict[str, tuple[float, float] | None],
    *,
    trials: int | None,
    data_dir: Path | None,
    run_dir: Path | None,
    storage: str | None,
    study_name: str | None,
    ae_run: Path | None,
    pruner: str,
    heartbeat: int,
    sampler_seed: int | None,
    download: bool,
    hardware: run.Hardware,
    plots: bool = True,
    echo: Callable[[str], None] = print,
) -> optuna.Study:
    """Run ``trials`` more trials of the study (created, or resumed if it exists); write
    best_params.json and the plots into the run folder."""
    target = parse_target(target_name)
    space = resolve_space(target_name, ranges)
    make_pruner(pruner)  # check the name before any work
    trials = target.trials if trials is None else trials
    if trials < 0:
        raise ConfigError("--trials must be >= 0")
    if heartbeat < 1:
        raise ConfigError("--heartbeat must be >= 1 second")
    config, ae_checkpoint, fixed = trial_base(target_name, space, base, overrides, ae_run)
    if data_dir is not None and not Path(data_dir).exists():
        raise DataError(f"--data-dir {data_dir} does not exist")
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    splits = validation_splits(data_dir, config, download)

    run_dir = Path(run_dir) if run_dir is not None else runs.new_run_dir()
    # tune workers of one study may share a folder (trial folders are numbered by the study); a
    # `fmnist train` into it may not, nor a tune while one trains there
    with runs.hold_lock(run_dir / runs.LOCK_FILE, "fmnist tune", f"run folder {run_dir}", shared=True):
        url = storage_url(storage, run_dir)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = open_shared_study(
            url,
            study_name or f"fmnist-{target_name}",
            target_name,
            fixed,
            heartbeat=heartbeat,
            pruner=pruner,
            sampler_seed=sampler_seed,
        )
        stale = fail_stale(study)
        if stale:
            echo(f"marked trial(s) {', '.join(map(str, stale))} failed: their process stopped (no heartbeat)")
        before = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        echo(f"study {study.study_name} in {_shown(url)}: {before} complete trial(s) so far, running {trials} more")

        monitor = MODULES[target.model].objective

        def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
            echo(describe(trial, monitor))
            write_best(study, run_dir)  # kept current, so a killed study still has its best so far

        torch.set_float32_matmul_precision("high")
        run.quiet_lightning()
        objective = make_objective(
            target,
            space,
            config,
            splits,
            run_dir,
            hardware,
            ae_checkpoint=ae_checkpoint,
            pruning=pruner != "none",
            data_dir=data_dir,
        )
        study.optimize(objective, n_trials=trials, callbacks=[after_trial])
        retrain = f"fmnist train --model {target.model} " + (f"--ae-run {ae_run} " if ae_run is not None else "")
        report_study(study, run_dir, monitor, retrain, plots, echo)
    return study


def count_trials(study: optuna.Study) -> str:
    """``3 complete, 1 pruned trial(s) in the study`` (``0 trial(s)`` for an empty one)."""
    counts = {s: len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState}
    return (", ".join(f"{n} {s.name.lower()}" for s, n in counts.items() if n) or "0") + " trial(s) in the study"


def report_study(
    study: optuna.Study, run_dir: Path, monitor: str, retrain: str, plots: bool, echo: Callable[[str], None]
) -> None:
    """The closing lines: the trial counts, the best trial and how to retrain it, the plots."""
    echo(count_trials(study))
    best = write_best(study, run_dir)
    if best is not None:
        echo(f"best: {describe(study.best_trial, monitor)}")
        echo(f"best parameters: {best}; retrain: {retrain}--params {best}")
    if plots:
        written, notices = save_plots(study, run_dir, monitor)
        for notice in notices:
            echo(f"notice: {notice}")
        if written:
            echo(f"plots: {', '.join(str(p) for p in written)}")

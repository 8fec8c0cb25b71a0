"""The ``fmnist`` command line. Heavy libraries are imported inside the commands, so
``fmnist --help`` and the inference commands start fast, and a mistyped choice is one line before
torch loads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from fmnist.cli.extras import require_training_extra
from fmnist.cli.flags import Command, Group, flag_parameters, pick, with_flags
from fmnist.cli.outputs import check_folder
from fmnist.config import DEFAULTS, PANEL, SEED_MAX, Config
from fmnist.contract.models import ALL, MODELS
from fmnist.errors import ConfigError, FmnistError, report_errors
from fmnist.runtime.limits import seed_message
from fmnist.training.search_space import HEARTBEAT_S, PRUNERS, SEARCHED, TARGETS, TUNE_EPOCHS

app = typer.Typer(
    cls=Group,
    help="Train autoencoders on Fashion-MNIST and serve them as framework-free ONNX artifacts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _d(shown: object) -> str:
    """The default as every --help writes it (escaped: rich markup would take it for a style)."""
    return rf"\[default: {shown}]"


# Flags shared by the training commands besides the hyper-parameters (which come from Config).
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="FMNIST_DATA",
        show_envvar=True,
        help="Folder holding FashionMNIST/raw (torchvision layout). "
        + _d("the run's own, recorded in its run.json; else ~/.cache/fmnist"),
    ),
]
RunDir = Annotated[
    Path | None,
    typer.Option("--run-dir", help="Run folder for checkpoints, metrics and config. " + _d("a new runs/<time>")),
]
Download = Annotated[
    bool,
    typer.Option(
        "--download/--no-download",
        help="Download Fashion-MNIST if it is not in the data folder. " + _d("download"),
        show_default=False,
        metavar="",
    ),
]
Params = Annotated[
    Path | None, typer.Option("--params", help="JSON of hyper-parameters (e.g. from `fmnist tune`); flags win.")
]
Accelerator = Annotated[
    str,
    typer.Option("--accelerator", help="Lightning accelerator: cpu, gpu, auto... " + _d("auto"), show_default=False),
]
Precision = Annotated[
    str | None,
    typer.Option("--precision", help="Lightning precision: 32, 16-mixed, bf16-mixed, ... " + _d("32")),
]
Progress = Annotated[
    bool,
    typer.Option(
        "--progress/--no-progress", help="Show progress bars. " + _d("progress"), show_default=False, metavar=""
    ),
]


def _version(value: bool) -> None:
    if value:
        from fmnist import __version__

        typer.echo(f"fmnist {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version.", metavar=""),
    ] = None,
) -> None:
    """Train autoencoders on Fashion-MNIST and serve them as framework-free ONNX artifacts."""


def _parse_model(model: str | None) -> tuple[str, ...] | None:
    if model is None:
        return None
    if model == ALL:
        return MODELS
    if model not in MODELS:
        raise ConfigError(f"--model must be one of {', '.join(MODELS)} or {ALL}, not {model!r}")
    return (model,)


def _hyper_parameters(base: Config, values: dict[str, Any]) -> dict[str, Any]:
    """The hyper-parameter flags given, checked now (a bad --arch is one line before torch loads)."""
    overrides = pick(Config, values)
    base.updated(**overrides)
    return overrides


def train(
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            metavar="|".join((*MODELS, ALL)),
            help=f"{', '.join(MODELS)}, or {ALL} (in that order). " + _d(f"{ALL}; resumed: the run's"),
        ),
    ] = None,
    data_dir: DataDir = None,
    run_dir: RunDir = None,
    params: Params = None,
    from_study: Annotated[
        bool,
        typer.Option(
            "--from-study",
            help="Hyper-parameters of the best trial in --storage (`fmnist tune`); flags win.",
            metavar="",
        ),
    ] = False,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Study storage for --from-study: a SQLAlchemy URL (sqlite:///study.db, postgresql://...), "
            "a SQLite file, or a `fmnist tune` run folder (its study.db).",
        ),
    ] = None,
    study_name: Annotated[
        str | None, typer.Option("--study-name", help="Study for --from-study. " + _d("the storage's only one"))
    ] = None,
    ae_run: Annotated[
        Path | None, typer.Option("--ae-run", help="Run folder whose AE the classifier uses. " + _d("this run's"))
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the run in --run-dir (without it, the newest unfinished one) from its last.ckpt.",
            metavar="",
        ),
    ] = False,
    download: Download = True,
    accelerator: Accelerator = "auto",
    devices: Annotated[
        str,
        typer.Option("--devices", help="Lightning devices: a count, a list or auto. " + _d("auto"), show_default=False),
    ] = "auto",
    strategy: Annotated[
        str, typer.Option("--strategy", help="Lightning strategy: auto, ddp, ... " + _d("auto"), show_default=False)
    ] = "auto",
    precision: Precision = None,
    progress: Progress = True,
    **values: Any,
) -> None:
    """Train the AE, a head on its frozen encoder (the seed's experiment), the classifier fine-tuned end
    to end on augmented images (the one a bundle serves), and the VAE; checkpoints, metrics CSV, summary."""
    models = _parse_model(model)
    require_training_extra("train")
    from fmnist.runs import new_run_dir

    check_folder(run_dir if run_dir is not None else new_run_dir(), "--run-dir")
    base = Config.from_json(params) if params else DEFAULTS
    if from_study:
        if params is not None:
            raise ConfigError("--params and --from-study both give hyper-parameters: pick one")
        if storage is None:
            raise ConfigError("--from-study needs --storage: the study's database URL, SQLite file or tune run folder")
    elif storage is not None or study_name is not None:
        raise ConfigError("--storage and --study-name choose the study for --from-study; add --from-study")
    overrides = _hyper_parameters(base, values)
    from fmnist.training.run import Hardware, train_models

    if from_study:
        base = _study_config(storage, study_name)
    train_models(
        models,
        base,
        overrides,
        data_dir=data_dir,
        run_dir=run_dir,
        ae_run=ae_run,
        resume=resume,
        download=download,
        hardware=Hardware(accelerator, devices, strategy, precision, progress),
    )


def _study_config(storage: str, study_name: str | None) -> Config:
    """``train --from-study``: the Config of the study's best trial."""
    from fmnist.training.tuning import best_params, load_study

    study = load_study(storage, study_name)
    values = best_params(study)
    typer.echo(f"hyper-parameters of study {study.study_name}, trial {study.best_trial.number}: {values}")
    return Config.from_dict(values)


app.command("train", cls=Command)(with_flags(report_errors(train), flag_parameters(Config, panel=PANEL, unset=True)))


def _range(name: str, target: str) -> typer.models.OptionInfo:
    """A range flag whose default and help come from the search-space table."""
    p = SEARCHED[name]
    scale = "log scale" if p.log else "uniform"
    return typer.Option(
        p.flag,
        metavar="LOW HIGH",
        help=f"{name} range, {p.kind.__name__}, {scale}. " + _d(p.bounds()),
        rich_help_panel=f"Search space: {target}",
        show_default=False,
    )


TRIALS_HELP = "Trials this process runs, added to the study's. " + _d(
    ", ".join(f"{t} {spec.trials}" for t, spec in TARGETS.items())
)


def tune(
    target: Annotated[
        str,
        typer.Argument(metavar="TARGET", help=f"What to tune: {' or '.join(TARGETS)}.", show_default=False),
    ],
    trials: Annotated[int | None, typer.Option("--trials", help=TRIALS_HELP, rich_help_panel="Study")] = None,
    latent_dim_range: Annotated[tuple[int, int] | None, _range("latent_dim", "ae")] = None,
    lr_range: Annotated[tuple[float, float] | None, _range("lr", "ae")] = None,
    l1_range: Annotated[tuple[float, float] | None, _range("l1", "ae")] = None,
    l2_range: Annotated[tuple[float, float] | None, _range("l2", "ae")] = None,
    head_width_range: Annotated[tuple[int, int] | None, _range("head_width", "classifier")] = None,
    ae_run: Annotated[
        Path | None,
        typer.Option(
            "--ae-run",
            help="Run folder whose AE encoder the classifier trials use (required).",
            rich_help_panel="Search space: classifier",
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Optuna storage shared by every process tuning this study: a SQLAlchemy URL "
            "(sqlite:///study.db, postgresql://user@host/db) or a SQLite file. " + _d("study.db in --run-dir"),
            rich_help_panel="Study",
        ),
    ] = None,
    study_name: Annotated[
        str | None,
        typer.Option("--study-name", help="Study to create or resume. " + _d("fmnist-TARGET"), rich_help_panel="Study"),
    ] = None,
    pruner: Annotated[
        str,
        typer.Option(
            "--pruner",
            metavar="|".join(PRUNERS),
            help=f"Stop poor trials early: {' or '.join(PRUNERS)}. " + _d(PRUNERS[0]),
            rich_help_panel="Study",
            show_default=False,
        ),
    ] = PRUNERS[0],
    heartbeat: Annotated[
        int,
        typer.Option(
            "--heartbeat",
            help="Seconds between a trial's heartbeats; a RUNNING trial silent for twice this (its process "
            "was killed) is marked failed. " + _d(HEARTBEAT_S),
            rich_help_panel="Study",
            show_default=False,
        ),
    ] = HEARTBEAT_S,
    sampler_seed: Annotated[
        int | None,
        typer.Option(
            "--sampler-seed",
            help="Seed Optuna's TPE sampler (reproducible single-process studies; not for parallel ones).",
            rich_help_panel="Study",
        ),
    ] = None,
    plots: Annotated[
        bool,
        typer.Option(
            "--plots/--no-plots",
            help="Write the study's plots when done (one worker of many may skip them). " + _d("plots"),
            rich_help_panel="Study",
            show_default=False,
            metavar="",
        ),
    ] = True,
    data_dir: DataDir = None,
    run_dir: RunDir = None,
    params: Params = None,
    download: Download = True,
    accelerator: Accelerator = "auto",
    precision: Precision = None,
    progress: Progress = True,
    **values: Any,
) -> None:
    """Search hyper-parameters with Optuna; each trial is scored on the validation split, never the test set.

    The study lives in --storage and is resumed when it exists; several processes or machines may share it.

    The --run-dir folder holds the trials' folders (trial-0003/), best_params.json and history, importances
    and slice PNGs.

    Retrain the best: fmnist train --params <run-dir>/best_params.json, or --from-study --storage <run-dir>.
    """
    from fmnist.training.search_space import parse_target, resolve_space

    ranges = dict(latent_dim=latent_dim_range, lr=lr_range, l1=l1_range, l2=l2_range, head_width=head_width_range)
    resolve_space(target, ranges)  # the target and its ranges, checked before torch loads
    parse_target(target)
    require_training_extra("tune")
    from fmnist.runs import new_run_dir

    check_folder(run_dir if run_dir is not None else new_run_dir(), "--run-dir")
    base = Config.from_json(params) if params else DEFAULTS
    overrides = _hyper_parameters(base, values)
    from fmnist.training.run import Hardware
    from fmnist.training.tuning import tune as run_tune

    run_tune(
        target,
        base,
        overrides,
        ranges,
        trials=trials,
        data_dir=data_dir,
        run_dir=run_dir,
        storage=storage,
        study_name=study_name,
        ae_run=ae_run,
        pruner=pruner,
        heartbeat=heartbeat,
        sampler_seed=sampler_seed,
        download=download,
        # one device per trial: scale out with more `fmnist tune` processes on one --storage
        hardware=Hardware(accelerator, 1, "auto", precision, progress),
        plots=plots,
        echo=typer.echo,
    )


TUNE_HELPS = {"epochs": "Epochs per trial. " + _d(TUNE_EPOCHS)}
app.command("tune", cls=Command)(
    with_flags(report_errors(tune), flag_parameters(Config, panel=PANEL, unset=True, helps=TUNE_HELPS))
)


@app.command(cls=Command)
@report_errors
def export(
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="Training run to export. " + _d("the newest under runs/"))
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Bundle folder to write (replaced atomically).")] = Path(
        "artifacts"
    ),
    data_dir: DataDir = None,
    download: Download = True,
    pca_components: Annotated[int, typer.Option("--pca-components", min=1, help="PCA components for kde-pca.")] = 2,
    kde_points: Annotated[
        int, typer.Option("--kde-points", min=10, help="Encoded training images each KDE keeps (and ships).")
    ] = 5000,
) -> None:
    """Export a run's checkpoints to a bundle: ONNX graphs, PCA/KDE samplers, a manifest with hashes."""
    require_training_extra("export")
    from fmnist import runs
    from fmnist.export.bundle import export_bundle

    check_folder(out)
    if out.exists():  # the new bundle is written next to it, then renamed into its place
        check_folder(out.parent)
    run = run_dir if run_dir is not None else runs.latest_run()
    lock = out.parent / f".{out.name}.lock"  # beside it: the bundle folder itself is replaced whole
    with runs.hold_lock(lock, "fmnist export", f"--out {out}"), _bundle_space(out):
        manifest = export_bundle(
            run,
            out,
            data_dir=runs.data_dir_for(run, data_dir),
            download=download,
            pca_components=pca_components,
            kde_points=kde_points,
            log=typer.echo,
        )
    size = sum(f["size"] for f in manifest["files"].values())
    typer.echo(f"exported {run} -> {out} ({len(manifest['files'])} files, {size / 1e6:.1f} MB)")
    from fmnist.runtime.evaluation import headline

    for line in headline(manifest["metrics"]):
        typer.echo(f"  {line}")


@contextmanager
def _bundle_space(out: Path) -> Iterator[None]:
    """A full disk during export as one line: the staged bundle is removed and the old one kept."""
    from fmnist import runs

    kept = f"the bundle already in {out} is kept whole" if out.exists() else f"nothing is left in {out.parent}"
    try:
        yield
    except (OSError, RuntimeError) as e:
        if not runs.out_of_space(e):
            raise
        raise FmnistError(
            f"no space left on the device of {out.parent} while writing the bundle {out}; {kept}: "
            "free some space and export again"
        ) from None


@app.command(cls=Command)
@report_errors
def report(
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="Training run to report on. " + _d("the newest under runs/"))
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the PNGs and report.html. " + _d("report/ in the run folder")),
    ] = None,
    artifacts_dir: Annotated[
        Path | None,
        typer.Option(
            "--artifacts",
            help="Bundle whose PCA/KDE samplers to use; refitted here if it was exported from another run. "
            + _d("$FMNIST_ARTIFACTS, ./artifacts, the bundled default"),
        ),
    ] = None,
    data_dir: DataDir = None,
    download: Download = True,
    tsne_points: Annotated[
        int, typer.Option("--tsne-points", min=2, max=10_000, help="Encoded test images in the t-SNE map.")
    ] = 5000,
    tsne_perplexity: Annotated[float, typer.Option("--tsne-perplexity", min=1.0, help="t-SNE perplexity.")] = 30.0,
    seed: Annotated[
        int, typer.Option("--seed", help=f"Seed for t-SNE, its subset and the samplers (0 to {SEED_MAX}).")
    ] = 0,
    storage: Annotated[
        str | None,
        typer.Option("--storage", help="Optuna storage URL to plot, besides the *.db files in the run folder."),
    ] = None,
    study: Annotated[
        str | None, typer.Option("--study", help="Only this Optuna study name. " + _d("every study found"))
    ] = None,
    compare: Annotated[
        Path | None,
        typer.Option(
            "--compare",
            help="Run whose AE (untuned) to show beside this run's (tuned). " + _d("the seed recipe's bundle"),
        ),
    ] = None,
) -> None:
    """Every figure of the study (curves, reconstructions, latents, samples, tuning) as PNGs plus report.html."""
    if not 0 <= seed <= SEED_MAX:
        raise ConfigError(seed_message(seed))
    require_training_extra("report")
    from fmnist import runs
    from fmnist.analysis.report import make_report
    from fmnist.artifacts import resolve_bundle_dir

    run = run_dir if run_dir is not None else runs.latest_run()
    target = out if out is not None else run / "report"
    check_folder(target)
    made = make_report(
        run,
        target,
        data_dir=runs.data_dir_for(run, data_dir),
        download=download,
        bundle=resolve_bundle_dir(artifacts_dir),
        bundle_explicit=artifacts_dir is not None,
        tsne_points=tsne_points,
        tsne_perplexity=tsne_perplexity,
        seed=seed,
        storage=storage,
        study=study,
        compare=compare,
        log=typer.echo,
    )
    for notice in made.notices:
        typer.echo(f"notice: {notice}")
    typer.echo(f"report: {len(made.figures)} figures -> {target / 'report.html'}")


from fmnist.cli import inference as _inference  # noqa: E402
from fmnist.cli import serve as _serve  # noqa: E402

_inference.register(app)  # generate, classify, reconstruct, encode, evaluate
_serve.register(app)  # serve

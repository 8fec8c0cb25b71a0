"""The ``fmnist`` command line. Heavy libraries are imported inside the commands, so
``fmnist --help`` and the inference commands start fast."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fmnist.cli.extras import require_training_extra
from fmnist.cli.outputs import check_folder
from fmnist.config import ARCHS, DEFAULT_EPOCHS, DEFAULTS, MODELS
from fmnist.errors import ConfigError, report_errors
from fmnist.training.search_space import HEARTBEAT_S, PRUNERS, SEARCHED, TARGETS, TUNE_EPOCHS

app = typer.Typer(
    help="Train autoencoders on Fashion-MNIST and serve them as framework-free ONNX artifacts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _d(name: str) -> str:
    return f"(default: {getattr(DEFAULTS, name)})"


# Flags shared by every training command. Defaults live in fmnist.config.Config only:
# None here means "the config's default", shown in --help.
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="FMNIST_DATA",
        show_envvar=True,
        help="Folder holding FashionMNIST/raw (torchvision layout). "
        "(default: the run's own, recorded in RUN/run.json; else ~/.cache/fmnist)",
    ),
]
RunDir = Annotated[
    Path | None,
    typer.Option("--run-dir", help="Run folder for checkpoints, metrics and config. (default: a new runs/<time>)"),
]
Epochs = Annotated[
    int | None,
    typer.Option(
        "--epochs",
        help="Epochs for every model trained. (default: "
        + ", ".join(f"{m} {n}" for m, n in DEFAULT_EPOCHS.items())
        + ")",
    ),
]
LimitTrain = Annotated[
    int | None,
    typer.Option("--limit-train", help="Use the first N training images after the seeded shuffle. (default: all)"),
]
Seed = Annotated[int | None, typer.Option("--seed", help=f"Seed for split, init and batches. {_d('seed')}")]
LatentDim = Annotated[int | None, typer.Option("--latent-dim", help=f"Latent size d. {_d('latent_dim')}")]
Lr = Annotated[float | None, typer.Option("--lr", help=f"Adam learning rate. {_d('lr')}")]
L1 = Annotated[float | None, typer.Option("--l1", help=f"L1 penalty l1*sum|w| on the AE weights. {_d('l1')}")]
L2 = Annotated[float | None, typer.Option("--l2", help=f"L2 as Adam weight decay. {_d('l2')}")]
LrSchedule = Annotated[
    str | None,
    typer.Option("--lr-schedule", help=f"cosine (decay to 0 over --epochs) or constant. {_d('lr_schedule')}"),
]
BatchSize = Annotated[int | None, typer.Option("--batch-size", help=f"Batch size. {_d('batch_size')}")]
Download = Annotated[
    bool,
    typer.Option("--download/--no-download", help="Download Fashion-MNIST if it is not in the data folder."),
]
Unfreeze = Annotated[
    bool | None,
    typer.Option(
        "--unfreeze/--freeze",
        help="The classifier fine-tunes its encoder end to end (at lr x encoder_lr_scale); the head model "
        "always keeps it frozen. (default: unfreeze)",
    ),
]
Augment = Annotated[
    bool | None,
    typer.Option(
        "--augment/--no-augment",
        help="Train the classifier on images mirrored and (all but a plain half) shifted, zoomed, turned, "
        "re-contrasted, brightened and blurred. (default: augment)",
    ),
]
VaeScale = Annotated[
    str | None,
    typer.Option(
        "--vae-scale",
        help="The VAE likelihood's shared scale: optimal (sigma-VAE closed form) or learned (by gradient, "
        f"the seed's). {_d('vae_scale')}",
    ),
]
Params = Annotated[
    Path | None, typer.Option("--params", help="JSON of hyper-parameters (e.g. from `fmnist tune`); flags win.")
]
Accelerator = Annotated[str, typer.Option("--accelerator", help="Lightning accelerator: cpu, gpu, auto...")]
Precision = Annotated[str | None, typer.Option("--precision", help="Lightning precision: 32, bf16-mixed, ...")]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]


def _version(value: bool) -> None:
    if value:
        from fmnist import __version__

        typer.echo(f"fmnist {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = None,
) -> None:
    """Train autoencoders on Fashion-MNIST and serve them as framework-free ONNX artifacts."""


def _parse_model(model: str | None) -> tuple[str, ...] | None:
    if model is None:
        return None
    if model == "all":
        return MODELS
    if model not in MODELS:
        raise ConfigError(f"--model must be one of {', '.join(MODELS)} or all, not {model!r}")
    return (model,)


@app.command()
@report_errors
def train(
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="ae, head, classifier, vae, or all (in that order). (default: all; resumed: the run's)"
        ),
    ] = None,
    data_dir: DataDir = None,
    run_dir: RunDir = None,
    epochs: Epochs = None,
    limit_train: LimitTrain = None,
    seed: Seed = None,
    latent_dim: LatentDim = None,
    lr: Lr = None,
    l1: L1 = None,
    l2: L2 = None,
    batch_size: BatchSize = None,
    lr_schedule: LrSchedule = None,
    arch: Annotated[
        str | None, typer.Option("--arch", help=f"AE architecture: {' or '.join(ARCHS)}. {_d('arch')}")
    ] = None,
    head_width: Annotated[
        int | None,
        typer.Option("--head-width", help="Hidden width of a classifier's head. (default: head 256, classifier 126)"),
    ] = None,
    head_depth: Annotated[
        int | None,
        typer.Option("--head-depth", help="Hidden layers of a classifier's head. (default: head 2, classifier 1)"),
    ] = None,
    unfreeze: Unfreeze = None,
    augment: Augment = None,
    vae_scale: VaeScale = None,
    vae_likelihood: Annotated[
        str | None,
        typer.Option(
            "--vae-likelihood",
            help="The VAE decoder's likelihood: gaussian (one shared scale, the seed's), gaussian-pixel (a scale "
            f"per pixel, on dequantized pixels) or logistic (discretized, per pixel). {_d('vae_likelihood')}",
        ),
    ] = None,
    iw_samples: Annotated[
        int | None, typer.Option("--iw-samples", help=f"Importance samples for the VAE's log p(x). {_d('iw_samples')}")
    ] = None,
    params: Params = None,
    from_study: Annotated[
        bool,
        typer.Option(
            "--from-study", help="Hyper-parameters of the best trial in --storage (`fmnist tune`); flags win."
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
        str | None, typer.Option("--study-name", help="Study for --from-study. (default: the storage's only one)")
    ] = None,
    ae_run: Annotated[
        Path | None, typer.Option("--ae-run", help="Run folder whose AE the classifier uses. (default: this run's)")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue the run in --run-dir (default: the newest unfinished one) from its last.ckpt."
        ),
    ] = False,
    download: Download = True,
    accelerator: Accelerator = "auto",
    devices: Annotated[str, typer.Option("--devices", help="Lightning devices: a count, a list, or auto.")] = "auto",
    strategy: Annotated[str, typer.Option("--strategy", help="Lightning strategy: auto, ddp, ...")] = "auto",
    precision: Precision = None,
    progress: Progress = True,
) -> None:
    """Train the AE, a head on its frozen encoder (the seed's experiment), the classifier fine-tuned end
    to end on augmented images (the one a bundle serves), and the VAE; checkpoints, metrics CSV, summary."""
    require_training_extra("train")
    from fmnist.config import Config
    from fmnist.runs import new_run_dir
    from fmnist.training.run import Hardware, train_models

    check_folder(run_dir if run_dir is not None else new_run_dir(), "--run-dir")
    base = Config.from_json(params) if params else DEFAULTS
    if from_study:
        base = _study_config(params, storage, study_name)
    elif storage is not None or study_name is not None:
        raise ConfigError("--storage and --study-name choose the study for --from-study; add --from-study")
    overrides = dict(
        epochs=epochs,
        limit_train=limit_train,
        seed=seed,
        latent_dim=latent_dim,
        lr=lr,
        l1=l1,
        l2=l2,
        batch_size=batch_size,
        lr_schedule=lr_schedule,
        arch=arch,
        head_width=head_width,
        head_depth=head_depth,
        unfreeze=unfreeze,
        augment=augment,
        vae_scale=vae_scale,
        vae_likelihood=vae_likelihood,
        iw_samples=iw_samples,
    )
    hardware = Hardware(accelerator, devices, strategy, precision, progress)
    train_models(
        _parse_model(model),
        base,
        overrides,
        data_dir=data_dir,
        run_dir=run_dir,
        ae_run=ae_run,
        resume=resume,
        download=download,
        hardware=hardware,
    )


def _study_config(params: Path | None, storage: str | None, study_name: str | None):
    """``train --from-study``: the Config of the study's best trial."""
    from fmnist.config import Config

    if params is not None:
        raise ConfigError("--params and --from-study both give hyper-parameters: pick one")
    if storage is None:
        raise ConfigError("--from-study needs --storage: the study's database URL, SQLite file or tune run folder")
    from fmnist.training.tuning import best_params, load_study

    study = load_study(storage, study_name)
    values = best_params(study)
    typer.echo(f"hyper-parameters of study {study.study_name}, trial {study.best_trial.number}: {values}")
    return Config.from_dict(values)


def _range(name: str, target: str) -> typer.models.OptionInfo:
    """A range flag whose default and help come from the search-space table."""
    p = SEARCHED[name]
    scale = "log scale" if p.log else "uniform"
    return typer.Option(
        p.flag,
        metavar="LOW HIGH",
        help=f"{name} range, {p.kind.__name__}, {scale}. (default: {p.bounds()})",
        rich_help_panel=f"Search space: {target}",
        show_default=False,
    )


TrialEpochs = Annotated[int | None, typer.Option("--epochs", help=f"Epochs per trial. (default: {TUNE_EPOCHS})")]


@app.command()
@report_errors
def tune(
    target: Annotated[
        str, typer.Argument(metavar="TARGET", help="What to tune: ae or classifier.", show_default=False)
    ],
    trials: Annotated[
        int | None,
        typer.Option(
            "--trials",
            help="Trials this process runs, added to the study's. "
            f"(default: {', '.join(f'{t} {spec.trials}' for t, spec in TARGETS.items())})",
            rich_help_panel="Study",
        ),
    ] = None,
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
            "(sqlite:///study.db, postgresql://user@host/db) or a SQLite file. (default: RUN/study.db)",
            rich_help_panel="Study",
        ),
    ] = None,
    study_name: Annotated[
        str | None,
        typer.Option(
            "--study-name", help="Study to create or resume. (default: fmnist-TARGET)", rich_help_panel="Study"
        ),
    ] = None,
    pruner: Annotated[
        str,
        typer.Option("--pruner", help=f"Stop poor trials early: {' or '.join(PRUNERS)}.", rich_help_panel="Study"),
    ] = "median",
    heartbeat: Annotated[
        int,
        typer.Option(
            "--heartbeat",
            help="Seconds between a trial's heartbeats; a RUNNING trial silent for twice this (its process "
            "was killed) is marked failed.",
            rich_help_panel="Study",
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
            help="Write the study's plots when done (one worker of many may skip them).",
            rich_help_panel="Study",
        ),
    ] = True,
    data_dir: DataDir = None,
    run_dir: RunDir = None,
    epochs: TrialEpochs = None,
    limit_train: LimitTrain = None,
    seed: Seed = None,
    lr: Lr = None,
    l1: L1 = None,
    l2: L2 = None,
    batch_size: BatchSize = None,
    lr_schedule: LrSchedule = None,
    unfreeze: Unfreeze = None,
    params: Params = None,
    download: Download = True,
    accelerator: Accelerator = "auto",
    precision: Precision = None,
    progress: Progress = True,
) -> None:
    """Search hyper-parameters with Optuna; each trial is scored on the validation split, never the test set.

    The study lives in --storage and is resumed when it exists; several processes or machines may share it.

    RUN holds the trials' folders (trial-0003/), best_params.json and history, importances and slice PNGs.

    Retrain the best: fmnist train --params RUN/best_params.json, or --from-study --storage RUN.
    """
    require_training_extra("tune")
    from fmnist.config import Config
    from fmnist.runs import new_run_dir
    from fmnist.training.run import Hardware
    from fmnist.training.tuning import tune as run_tune

    check_folder(run_dir if run_dir is not None else new_run_dir(), "--run-dir")
    base = Config.from_json(params) if params else DEFAULTS
    overrides = dict(
        limit_train=limit_train,
        seed=seed,
        lr=lr,
        l1=l1,
        l2=l2,
        batch_size=batch_size,
        lr_schedule=lr_schedule,
        unfreeze=unfreeze,
        epochs=epochs,
    )
    ranges = dict(latent_dim=latent_dim_range, lr=lr_range, l1=l1_range, l2=l2_range, head_width=head_width_range)
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


@app.command()
@report_errors
def export(
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="Training run to export. (default: the newest under runs/)")
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


@app.command()
@report_errors
def report(
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="Training run to report on. (default: the newest under runs/)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for the PNGs and report.html. (default: RUN/report)")
    ] = None,
    artifacts_dir: Annotated[
        Path | None,
        typer.Option(
            "--artifacts",
            help="Bundle whose PCA/KDE samplers to use; refitted here if it was exported from another run. "
            "(default: $FMNIST_ARTIFACTS, ./artifacts, the bundled default)",
        ),
    ] = None,
    data_dir: DataDir = None,
    download: Download = True,
    tsne_points: Annotated[
        int, typer.Option("--tsne-points", min=2, max=10_000, help="Encoded test images in the t-SNE map.")
    ] = 5000,
    tsne_perplexity: Annotated[float, typer.Option("--tsne-perplexity", min=1.0, help="t-SNE perplexity.")] = 30.0,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed for t-SNE, its subset and the samplers.")] = 0,
    storage: Annotated[
        str | None,
        typer.Option("--storage", help="Optuna storage URL to plot, besides the RUN/**/*.db files found."),
    ] = None,
    study: Annotated[
        str | None, typer.Option("--study", help="Only this Optuna study name. (default: every study found)")
    ] = None,
    compare: Annotated[
        Path | None,
        typer.Option(
            "--compare",
            help="Run whose AE (untuned) to show beside this run's (tuned). (default: the seed recipe's bundle)",
        ),
    ] = None,
) -> None:
    """Every figure of the study (curves, reconstructions, latents, samples, tuning) as PNGs plus report.html."""
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

"""``fmnist report``: load a run (and its bundle's samplers), compute, plot, write ``report.html``.

Samplers: the PCA/KDE objects come from the artifact bundle when its manifest says it was exported
from this very run. Otherwise (another run's bundle, or none at all) they are refitted here on the
run's encoded training images, with ``REFIT_KDE_POINTS`` points per KDE, and the page says so:
another run's latent space would make the sampled figures meaningless, and a refit takes seconds.
"""

from __future__ import annotations

import base64
import csv
import functools
import html
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fmnist import CLASS_NAMES, artifacts, runs
from fmnist.analysis import figures
from fmnist.errors import BundleError, ConfigError
from fmnist.training import data as data_mod
from fmnist.training import evaluate
from fmnist.training import figures as train_figures

MODELS = runs.BUNDLED_MODELS  # what the report needs; the head's figures are shown when present
SUMMARIES = ("ae", "head", "classifier", "vae")
MAX_TSNE_POINTS = 10_000
REFIT_KDE_POINTS = 2000
N_SAMPLES = 64  # images per sampler grid (8 x 8)
INTERPOLATION_STEPS = 10
INTERPOLATION_CLASSES = (0, 9)  # the first test T-shirt/top -> the first test Ankle boot
PREVIEW_PER_CLASS = 10  # training images per class in the dataset preview
# the seed recipe's bundle, shipped in a source checkout: the untuned AE the report compares with
SEED_BUNDLE = Path(__file__).resolve().parents[3] / "benchmarks" / "bundles" / "seed"

CURVES = {  # model: (title, [(y label, metrics.csv columns)])
    "ae": ("Autoencoder", [("loss (MSE + L1)", ["train_loss", "val_loss"]), ("MSE", ["train_mse", "val_mse"])]),
    "head": (
        "Head on the frozen encoder",
        [("cross-entropy", ["train_loss", "val_loss"]), ("accuracy", ["train_acc", "val_acc"])],
    ),
    "classifier": (
        "Classifier (fine-tuned, augmented)",
        [("cross-entropy", ["train_loss", "val_loss"]), ("accuracy", ["train_acc", "val_acc"])],
    ),
    "vae": (
        "VAE",
        [
            ("ELBO (nats)", ["train_elbo", "val_elbo"]),
            ("reconstruction term", ["train_rec", "val_rec"]),
            ("KL", ["train_kl", "val_kl"]),
        ],
    ),
}


@dataclass
class Figure:
    file: str
    section: str
    caption: str


@dataclass
class Report:
    """What the page shows: figures in order, notices (skipped or refitted parts), key numbers."""

    out: Path
    figures: list[Figure] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    samplers_source: str = ""

    def add(self, path: Path, section: str, caption: str) -> None:
        self.figures.append(Figure(Path(path).name, section, caption))


@dataclass(frozen=True)
class Samplers:
    pca: object
    kde_pca: object
    kde_latent: object
    source: str


# -- loading -------------------------------------------------------------------------------------


def read_metrics(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """metrics.csv -> (epochs, {column: values}); empty cells become NaN."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ConfigError(f"{path} has no epochs")
    columns = {k: np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in rows]) for k in rows[0]}
    return columns.pop("epoch"), columns


def load_samplers(
    run_dir: Path, bundle: Path, explicit: bool, train_latents: Callable[[], np.ndarray], seed: int, log
) -> Samplers:
    """The bundle's fitted PCA/KDEs if the bundle was exported from ``run_dir``, else a quick refit.

    An explicit ``--artifacts`` that is not a valid bundle is an error; an implicit default that is
    missing or broken only triggers the refit (with a notice).
    """
    import joblib

    reason = None
    try:
        manifest = artifacts.load_manifest(bundle)
    except BundleError as e:
        if explicit:
            raise
        reason = f"no usable bundle ({e})"
    else:
        exported_from = manifest.get("provenance", {}).get("run_dir")
        if exported_from != str(run_dir.resolve()):
            reason = f"bundle {bundle} was exported from {exported_from}, not from {run_dir}"
        elif not all(name in manifest["files"] for name in artifacts.SKLEARN_PICKLES):
            reason = f"bundle {bundle} lacks the scikit-learn pickles"
    if reason is None:
        fitted = [joblib.load(bundle / name) for name in artifacts.SKLEARN_PICKLES]
        return Samplers(*fitted, source=f"bundle {bundle} (exported from this run)")
    from fmnist.export.samplers import fit_samplers

    log(f"{reason}: refitting PCA/KDE on this run's encoded training images ({REFIT_KDE_POINTS} points per KDE)")
    start = time.perf_counter()
    s = fit_samplers(train_latents(), 2, REFIT_KDE_POINTS, seed)
    for notice in s.notices:
        log(f"notice: {notice}")
    log(f"refit done in {time.perf_counter() - start:.1f} s")
    return Samplers(s.pca, s.kde_pca, s.kde_latent, source=f"refitted here: {reason}")


CLASS_ROW = 10  # samples per class in the per-class figure


def class_rows(report: Report, bundle: Path, source: str, decoder, seed: int) -> None:
    """One row of class-conditional kde samples per class: the bundle's per-class KDEs (when it was
    exported from this run and has them), decoded by this run's AE decoder."""
    from fmnist.runtime.bundle import Bundle

    model = Bundle(bundle, "cpu") if source.startswith("bundle") else None
    if model is None or not model.has_classes():
        report.notices.append("per-class samples skipped: they need this run's bundle, exported at format 2")
        return
    rows = [decode(decoder, model.sample_latents(CLASS_ROW, "kde", seed, label=k)) for k in range(len(CLASS_NAMES))]
    caption = "kde with a class: the KDE of each class's training latents -> AE decoder, one row per class"
    columns = [str(i + 1) for i in range(CLASS_ROW)]
    path = figures.image_rows(rows, list(CLASS_NAMES), columns, caption, report.out / "samples_kde_by_class.png")
    report.add(path, "Generated images", caption + ".")


@torch.inference_mode()
def decode(decoder, z: np.ndarray) -> np.ndarray:
    """(N, d) latents -> (N, 28, 28) images in [0, 1]."""
    return decoder(torch.as_tensor(np.asarray(z), dtype=torch.float32)).squeeze(1).numpy()


def first_of_each_class(labels: torch.Tensor) -> list[int]:
    """Index of the first test image of every class, in class order (a fixed, seed-free choice)."""
    indices = []
    for k in range(len(CLASS_NAMES)):
        hits = (labels == k).nonzero()
        if len(hits) == 0:
            raise ConfigError(f"the test set has no image of class {k} ({CLASS_NAMES[k]})")
        indices.append(int(hits[0]))
    return indices


def latent_2d(latents: np.ndarray, pca) -> tuple[np.ndarray, tuple[str, str]]:
    """The two latent dimensions when d = 2, else the first two PCA components."""
    if latents.shape[1] == 2:
        return latents, ("z1", "z2")
    return pca.transform(latents)[:, :2], ("PC1", "PC2")


def interpolate(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    """Straight line from latent ``a`` to ``b`` (both (d,)) -> (steps, d)."""
    t = np.linspace(0.0, 1.0, steps)[:, None]
    return (1 - t) * a + t * b


def tsne(points: np.ndarray, perplexity: float, seed: int, log) -> np.ndarray:
    """sklearn t-SNE to 2-D, with start/end messages (its own progress lines silenced)."""
    from sklearn.manifold import TSNE

    if perplexity >= len(points):
        raise ConfigError(f"--tsne-perplexity {perplexity} must be below the number of points ({len(points)})")
    log(f"t-SNE on {len(points)} points (perplexity {perplexity}, seed {seed})...")
    start = time.perf_counter()
    embedded = TSNE(2, perplexity=perplexity, random_state=seed, init="pca", verbose=0).fit_transform(points)
    log(f"t-SNE done in {time.perf_counter() - start:.1f} s")
    return embedded


# -- sections ------------------------------------------------------------------------------------


def curve_figures(run_dir: Path, report: Report) -> None:
    for model, (title, panels) in CURVES.items():
        path = runs.model_dir(run_dir, model) / runs.METRICS_FILE
        if not path.is_file():
            report.notices.append(f"no {path}: {model} loss curves skipped")
            continue
        epochs, columns = read_metrics(path)
        out = report.out / f"loss_{model}.png"
        figures.loss_curves(epochs, columns, panels, f"{title}: training curves", out)
        report.add(out, "Training curves", f"{title}: {', '.join(c for _, cs in panels for c in cs)} per epoch.")


def study_figures(stores: list[tuple[str, str]], study_name: str | None, report: Report, log) -> None:
    """History and parameter-importance plots of every Optuna study in ``stores`` ((slug, url))."""
    if not stores:
        report.notices.append("no Optuna study found (RUN/**/*.db, --storage): tuning figures skipped")
        return
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # Optuna's plots switch matplotlib to its ggplot style globally; keep that inside this section
    with figures._pyplot().rc_context():
        for slug, url in stores:
            _plot_studies(slug, url, study_name, report, log)


def _plot_studies(slug: str, url: str, study_name: str | None, report: Report, log) -> None:
    """History and importance figures of one storage's studies (or only ``study_name``)."""
    import optuna
    from optuna.visualization import matplotlib as ovm

    names = optuna.study.get_all_study_names(url)
    if study_name is not None:
        if study_name not in names:
            report.notices.append(f"no study {study_name!r} in {url} (it holds {', '.join(names) or 'none'})")
        names = [n for n in names if n == study_name]
    for name in names:
        study = optuna.load_study(study_name=name, storage=url)
        label = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{slug}-{name}" if slug else name)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if len(study.directions) > 1:
            report.notices.append(f"study {name}: multi-objective, tuning figures skipped")
            continue
        if not done:
            report.notices.append(f"study {name} in {url}: no completed trial, tuning figures skipped")
            continue
        log(f"study {name}: {len(done)} completed trials")
        out = figures.axes_figure(ovm.plot_optimization_history(study), report.out / f"study_{label}_history.png")
        report.add(out, "Tuning", f"Optuna study {name!r} ({url}): objective per trial and best so far.")
        try:
            ax = ovm.plot_param_importances(study)
        except (ValueError, RuntimeError) as e:  # e.g. one trial, or a parameter that never varied
            report.notices.append(f"study {name}: parameter importances skipped ({e})")
            continue
        out = figures.axes_figure(ax, report.out / f"study_{label}_importance.png")
        report.add(out, "Tuning", f"Optuna study {name!r}: parameter importances (fANOVA).")


def find_studies(run_dir: Path, storage: str | None) -> list[tuple[str, str]]:
    stores = [(db.stem, f"sqlite:///{db.resolve()}") for db in sorted(run_dir.glob("**/*.db"))]
    if storage:
        stores.append(("", storage))
    return stores


def dataset_preview(train: data_mod.Split, report: Report) -> None:
    """The first PREVIEW_PER_CLASS training images of each class, one row per class."""
    labels = train.labels.numpy()
    rows = []
    for k in range(len(CLASS_NAMES)):
        picks = np.flatnonzero(labels == k)[:PREVIEW_PER_CLASS]
        if len(picks) < PREVIEW_PER_CLASS:
            report.notices.append(f"under {PREVIEW_PER_CLASS} training images of {CLASS_NAMES[k]}: no dataset preview")
            return
        rows.append(train.images[picks].numpy() / 255.0)  # (n, 28, 28)
    columns = [f"#{i + 1}" for i in range(PREVIEW_PER_CLASS)]
    title = f"Fashion-MNIST: the first {PREVIEW_PER_CLASS} training images of each class"
    path = figures.image_rows(rows, list(CLASS_NAMES), columns, title, report.out / "dataset_preview.png")
    report.add(path, "Data", f"The first {PREVIEW_PER_CLASS} images of each class in the official training set.")


def compared_reconstructions(compare: Path | None, x: torch.Tensor) -> tuple[np.ndarray, str] | None:
    """Reconstructions of ``x`` by the AE this run is compared with: ``--compare RUN``'s, else the
    seed recipe's bundle (None when neither is there) -> ((N, 28, 28), its row label)."""
    if compare is not None:
        other = runs.load_models(compare, ("ae",), needed_by="--compare")["ae"].model.eval()
        with torch.inference_mode():
            return other(x).squeeze(1).numpy(), Path(compare).name
    if not (SEED_BUNDLE / artifacts.MANIFEST).is_file():
        return None
    from fmnist.runtime.bundle import Bundle

    return Bundle(SEED_BUNDLE, "cpu").reconstruct(x.squeeze(1).numpy()), "seed recipe"


def comparison_figure(compare: Path | None, x: torch.Tensor, ours: np.ndarray, names, report: Report) -> None:
    """Test images, the other AE's reconstructions (untuned) and this run's (tuned), side by side."""
    theirs = compared_reconstructions(compare, x)
    if theirs is None:
        report.notices.append(f"no --compare run and no seed bundle at {SEED_BUNDLE}: comparison skipped")
        return
    images, label = theirs
    title = f"AE reconstructions: {label} beside this run"
    rows = [x.squeeze(1).numpy(), images, ours]
    out = report.out / "reconstructions_compared.png"
    path = figures.image_rows(rows, ["test", label, "this run"], names, title, out)
    source = f"the run {compare}" if compare is not None else f"the seed recipe's bundle ({SEED_BUNDLE})"
    report.add(path, "Reconstructions", f"Test images, then the AE of {source}, then this run's AE.")


def bandwidth_figure(samplers: Samplers, train_latents: Callable[[], np.ndarray], seed: int, report: Report) -> None:
    """The KDE bandwidths in use and the cross-validation curves that choose them, recomputed on
    REFIT_KDE_POINTS encoded training images with export's own search."""
    from fmnist.export.samplers import bandwidth_search

    latents = train_latents().astype(np.float64)
    points = latents[np.random.default_rng(seed).permutation(len(latents))[:REFIT_KDE_POINTS]]
    curves = {}
    for name, kde, coords in (
        ("kde", samplers.kde_latent, points),
        ("kde-pca", samplers.kde_pca, samplers.pca.transform(points)),
    ):
        search, grid, scott = bandwidth_search(coords, seed)
        scores = search.cv_results_
        curves[name] = {
            "grid": grid,
            "mean": scores["mean_test_score"] / (len(coords) / 5),  # per held-out point (5 folds)
            "std": scores["std_test_score"] / (len(coords) / 5),
            "chosen": float(kde.bandwidth_),
            "scott": scott,
        }
    path = figures.bandwidth_curves(curves, report.out / "kde_bandwidths.png")
    chosen = ", ".join(f"{n} {c['chosen']:.3g}" for n, c in curves.items())
    report.add(
        path,
        "Latent space",
        f"KDE bandwidths in use: {chosen}; the curves are 5-fold cross-validation on {len(points)} encoded "
        "training images, as export chooses them.",
    )


# -- the page ------------------------------------------------------------------------------------


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def key_numbers(run_dir: Path) -> list[tuple[str, str, str]]:
    """(model, key, value) for every scalar in each model's summary.json."""
    rows = []
    for model in SUMMARIES:
        for k, v in runs.read_summary(run_dir, model).items():
            if k != "model" and isinstance(v, int | float | str):
                rows.append((model, k, _fmt(v)))
    return rows


def write_html(report: Report, run_dir: Path, numbers: list[tuple[str, str, str]], settings: dict) -> Path:
    """``report.html``: the key-number table, notices, then every figure embedded as base64."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>fmnist report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
        "figure{margin:1em 0}img{max-width:100%}figcaption{color:#444;font-size:90%}</style></head><body>",
        f"<h1>fmnist report</h1><p>Run: <code>{e(str(run_dir.resolve()))}</code><br>"
        f"Written {e(time.strftime('%Y-%m-%d %H:%M:%S'))}<br>Samplers: {e(report.samplers_source)}<br>"
        f"Settings: {e(', '.join(f'{k}={v}' for k, v in settings.items()))}</p>",
        "<h2>Key numbers</h2><table><tr><th>model</th><th>metric</th><th>value</th></tr>",
        *(f"<tr><td>{m}</td><td>{e(k)}</td><td>{v}</td></tr>" for m, k, v in numbers),
        "</table>",
    ]
    if report.notices:
        parts += ["<h2>Notices</h2><ul>", *(f"<li>{e(n)}</li>" for n in report.notices), "</ul>"]
    section = None
    for fig in report.figures:
        if fig.section != section:
            section = fig.section
            parts.append(f"<h2>{e(section)}</h2>")
        data = base64.b64encode((report.out / fig.file).read_bytes()).decode("ascii")
        parts.append(
            f"<figure id='{e(fig.file)}'><img alt='{e(fig.file)}' src='data:image/png;base64,{data}'>"
            f"<figcaption><code>{e(fig.file)}</code>: {e(fig.caption)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    path = report.out / "report.html"
    path.write_text("\n".join(parts) + "\n")
    return path


# -- the whole report ----------------------------------------------------------------------------


def make_report(
    run_dir: Path,
    out: Path,
    *,
    data_dir: Path,
    download: bool,
    bundle: Path,
    bundle_explicit: bool,
    tsne_points: int,
    tsne_perplexity: float,
    seed: int,
    storage: str | None = None,
    study: str | None = None,
    compare: Path | None = None,
    log: Callable[[str], None] = print,
) -> Report:
    """Every figure as a PNG in ``out`` and ``out/report.html``; returns what was written."""
    run_dir, out = Path(run_dir), Path(out)
    runs.best_checkpoints(run_dir, MODELS, needed_by="the report")
    if not 2 <= tsne_points <= MAX_TSNE_POINTS:
        raise ConfigError(f"--tsne-points must be between 2 and {MAX_TSNE_POINTS}, not {tsne_points}")
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out)
    modules = runs.load_models(run_dir, MODELS, needed_by="the report")
    ae, clf, vae = (modules[m].model for m in MODELS)
    config = modules["ae"].config
    test = data_mod.load_official(data_dir, train=False, download=download)

    log("dataset preview")
    dataset_preview(data_mod.load_official(data_dir, train=True, download=download), report)

    log("training curves")
    curve_figures(run_dir, report)

    log("reconstructions and classifier")
    picks = first_of_each_class(test.labels)
    x = data_mod.to_float(test.images[picks])
    with torch.inference_mode():
        rows = {"ae": ae(x), "vae": vae.decoder(vae.encode(x)[0])}
    names = [n.replace("/", "/\n") for n in CLASS_NAMES]
    for model, title in (("ae", "AE"), ("vae", "VAE (posterior mean)")):
        path = figures.image_rows(
            [x.squeeze(1).numpy(), rows[model].squeeze(1).numpy()],
            ["test", title.split()[0]],
            names,
            f"{title} reconstructions of the first test image of each class",
            out / f"reconstructions_{model}.png",
        )
        report.add(path, "Reconstructions", f"Test images (top) and their {title} reconstructions (bottom).")
    comparison_figure(compare, x, rows["ae"].squeeze(1).numpy(), names, report)

    metrics = evaluate.classifier_metrics(clf, test)
    train_figures.save_confusion(metrics["confusion"], out)
    report.add(out / "confusion_matrix.png", "Classifier", "Row-normalised confusion matrix on the test set.")
    path = figures.per_class_accuracy(metrics["per_class_accuracy"], out / "per_class_accuracy.png")
    report.add(path, "Classifier", f"Per-class test accuracy (overall {metrics['accuracy']:.4f}).")

    log("latent space")
    latents = runs.encode(ae.encoder, test.images)  # (N, d)
    labels = test.labels.numpy()

    @functools.cache
    def train_latents() -> np.ndarray:
        splits = data_mod.load_splits(
            data_dir, val_fraction=config.val_fraction, seed=config.seed, limit=config.limit_train, download=download
        )
        return runs.encode(ae.encoder, splits.train.images)

    samplers = load_samplers(run_dir, bundle, bundle_explicit, train_latents, config.seed, log)
    report.samplers_source = samplers.source
    if samplers.source.startswith("refitted"):
        report.notices.append(f"PCA/KDE {samplers.source}")

    if config.latent_dim >= 2:
        data_2d, axis_labels = latent_2d(latents, samplers.pca)
        if config.latent_dim == 2:
            sampled, kde_name = samplers.kde_latent.sample(len(latents), random_state=seed), "KDE on the latent"
        else:
            sampled, kde_name = samplers.kde_pca.sample(len(latents), random_state=seed)[:, :2], "KDE in PCA space"
        path = figures.latent_histograms(data_2d, sampled, axis_labels, kde_name, out / "latent_histogram.png")
        report.add(path, "Latent space", f"2-D histograms ({', '.join(axis_labels)}): test set vs {kde_name}.")
        if config.latent_dim == 2:  # the seed's first experiment: the map is the latent itself
            title, name, caption = "AE latents of the test set (d = 2)", "latent_map.png", "The encoded test set"
        else:
            title, name, caption = "AE latents of the test set: PCA", "latent_pca.png", "Encoded test set on PC1, PC2"
        path = figures.class_map(data_2d, labels, title, axis_labels, out / name)
        report.add(path, "Latent space", f"{caption}, by class.")
    else:
        report.notices.append("latent_dim 1: 2-D latent histogram and PCA map skipped")
    bandwidth_figure(samplers, train_latents, config.seed, report)
    rng = np.random.default_rng(seed)
    subset = rng.permutation(len(latents))[: min(tsne_points, len(latents))]
    embedded = tsne(latents[subset], tsne_perplexity, seed, log)
    path = figures.class_map(
        embedded,
        labels[subset],
        f"AE latents of the test set: t-SNE ({len(subset)} points)",
        ("t-SNE 1", "t-SNE 2"),
        out / "latent_tsne.png",
    )
    report.add(path, "Latent space", f"t-SNE of {len(subset)} encoded test images (perplexity {tsne_perplexity}).")

    log("generated images")
    normal = torch.randn(N_SAMPLES, config.latent_dim, generator=torch.Generator().manual_seed(seed))
    z_pca = samplers.pca.inverse_transform(samplers.kde_pca.sample(N_SAMPLES, random_state=seed))
    generated = {
        "kde_pca": (decode(ae.decoder, z_pca), "kde-pca: KDE sample in PCA space -> inverse PCA -> AE decoder"),
        "kde": (
            decode(ae.decoder, samplers.kde_latent.sample(N_SAMPLES, random_state=seed)),
            "kde: KDE sample of the full latent -> AE decoder",
        ),
        "vae": (decode(vae.decoder, normal), "vae: z ~ N(0, I) -> VAE decoder"),
    }
    for name, (images, caption) in generated.items():
        path = figures.sample_grid(images, caption, out / f"samples_{name.replace('_', '-')}.png")
        report.add(path, "Generated images", caption + ".")
    class_rows(report, bundle, samplers.source, ae.decoder, seed)

    a, b = (picks[k] for k in INTERPOLATION_CLASSES)
    pair = test.images[[a, b]]
    ends = {"AE": runs.encode(ae.encoder, pair), "VAE": runs.encode(lambda t: vae.encode(t)[0], pair)}
    strips = [
        decode(ae.decoder, interpolate(*ends["AE"], INTERPOLATION_STEPS)),
        decode(vae.decoder, interpolate(*ends["VAE"], INTERPOLATION_STEPS)),
    ]
    steps = [f"t={t:.2f}" for t in np.linspace(0, 1, INTERPOLATION_STEPS)]
    title = f"Latent interpolation: {CLASS_NAMES[INTERPOLATION_CLASSES[0]]} -> {CLASS_NAMES[INTERPOLATION_CLASSES[1]]}"
    path = figures.image_rows(strips, list(ends), steps, title, out / "interpolation.png")
    report.add(path, "Generated images", "Decoded straight lines between the latents of two test images.")

    log("tuning studies")
    study_figures(find_studies(run_dir, storage), study, report, log)

    settings = {"tsne_points": len(subset), "tsne_perplexity": tsne_perplexity, "seed": seed}
    write_html(report, run_dir, key_numbers(run_dir), settings)
    return report

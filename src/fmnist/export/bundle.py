"""``fmnist export``: a training run's checkpoints -> one verified, atomically written bundle."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from fmnist import CLASS_NAMES, __version__, artifacts, degenerate, runs
from fmnist.config import MODELS, Config
from fmnist.contract.graphs import GRAPHS
from fmnist.errors import ConfigError
from fmnist.export import install
from fmnist.export.graphs import example_input, export_graph, graph_module
from fmnist.export.samplers import fit_samplers, save_samplers
from fmnist.training import data as data_mod
from fmnist.training import evaluate

CHECK_IMAGES = 256  # real test images every graph is compared on
LIBRARIES = ("torch", "lightning", "onnx", "onnxruntime", "onnxscript", "scikit-learn", "numpy", "joblib")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in LIBRARIES}


def vae_training_metrics(vae, summary: dict) -> dict:
    """The VAE's entries of the manifest's ``training_metrics``: from its run's ``summary``."""
    return {
        "vae_elbo": summary.get("test_elbo"),
        "vae_log_px": summary.get("test_log_px"),
        "vae_iw_samples": vae.config.iw_samples,
    }


def write_graphs(modules: dict, check: torch.Tensor, folder: Path, graphs_of: tuple = GRAPHS) -> dict[str, dict]:
    """Each graph of ``graphs_of`` (all the contract's), checked against PyTorch on ``check`` (real test images)."""
    models = {name: m.model for name, m in modules.items()}
    graphs = {}
    for graph in graphs_of:
        module, example = graph_module(graph, models), example_input(graph, models, check)
        entry = graph.entry()
        absolute, scaled = export_graph(module, example, folder / graph.file, entry["inputs"][0], entry["outputs"])
        graphs[graph.name] = {**entry, "max_abs_diff_vs_torch": absolute, "max_scaled_diff_vs_torch": scaled}
    return graphs


def decoded_classes(modules: dict, latents: np.ndarray, batch: int = 2000) -> np.ndarray:
    """The classifier's class for the AE's decoding of each latent (N,), for the per-class KDEs."""
    decoder, classifier = modules["ae"].model.decoder.eval(), modules["classifier"].model.eval()
    z = torch.from_numpy(latents).float()
    with torch.inference_mode():
        return torch.cat([classifier(decoder(z[i : i + batch])).argmax(1) for i in range(0, len(z), batch)]).numpy()


def fit_run_samplers(modules: dict, train: data_mod.Split, pca_components: int, kde_points: int, seed: int):
    """The bundle's samplers, fitted on the run's encoded training images and, per class, their labels."""
    latents = runs.encode(modules["ae"].model.encoder, train.images)
    labels, decoded = train.labels.numpy(), decoded_classes(modules, latents)
    return fit_samplers(latents, pca_components, kde_points, seed, labels, tuple(CLASS_NAMES), decoded)


def evaluate_written(folder: Path, test: data_mod.Split, train: data_mod.Split, seed: int) -> dict:
    """``fmnist evaluate``'s figures for the bundle in ``folder`` (onnxruntime, not PyTorch)."""
    from fmnist.runtime.bundle import Bundle
    from fmnist.runtime.evaluation import evaluate_bundle

    images, train_images = (data_mod.to_float(s.images).squeeze(1).numpy() for s in (test, train))
    return evaluate_bundle(Bundle(folder, "cpu"), images, test.labels.numpy(), train_images, seed)


def vae_likelihood(vae) -> dict:
    """The manifest's ``vae`` entry: the likelihood, its mean log scale, and per-pixel ones if any."""
    scales = vae.log_scale.detach().flatten()
    entry = {"log_scale": scales.mean().item(), "likelihood": vae.likelihood}
    return entry if len(scales) == 1 else {**entry, "log_scales": scales.tolist()}


def usability_notices(modules: dict, test: data_mod.Split) -> list[str]:
    """Notices for a degenerate classifier or AE (fmnist.degenerate), measured on the test set."""
    images = test.images.numpy() / 255.0
    return degenerate.notices(
        accuracy=evaluate.classifier_metrics(modules["classifier"].model, test)["accuracy"],
        reconstruction_mse=evaluate.ae_metrics(modules["ae"].model, test)["mse"],
        baseline_mse=degenerate.mean_image_mse(images),
    )


def export_bundle(
    run_dir: Path,
    out: Path,
    *,
    data_dir: Path,
    download: bool,
    pca_components: int,
    kde_points: int,
    log: Callable[[str], None] = print,
) -> dict:
    """Export ``run_dir`` to the bundle ``out``; notices (a degenerate model, a KDE bandwidth at its
    grid's edge) go to ``log``."""
    run_dir, out = Path(run_dir), Path(out)
    if out.exists() and not (out / artifacts.MANIFEST).is_file():
        raise ConfigError(f"--out {out} exists and is not an fmnist bundle; choose another folder")
    modules = runs.load_models(run_dir)
    config: Config = modules["ae"].config  # the data split and seed its samplers were fitted with
    splits = data_mod.load_splits(
        data_dir, val_fraction=config.val_fraction, seed=config.seed, limit=config.limit_train, download=download
    )
    check = data_mod.to_float(splits.test.images[:CHECK_IMAGES])
    install.remove_leftovers(out)
    tmp = install.staging_dir(out)
    try:
        graphs = write_graphs(modules, check, tmp)
        fitted = fit_run_samplers(modules, splits.train, pca_components, kde_points, config.seed)
        samplers = save_samplers(fitted, tmp)
        ae, head, clf, vae = (runs.read_summary(run_dir, m) for m in MODELS)
        contents = {
            "package_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "libraries": _versions(),
            "config": (runs.read_recipe(run_dir) or config).to_dict(),  # the recipe; each model's in "configs"
            "configs": {m: mod.config.to_dict() for m, mod in modules.items()},
            "latent_dim": config.latent_dim,
            "class_names": list(CLASS_NAMES),
            "input_contract": artifacts.INPUT_CONTRACT,
            "graphs": graphs,
            "vae": vae_likelihood(modules["vae"].model),
            "samplers": samplers,
            "training_metrics": {  # test-set figures of the run's summaries, from PyTorch
                "reconstruction_mse": ae.get("test_mse"),
                "classifier_accuracy": clf.get("test_accuracy"),
                "classifier_per_class_accuracy": clf.get("test_per_class_accuracy"),
                "head_accuracy": head.get("test_accuracy"),  # the seed's experiment: head on the frozen encoder
                **vae_training_metrics(modules["vae"], vae),
                "wall_time_s": {m: s.get("wall_time_s") for m, s in zip(MODELS, (ae, head, clf, vae), strict=True)},
            },
            "provenance": {
                # the folders are the build machine's: evaluate looks elsewhere when they are not here
                "machine": platform.node(),
                "run_dir": str(run_dir.resolve()),
                "data_dir": os.path.abspath(data_dir),
                "command": " ".join(["fmnist", *sys.argv[1:]]),
                "git_commit": _git_commit(),
                "best_epochs": {m: s.get("best_epoch") for m, s in zip(MODELS, (ae, head, clf, vae), strict=True)},
            },
        }
        artifacts.write_manifest(tmp, contents)
        # what `fmnist evaluate` prints, measured here from the written bundle by the same code
        contents["metrics"] = evaluate_written(tmp, splits.test, splits.train, config.seed)
        manifest = artifacts.write_manifest(tmp, contents)
        artifacts.load_manifest(tmp)  # verify what was written before it becomes visible
        install.install(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for notice in [*usability_notices(modules, splits.test), *fitted.notices]:
        log(f"notice: {notice}")
    return manifest

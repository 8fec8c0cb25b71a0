"""``fmnist export``: a training run's checkpoints -> one verified, atomically written bundle."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from fmnist import CLASS_NAMES, __version__, artifacts
from fmnist.config import MODELS, Config
from fmnist.errors import ConfigError
from fmnist.export.graphs import ClassifierGraph, VAEEncoderGraph, export_graph
from fmnist.export.samplers import fit_samplers, save_samplers
from fmnist.training import data as data_mod
from fmnist.training.modules import load_module

CHECK_IMAGES = 256  # real test images every graph is compared on
LIBRARIES = ("torch", "lightning", "onnx", "onnxruntime", "onnxscript", "scikit-learn", "numpy", "joblib")


def latest_run(root: Path = Path("runs")) -> Path:
    runs = sorted(p.parent.parent for p in root.glob("*/ae/best.ckpt"))
    if not runs:
        raise ConfigError(f"no trained run under {root}/ (run `fmnist train`, or pass --run-dir)")
    return max(runs, key=lambda p: (p / "ae" / "best.ckpt").stat().st_mtime)


def _checkpoints(run_dir: Path) -> dict[str, Path]:
    paths = {m: run_dir / m / "best.ckpt" for m in ("ae", "classifier", "vae")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise ConfigError(f"{missing[0]} not found: export needs a run with all three models (fmnist train)")
    return paths


def _summary(run_dir: Path, model: str) -> dict:
    path = run_dir / model / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


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


@torch.inference_mode()
def _encode(encoder, split: data_mod.Split, batch: int = 2000) -> np.ndarray:
    return torch.cat(
        [encoder(data_mod.to_float(split.images[i : i + batch])) for i in range(0, len(split), batch)]
    ).numpy()


def write_graphs(modules: dict, check: torch.Tensor, folder: Path) -> dict[str, dict]:
    """All five graphs, each checked against PyTorch on ``check`` (real test images)."""
    ae, clf, vae = modules["ae"].model, modules["classifier"].model, modules["vae"].model
    with torch.inference_mode():
        latents, vae_latents = ae.encoder(check), vae.encode(check)[0]
    specs = {  # name: (module, example input, input name, output names)
        "encoder": (ae.encoder, check, "image", ["latent"]),
        "decoder": (ae.decoder, latents, "latent", ["image"]),
        "classifier": (ClassifierGraph(clf), check, "image", ["logits", "probabilities", "features"]),
        "vae_encoder": (VAEEncoderGraph(vae), check, "image", ["mean", "logvar"]),
        "vae_decoder": (vae.decoder, vae_latents, "latent", ["image"]),
    }
    graphs = {}
    for name, (module, example, input_name, outputs) in specs.items():
        file = artifacts.GRAPHS[name]
        absolute, scaled = export_graph(module, example, folder / file, input_name, outputs)
        graphs[name] = {
            "file": file,
            "inputs": [input_name],
            "outputs": outputs,
            "max_abs_diff_vs_torch": absolute,
            "max_scaled_diff_vs_torch": scaled,
        }
    return graphs


def evaluate_written(folder: Path, test: data_mod.Split, train: data_mod.Split, seed: int) -> dict:
    """``fmnist evaluate``'s figures for the bundle in ``folder`` (onnxruntime, not PyTorch)."""
    from fmnist.runtime.bundle import Bundle
    from fmnist.runtime.evaluation import evaluate_bundle

    images, train_images = (data_mod.to_float(s.images).squeeze(1).numpy() for s in (test, train))
    return evaluate_bundle(Bundle(folder, "cpu"), images, test.labels.numpy(), train_images, seed)


def _install(tmp: Path, out: Path) -> None:
    """Swap the finished bundle into place; an older bundle at ``out`` goes only once the new one is there."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{time.time_ns()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old)


def export_bundle(
    run_dir: Path, out: Path, *, data_dir: Path, download: bool, pca_components: int, kde_points: int
) -> dict:
    run_dir, out = Path(run_dir), Path(out)
    if out.exists() and not (out / artifacts.MANIFEST).is_file():
        raise ConfigError(f"--out {out} exists and is not an fmnist bundle; choose another folder")
    paths = _checkpoints(run_dir)
    modules = {m: load_module(m, str(p)) for m, p in paths.items()}
    config: Config = modules["ae"].config
    splits = data_mod.load_splits(
        data_dir, val_fraction=config.val_fraction, seed=config.seed, limit=config.limit_train, download=download
    )
    check = data_mod.to_float(splits.test.images[:CHECK_IMAGES])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be shared
    try:
        graphs = write_graphs(modules, check, tmp)
        samplers = save_samplers(
            fit_samplers(_encode(modules["ae"].model.encoder, splits.train), pca_components, kde_points, config.seed),
            tmp,
        )
        ae, clf, vae = (_summary(run_dir, m) for m in ("ae", "classifier", "vae"))
        head = _summary(run_dir, "head")
        contents = {
            "package_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "libraries": _versions(),
            "config": config.to_dict(),
            "configs": {m: mod.config.to_dict() for m, mod in modules.items()},
            "latent_dim": config.latent_dim,
            "class_names": list(CLASS_NAMES),
            "input_contract": artifacts.INPUT_CONTRACT,
            "graphs": graphs,
            "vae": {"log_scale": modules["vae"].model.log_scale.item()},
            "samplers": samplers,
            "training_metrics": {  # test-set figures of the run's summaries, from PyTorch
                "reconstruction_mse": ae.get("test_mse"),
                "classifier_accuracy": clf.get("test_accuracy"),
                "classifier_per_class_accuracy": clf.get("test_per_class_accuracy"),
                "head_accuracy": head.get("test_accuracy"),  # the seed's experiment: head on the frozen encoder
                "vae_elbo": vae.get("test_elbo"),
                "vae_log_px": vae.get("test_log_px"),
                "vae_iw_samples": modules["vae"].config.iw_samples,
                "wall_time_s": {m: s.get("wall_time_s") for m, s in zip(MODELS, (ae, head, clf, vae), strict=True)},
            },
            "provenance": {
                "run_dir": str(run_dir.resolve()),
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
        _install(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest

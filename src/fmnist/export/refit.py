"""Change one part of an existing bundle, the rest kept byte for byte; the rewritten bundle is
verified and replaces the old one in one step (fmnist.export.install).

- Per-class KDEs, fitted from the bundle itself: the training split it was exported with is encoded
  by its own ``encoder.onnx`` and each class's latents get their KDE as export fits them
  (fmnist.export.samplers.fit_class_kdes). ``samplers.npz`` keeps every other array and the
  manifest becomes format 2 with new hashes.
- ``--vae-run RUN``: the VAE of a run (its ``vae/best.ckpt``, e.g. one trained from the bundle's
  own AE, fmnist.export.ae_from_bundle) in place of the bundle's: its two graphs exported and
  checked as export does, the manifest's ``vae``, ``configs.vae``, training metrics and provenance
  replaced, and ``metrics`` measured again on the staged bundle by ``fmnist evaluate``'s code.

    python -m fmnist.export.refit BUNDLE_DIR [--vae-run RUN] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fmnist import artifacts
from fmnist.config import default_data_dir
from fmnist.errors import ConfigError, FmnistError, report_error
from fmnist.export import install
from fmnist.export.samplers import ClassKDEs, class_arrays, class_summary, fit_class_kdes


def split_settings(manifest: dict) -> tuple[float, int, int | None]:
    """(val_fraction, seed, limit_train) the bundle's samplers were fitted with: the AE's config."""
    config = manifest.get("configs", {}).get("ae") or manifest.get("config") or {}
    try:
        return float(config["val_fraction"]), int(config["seed"]), config.get("limit_train")
    except (KeyError, TypeError, ValueError):
        raise ConfigError("the bundle's manifest records no training split (config.val_fraction, seed)") from None


def fit_from_bundle(folder: Path, data_dir: Path, download: bool = False) -> ClassKDEs:
    """The per-class KDEs of the bundle in ``folder``, on its training split encoded by its encoder.onnx."""
    from fmnist.runtime.bundle import Bundle
    from fmnist.training import data as data_mod

    bundle = Bundle(folder, "cpu", lazy=False)
    val_fraction, seed, limit = split_settings(bundle.manifest)
    splits = data_mod.load_splits(data_dir, val_fraction=val_fraction, seed=seed, limit=limit, download=download)
    latents = bundle.encode(data_mod.to_float(splits.train.images).squeeze(1).numpy())
    decoded = bundle.classify(bundle.decode(latents)).argmax(1)
    kde_points = int(bundle.manifest.get("samplers", {}).get("kde_points", len(latents)))
    labels = splits.train.labels.numpy()
    return fit_class_kdes(latents, labels, kde_points, seed, tuple(bundle.class_names), decoded)


def restage(folder: Path, kept: Callable[[str], bool], fill: Callable[[Path, dict], dict]) -> dict:
    """Stage a copy of the bundle in ``folder`` holding the files ``kept`` accepts, byte for byte;
    ``fill(staging, contents)`` writes the rest and returns the new manifest's contents (from the
    old one's, less its format and hashes). Verified, it replaces ``folder`` in one step."""
    from fmnist.runtime.bundle import Bundle

    manifest = artifacts.load_manifest(folder)
    tmp = install.staging_dir(folder)
    try:
        for name in manifest["files"]:
            if kept(name):
                shutil.copyfile(folder / name, tmp / name)
        contents = fill(tmp, {k: v for k, v in manifest.items() if k not in ("format_version", "files")})
        written = artifacts.write_manifest(tmp, contents)
        Bundle(tmp, "cpu", lazy=False)  # verify what was written before it becomes visible
        install.install(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return written


def rewrite(folder: Path, fitted: ClassKDEs, command: str) -> dict:
    """The bundle in ``folder`` with ``fitted`` added (restage)."""

    def fill(tmp: Path, contents: dict) -> dict:
        with np.load(folder / artifacts.SAMPLERS_NPZ, allow_pickle=False) as old:
            np.savez(tmp / artifacts.SAMPLERS_NPZ, **{**{k: old[k] for k in old.files}, **class_arrays(fitted)})
        contents["samplers"] = {**contents.get("samplers", {}), **class_summary(fitted)}
        contents["provenance"] = {**contents.get("provenance", {}), "class_samplers": {"command": command}}
        return contents

    return restage(folder, lambda name: name != artifacts.SAMPLERS_NPZ, fill)


def vae_contents(contents: dict, vae, summary: dict, graphs: dict, provenance: dict) -> dict:
    """The manifest's contents with ``vae`` (a trained VAEModule, its run's ``summary``, its
    exported ``graphs``) in place of the bundle's VAE; ``provenance``: where it came from."""
    from fmnist.export.bundle import vae_likelihood, vae_training_metrics

    metrics, recorded = contents.get("training_metrics", {}), contents.get("provenance", {})
    return {
        **contents,
        "graphs": {**contents["graphs"], **graphs},
        "vae": vae_likelihood(vae.model),
        "configs": {**contents.get("configs", {}), "vae": vae.config.to_dict()},
        "training_metrics": {
            **metrics,
            **vae_training_metrics(vae, summary),
            "wall_time_s": {**metrics.get("wall_time_s", {}), "vae": summary.get("wall_time_s")},
        },
        "provenance": {
            **recorded,
            "best_epochs": {**recorded.get("best_epochs", {}), "vae": summary.get("best_epoch")},
            "vae": provenance,
        },
    }


def trained_vae(run: Path) -> tuple:
    """(the run's best VAE module, its summary); a run whose VAE has not finished is one ConfigError."""
    from fmnist import runs

    if not runs.checkpoint(run, "vae").is_file():
        raise ConfigError(
            f"--vae-run {run}: {runs.checkpoint(run, 'vae')} not found; train a VAE there first "
            f"(fmnist train --model vae --run-dir {run})"
        )
    vae = runs.load_models(run, ("vae",), needed_by="--vae-run")["vae"]
    summary = runs.read_summary(run, "vae")
    if not summary:
        raise ConfigError(
            f"--vae-run {run}: the vae has no summary.json yet; let its training finish (fmnist train --resume)"
        )
    return vae, summary


def swap_vae(folder: Path, run: Path, data_dir: Path, command: str, seed: int = 0) -> dict:
    """The bundle in ``folder`` with the VAE of ``run`` in place of its own (module docstring); its
    ``metrics`` are what ``fmnist evaluate --seed SEED`` reports on the official data."""
    import torch

    from fmnist.export import ae_from_bundle
    from fmnist.export.bundle import CHECK_IMAGES, _git_commit
    from fmnist.runtime.bundle import Bundle
    from fmnist.runtime.evaluation import evaluate_bundle, load_split

    folder, run = Path(folder), Path(run)
    vae, summary = trained_vae(run)
    (images, labels), (train_images, _) = load_split(data_dir, "t10k"), load_split(data_dir, "train")
    provenance = {
        "run_dir": str(run.resolve()),
        "command": command,
        "git_commit": _git_commit(),
        "ae": ae_from_bundle.recorded_source(run),
    }
    check = torch.from_numpy(images[:CHECK_IMAGES]).unsqueeze(1)  # (N, 1, 28, 28)

    def measure(tmp: Path) -> dict:
        return evaluate_bundle(Bundle(tmp, "cpu"), images, labels, train_images, seed)

    return put_vae(folder, vae, summary, provenance, check, measure)


def put_vae(folder: Path, vae, summary: dict, provenance: dict, check, measure: Callable[[Path], dict]) -> dict:
    """The bundle in ``folder`` with ``vae`` (a VAEModule) in place of its VAE: its graphs exported
    and checked on ``check`` (N, 1, 28, 28), the manifest's ``metrics`` what ``measure`` finds in
    the staged bundle; every other file kept byte for byte."""
    from fmnist.contract.graphs import GRAPHS
    from fmnist.export.bundle import write_graphs

    swapped = tuple(g for g in GRAPHS if g.source == "vae")
    latent_dim = artifacts.load_manifest(folder)["latent_dim"]
    if vae.config.latent_dim != latent_dim:
        raise ConfigError(
            f"the VAE has latent_dim {vae.config.latent_dim}, the bundle {latent_dim}: "
            f"train it with --latent-dim {latent_dim}"
        )

    def fill(tmp: Path, contents: dict) -> dict:
        graphs = write_graphs({"vae": vae}, check, tmp, swapped)
        contents = vae_contents(contents, vae, summary, graphs, provenance)
        artifacts.write_manifest(tmp, contents)
        return {**contents, "metrics": measure(tmp)}

    return restage(Path(folder), lambda name: name not in {g.file for g in swapped}, fill)


def data_folder(folder: Path, data_dir: Path | None) -> Path:
    """``data_dir``, else $FMNIST_DATA, else the folder the bundle was exported from."""
    recorded = artifacts.read_manifest(folder).get("provenance", {}).get("data_dir")
    return data_dir or default_data_dir(Path(recorded) if recorded else None)


def refit_class_samplers(
    folder: Path, data_dir: Path | None = None, download: bool = False, log: Callable[[str], None] = print
) -> dict:
    """Add the per-class KDEs to the bundle in ``folder`` (see the module's docstring)."""
    folder = Path(folder)
    fitted = fit_from_bundle(folder, data_folder(folder, data_dir), download)
    manifest = rewrite(folder, fitted, command_line())
    for notice in fitted.notices:
        log(f"notice: {notice}")
    return manifest


def command_line() -> str:
    return " ".join(["python -m fmnist.export.refit", *sys.argv[1:]])


def done_line(bundle: Path, vae_run: Path | None, manifest: dict) -> str:
    if vae_run is not None:
        likelihood, bits = manifest["vae"].get("likelihood"), manifest["metrics"]["vae_bits_per_dim"]
        return f"{bundle}: the VAE of {vae_run} ({likelihood} likelihood, {bits:.3f} bits/dim)"
    points = manifest["samplers"]["kde_class_points"]
    return f"added a KDE per class ({points} latents each) to {bundle}: bundle format {manifest['format_version']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fmnist.export.refit", description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, metavar="BUNDLE_DIR", help="the bundle to change")
    parser.add_argument(
        "--vae-run",
        type=Path,
        metavar="RUN",
        help="put this run's VAE in place of the bundle's (else: add per-class samplers)",
    )
    parser.add_argument(
        "--data-dir", type=Path, help="folder holding FashionMNIST/raw (default: $FMNIST_DATA, else the export's)"
    )
    args = parser.parse_args(argv)
    try:
        if args.vae_run is not None:
            manifest = swap_vae(args.bundle, args.vae_run, data_folder(args.bundle, args.data_dir), command_line())
        else:
            manifest = refit_class_samplers(args.bundle, args.data_dir)
    except FmnistError as e:
        return report_error(e)
    print(done_line(args.bundle, args.vae_run, manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Add the per-class KDEs to an existing bundle, fitted from the bundle itself: the training split
it was exported with is encoded by its own ``encoder.onnx`` and each class's latents get their KDE
as export fits them (fmnist.export.samplers.fit_class_kdes). ``samplers.npz`` keeps every other
array, the graphs stay byte for byte, and the manifest becomes format 2 with new hashes; the
rewritten bundle replaces the old one in one step (fmnist.export.install).

    python -m fmnist.export.refit BUNDLE_DIR [--data-dir DIR]
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


def rewrite(folder: Path, fitted: ClassKDEs, command: str) -> dict:
    """Stage the bundle with ``fitted`` added, verify it, and put it in place of ``folder``."""
    from fmnist.runtime.bundle import Bundle

    manifest = artifacts.load_manifest(folder)
    tmp = install.staging_dir(folder)
    try:
        for name in manifest["files"]:
            if name != artifacts.SAMPLERS_NPZ:
                shutil.copyfile(folder / name, tmp / name)
        with np.load(folder / artifacts.SAMPLERS_NPZ, allow_pickle=False) as old:
            np.savez(tmp / artifacts.SAMPLERS_NPZ, **{**{k: old[k] for k in old.files}, **class_arrays(fitted)})
        contents = {k: v for k, v in manifest.items() if k not in ("format_version", "files")}
        contents["samplers"] = {**manifest.get("samplers", {}), **class_summary(fitted)}
        contents["provenance"] = {**manifest.get("provenance", {}), "class_samplers": {"command": command}}
        written = artifacts.write_manifest(tmp, contents)
        Bundle(tmp, "cpu", lazy=False)  # verify what was written before it becomes visible
        install.install(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return written


def refit_class_samplers(
    folder: Path, data_dir: Path | None = None, download: bool = False, log: Callable[[str], None] = print
) -> dict:
    """Add the per-class KDEs to the bundle in ``folder`` (see the module's docstring)."""
    folder = Path(folder)
    recorded = artifacts.read_manifest(folder).get("provenance", {}).get("data_dir")
    root = data_dir or default_data_dir(Path(recorded) if recorded else None)
    fitted = fit_from_bundle(folder, root, download)
    manifest = rewrite(folder, fitted, " ".join(["python -m fmnist.export.refit", *sys.argv[1:]]))
    for notice in fitted.notices:
        log(f"notice: {notice}")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fmnist.export.refit", description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, metavar="BUNDLE_DIR", help="the bundle to add per-class samplers to")
    parser.add_argument(
        "--data-dir", type=Path, help="folder holding FashionMNIST/raw (default: $FMNIST_DATA, else the export's)"
    )
    args = parser.parse_args(argv)
    try:
        manifest = refit_class_samplers(args.bundle, args.data_dir)
    except FmnistError as e:
        return report_error(e)
    points = manifest["samplers"]["kde_class_points"]
    print(f"added a KDE per class ({points} latents each) to {args.bundle}: bundle format {manifest['format_version']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

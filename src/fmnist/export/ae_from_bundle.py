"""A run folder whose AE is a bundle's, rebuilt from its ``encoder.onnx`` and ``decoder.onnx``, so
that a model which trains from the AE (the VAE, ``vae_from_ae``) can be trained again without the
run the bundle was exported from.

The graphs' initializers carry the AE's ``nn.Sequential`` names (``0.weight`` ... ``16.bias``);
the exporter folded each batch norm into the convolution before it. The rebuilt AE takes the
folded weights and gives each batch norm the per-channel mean ``m`` and deviation ``s`` of its
input on training images: ``running_mean = bias = m`` and ``running_var + eps = weight**2 = s**2``
leave the evaluated network equal to the graphs, and in training mode (batch statistics) the
layer still passes on what it receives, as the AE's own batch norm did at the end of its training.

    python -m fmnist.export.ae_from_bundle BUNDLE_DIR RUN_DIR [--data-dir DIR]

then ``fmnist train --model vae --run-dir RUN_DIR`` trains a VAE from it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fmnist import artifacts, runs
from fmnist.errors import ConfigError, FmnistError, report_error

# the graphs' outputs and the rebuilt AE's may differ by this much (scaled as export compares them)
TOLERANCE = 1e-5
STATS_IMAGES = 10_000  # training images the batch norms' statistics are taken on
CHECK_IMAGES = 256  # test images the rebuilt AE is compared with the graphs on
SOURCE_FILE = "rebuilt_from.json"  # in the AE's folder: the bundle, its graphs' hashes, the difference


def ae_config(manifest: dict) -> dict:
    """The AE's saved config; a bundle without one has no AE to rebuild (one ConfigError)."""
    config = manifest.get("configs", {}).get("ae")
    if not isinstance(config, dict):
        raise ConfigError("the bundle's manifest has no configs.ae: it records no AE to rebuild (export it again)")
    return config


def initializers(path: Path) -> dict[str, np.ndarray]:
    """A graph's weights by name."""
    import onnx
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def load_folded(sequential, weights: dict[str, np.ndarray], graph: str) -> None:
    """Copy a graph's weights into ``sequential``; each batch norm left as an exact identity."""
    import torch
    from torch import nn

    state = sequential.state_dict()
    missing = [k for k in state if k not in weights and not _is_norm(sequential, k)]
    if missing:
        raise ConfigError(f"{graph} has no weight {missing[0]}: it is not this AE's graph (another arch?)")
    loaded = {k: torch.from_numpy(weights[k].copy()) for k in state if k in weights}
    sequential.load_state_dict({**state, **loaded})
    for layer in sequential:
        if isinstance(layer, nn.BatchNorm2d):
            set_norm(layer, torch.zeros(layer.num_features), torch.ones(layer.num_features))


def _is_norm(sequential, key: str) -> bool:
    from torch import nn

    index = key.split(".")[0]
    return index.isdigit() and isinstance(sequential[int(index)], nn.BatchNorm2d)


def set_norm(layer, mean, std) -> None:
    """``layer`` (eval) maps x to x; in training its batch's statistics standardise, then ``std``
    and ``mean`` restore the scale it was fitted at."""
    import torch

    std = std.double().clamp_min(2 * layer.eps**0.5)
    with torch.no_grad():
        layer.running_mean.copy_(mean)
        layer.running_var.copy_(std**2 - layer.eps)
        layer.weight.copy_(std)
        layer.bias.copy_(mean)


def norm_statistics(ae, images) -> dict:
    """Per-channel mean and deviation of each batch norm's input, on ``images`` (N, 1, 28, 28)."""
    import torch
    from torch import nn

    sums, hooks = {}, []

    def record(layer, inputs):
        x = inputs[0].double()  # (B, C, H, W)
        s = sums.setdefault(layer, [0, 0.0, 0.0])
        s[0] += x.numel() // x.shape[1]
        s[1] = s[1] + x.sum((0, 2, 3))
        s[2] = s[2] + (x**2).sum((0, 2, 3))

    for layer in ae.modules():
        if isinstance(layer, nn.BatchNorm2d):
            hooks.append(layer.register_forward_pre_hook(record))
    try:
        with torch.inference_mode():
            for batch in images.split(1000):
                ae(batch)
    finally:
        for hook in hooks:
            hook.remove()
    return {layer: (s[1] / s[0], (s[2] / s[0] - (s[1] / s[0]) ** 2).clamp_min(0).sqrt()) for layer, s in sums.items()}


def rebuild(folder: Path, manifest: dict, train_images):
    """The bundle's AE as an AEModule (eval mode), batch norms fitted on ``train_images``."""
    from fmnist.training.modules import AEModule

    module = AEModule(ae_config(manifest))
    ae = module.model.eval()
    for part in ("encoder", "decoder"):
        file = manifest["graphs"][part]["file"]
        load_folded(getattr(ae, part), initializers(folder / file), file)
    for layer, (mean, std) in norm_statistics(ae, train_images).items():
        set_norm(layer, mean, std)
    return module


def difference(folder: Path, ae, images) -> float:
    """Largest scaled difference between the rebuilt AE and the bundle's graphs on ``images``."""
    import torch

    from fmnist.export.graphs import scaled_difference
    from fmnist.runtime.bundle import Bundle

    bundle = Bundle(folder, "cpu", lazy=False)
    x = images.squeeze(1).numpy()
    latents = bundle.encode(x)
    with torch.inference_mode():
        want_latents = ae.encoder(images).numpy()
        want_images = ae.decoder(torch.from_numpy(latents)).squeeze(1).numpy()
    return max(scaled_difference(latents, want_latents), scaled_difference(bundle.decode(latents), want_images))


def write_checkpoint(module, path: Path) -> None:
    """What Lightning writes and ``load_module`` reads: the weights and the config."""
    import lightning as L

    from fmnist.training.checkpoint_io import AtomicCheckpointIO

    checkpoint = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": L.__version__,
        "epoch": 0,
        "global_step": 0,
    }
    AtomicCheckpointIO().save_checkpoint(checkpoint, path)


def ae_from_bundle(folder: Path, run: Path, data_dir: Path, download: bool = False) -> dict:
    """Write ``run`` with the bundle's AE as its trained AE, its batch norms fitted on the training
    split the bundle's AE was trained on; returns what rebuilt_from.json records."""
    from fmnist.export.refit import split_settings
    from fmnist.training import data as data_mod

    folder, run = Path(folder), Path(run)
    manifest = artifacts.load_manifest(folder)
    ae_config(manifest)
    if runs.checkpoint(run, "ae").exists():
        raise ConfigError(f"{runs.checkpoint(run, 'ae')} exists: pass a new run folder")
    val_fraction, seed, limit = split_settings(manifest)
    splits = data_mod.load_splits(data_dir, val_fraction=val_fraction, seed=seed, limit=limit, download=download)
    train, test = (
        data_mod.to_float(s.images[:n]) for s, n in ((splits.train, STATS_IMAGES), (splits.test, CHECK_IMAGES))
    )
    return write_run(folder, manifest, run, train, test, data_dir)


def write_run(folder: Path, manifest: dict, run: Path, train_images, check_images, data_dir: Path) -> dict:
    """The run folder holding the rebuilt AE (batch norms fitted on ``train_images``), checked
    against the bundle's graphs on ``check_images``, both (N, 1, 28, 28)."""
    module = rebuild(folder, manifest, train_images)
    diff = difference(folder, module.model, check_images)
    if not diff <= TOLERANCE:
        raise ConfigError(f"the rebuilt AE differs from the bundle's graphs by {diff:.2e} (> {TOLERANCE:.0e})")
    files = [manifest["graphs"][g]["file"] for g in ("encoder", "decoder")]
    source = {
        "bundle": str(Path(folder).resolve()),
        "files": {f: manifest["files"][f] for f in files},
        "max_scaled_diff_vs_onnx": diff,
        "norm_statistics_images": len(train_images),
    }
    write_checkpoint(module, runs.checkpoint(run, "ae"))
    runs.write_json(runs.model_dir(run, "ae") / SOURCE_FILE, source)
    runs.write_json(Path(run) / runs.CONFIG_FILE, manifest.get("config") or ae_config(manifest))
    runs.write_record(run, data_dir=data_dir, models=("ae",))
    return source


def recorded_source(run: Path) -> dict | None:
    """What ``ae_from_bundle`` recorded of the run's AE; None for an AE trained in the run."""
    path = runs.model_dir(run, "ae") / SOURCE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fmnist.export.ae_from_bundle", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("bundle", type=Path, metavar="BUNDLE_DIR", help="the bundle whose AE to rebuild")
    parser.add_argument("run", type=Path, metavar="RUN_DIR", help="the run folder to write (ae/best.ckpt)")
    parser.add_argument(
        "--data-dir", type=Path, help="folder holding FashionMNIST/raw (default: $FMNIST_DATA, else the export's)"
    )
    args = parser.parse_args(argv)
    from fmnist.export.refit import data_folder

    try:
        source = ae_from_bundle(args.bundle, args.run, data_folder(args.bundle, args.data_dir))
    except FmnistError as e:
        return report_error(e)
    print(
        f"{runs.checkpoint(args.run, 'ae')}: the AE of {args.bundle} "
        f"(equal to its graphs within {source['max_scaled_diff_vs_onnx']:.1e})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

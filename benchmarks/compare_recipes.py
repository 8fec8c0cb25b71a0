"""The seed network's bundle beside the default recipe's, on every figure of the model study.

    python benchmarks/compare_recipes.py --data-dir ../shared/data

Both bundles are evaluated here by the same code as ``fmnist evaluate`` (onnxruntime, the official
test set, the product-photo set, Fréchet distances in the fixed reference network's features);
the head-on-frozen-encoder accuracy and the training wall time come from each bundle's manifest,
as they need the training run. ``benchmarks/bundles/seed`` is the bundle the seed recipe made.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fmnist.artifacts import default_bundle_dir
from fmnist.runtime.bundle import Bundle
from fmnist.runtime.evaluation import evaluate_bundle, load_split
from fmnist.runtime.sampling import SAMPLERS

SEED_BUNDLE = Path(__file__).parent / "bundles" / "seed"


def training_figures(manifest: dict) -> dict:
    """Head accuracy and training wall time from a manifest. The seed's bundle served the head on
    the frozen encoder as its classifier and recorded no wall time."""
    training = manifest.get("training_metrics")
    if training is None:
        return {"head_accuracy": manifest["metrics"]["classifier_accuracy"], "wall_time_s": None}
    times = [t for t in training["wall_time_s"].values() if t is not None]
    return {"head_accuracy": training["head_accuracy"], "wall_time_s": sum(times) if times else None}


def figures(folder: Path, data_dir: Path) -> dict:
    bundle = Bundle(folder, "cpu")
    images, labels = load_split(data_dir, "t10k")
    train_images, _ = load_split(data_dir, "train")
    result = evaluate_bundle(bundle, images, labels, train_images)
    return {**result, **training_figures(bundle.manifest)}


def rows(results: dict[str, dict]) -> list[tuple[str, list[str]]]:
    def each(fn) -> list[str]:
        return [fn(r) for r in results.values()]

    def minutes(r: dict) -> str:
        return "not recorded" if r["wall_time_s"] is None else f"{r['wall_time_s'] / 60:.1f} min"

    table = [
        ("AE test MSE", each(lambda r: f"{r['reconstruction_mse']:.5f}")),
        ("classifier test accuracy (the bundle's)", each(lambda r: f"{r['classifier_accuracy']:.4f}")),
        ("head on the frozen encoder, test accuracy", each(lambda r: f"{r['head_accuracy']:.4f}")),
        ("product-photo accuracy", each(lambda r: f"{r['photo_accuracy']:.4f}")),
        ("VAE test ELBO, nats/image", each(lambda r: f"{r['vae_elbo']:.1f}")),
    ]
    table += [
        (f"Frechet distance, {s} samples", each(lambda r, s=s: f"{r['samplers'][s]['frechet_distance']:.2f}"))
        for s in SAMPLERS
    ]
    table += [
        ("Frechet floor: training images", each(lambda r: f"{r['frechet_floors']['training_images']:.2f}")),
        ("Frechet floor: test reconstructions", each(lambda r: f"{r['frechet_floors']['test_reconstructions']:.2f}")),
        ("training wall time (manifest)", each(minutes)),
    ]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding FashionMNIST/raw")
    parser.add_argument("--seed-bundle", type=Path, default=SEED_BUNDLE)
    parser.add_argument("--default-bundle", type=Path, default=default_bundle_dir())
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    results = {"seed": figures(args.seed_bundle, args.data_dir), "default": figures(args.default_bundle, args.data_dir)}
    table = rows(results)
    width = max(len(name) for name, _ in table)
    print(f"{'figure':{width}s}  {'seed':>14s}  {'default':>14s}")
    for name, values in table:
        print(f"{name:{width}s}  " + "  ".join(f"{v:>14s}" for v in values))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Classifier throughput: onnxruntime (the CLI's path) against the same model in PyTorch eager.

Both run the bundle's classifier on the 10,000 official test images on the CPU, at the CLI's
batch size and at batch size 1, in one process; prints images per second and the ratios
(targets: >= 1.5x at the CLI's batch size, >= 4x at batch size 1).

    python benchmarks/inference.py --data-dir ../shared/data --run-dir RUN [--artifacts DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from fmnist.config import default_data_dir
from fmnist.export.graphs import ClassifierGraph
from fmnist.serve.evaluation import load_test_set
from fmnist.serve.inference import BATCH, Model
from fmnist.training.modules import load_module


def rate(fn, images: np.ndarray, batch: int, limit: int) -> float:
    images = images[:limit]
    fn(images[:batch])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        fn(images[i : i + batch])
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--run-dir", type=Path, required=True, help="the run the bundle was exported from")
    parser.add_argument("--artifacts", default=None)
    parser.add_argument("--single", type=int, default=2000, help="images for the batch-size-1 pass")
    args = parser.parse_args()
    images, _ = load_test_set(args.data_dir)
    model = Model(args.artifacts, "cpu")
    session = model.session("classifier")
    torch_model = ClassifierGraph(
        load_module("classifier", str(args.run_dir / "classifier" / "best.ckpt")).model
    ).eval()

    def ort_fn(x):
        return session.run(["probabilities"], {"image": x[:, None]})

    def torch_fn(x):
        with torch.inference_mode():
            return torch_model(torch.from_numpy(x[:, None]))[1]

    print(f"torch threads {torch.get_num_threads()}, onnxruntime {session.get_providers()[0]}")
    for batch, limit in ((BATCH, len(images)), (1, args.single)):
        ort_rate, torch_rate = rate(ort_fn, images, batch, limit), rate(torch_fn, images, batch, limit)
        print(
            f"batch {batch:4d}: onnxruntime {ort_rate:9.0f} img/s, PyTorch eager {torch_rate:9.0f} img/s, "
            f"ratio {ort_rate / torch_rate:.2f}x"
        )


if __name__ == "__main__":
    main()

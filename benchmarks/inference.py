"""Classifier throughput: onnxruntime with the CLI's settings against the same model in PyTorch eager.

The model is ``fmnist.training.models.Classifier(Config())`` (random weights: speed does not
depend on them), exported with the TorchScript exporter. Both sides classify the same 10,000
images (the official test set when found, else random ones) on the CPU, in one process, at the
CLI's batch size and at batch size 1; each figure is the best of ``--repeats`` passes.

Each side runs with 1 thread and with its default thread count: on a small box shared with other
jobs PyTorch's OpenMP pool can be several times slower with 2 threads than with 1, so the ratio
compares the best of each side (targets: >= 1.5x at the CLI's batch size, >= 4x at batch size 1).

The batch-size-1 pass classifies the first ``--single`` images (default 2,000; rates are per image):
PyTorch with 2 contended threads manages under 100 img/s there, so 10,000 would take minutes.

    python benchmarks/inference.py [--data-dir DIR] [--images 10000] [--single 2000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from fmnist.config import Config, default_data_dir
from fmnist.errors import DataError
from fmnist.runtime.bundle import BATCH
from fmnist.runtime.evaluation import load_test_set
from fmnist.runtime.sessions import THREADS, session_options
from fmnist.training.models import Classifier


def images_to_classify(data_dir: Path, n: int) -> tuple[np.ndarray, str]:
    try:
        images = load_test_set(data_dir)[0]
        return np.ascontiguousarray(np.resize(images, (n, 28, 28))[:, None]), f"official test set ({data_dir})"
    except DataError:
        return np.random.default_rng(0).random((n, 1, 28, 28), dtype=np.float32), "random images"


def export(model: torch.nn.Module, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (torch.rand(2, 1, 28, 28),),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}},
            dynamo=False,
            opset_version=17,
        )


def images_per_second(fn, images: np.ndarray, batch: int, repeats: int) -> float:
    fn(images[:batch])  # warm-up: first-run allocations
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(images), batch):
            fn(images[i : i + batch])
        best = min(best, time.perf_counter() - start)
    return len(images) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--single", type=int, default=2000, help="images for the batch-size-1 pass")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    images, source = images_to_classify(args.data_dir, args.images)
    model = Classifier(Config()).eval()
    torch_threads = sorted({1, torch.get_num_threads()})
    ort_threads = sorted({1, THREADS})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "classifier.onnx"
        export(model, path)
        sessions = {}
        for n in ort_threads:
            options = session_options()  # the CLI's settings, with the thread count under test
            options.intra_op_num_threads = n
            sessions[n] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        want = model(torch.from_numpy(images[:64])).numpy()
    assert np.abs(sessions[1].run(None, {"image": images[:64]})[0] - want).max() < 1e-4, "export differs"

    def with_torch(x: np.ndarray):
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    print(f"{len(images)} images ({source}); torch {torch.__version__}, onnxruntime {ort.__version__}; img/s")
    for batch, subset in ((BATCH, images), (1, images[: args.single])):
        ort_rates = {
            n: images_per_second(lambda x, s=s: s.run(None, {"image": x}), subset, batch, args.repeats)
            for n, s in sessions.items()
        }
        torch_rates = {}
        for n in torch_threads:
            torch.set_num_threads(n)
            torch_rates[n] = images_per_second(with_torch, subset, batch, args.repeats)
        cells = [f"onnxruntime {n} thr {r:8.0f}" for n, r in ort_rates.items()]
        cells += [f"PyTorch {n} thr {r:8.0f}" for n, r in torch_rates.items()]
        ratio = max(ort_rates.values()) / max(torch_rates.values())
        print(
            f"batch {batch:4d} ({len(subset)} images): "
            + "  ".join(cells)
            + f"  | best onnxruntime / best PyTorch {ratio:5.2f}x"
        )


if __name__ == "__main__":
    main()

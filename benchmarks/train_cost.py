"""What the default ``fmnist train`` costs on this machine, from timed steps rather than a full run.

    python benchmarks/train_cost.py --data-dir ../shared/data

For each model of the default recipe: the median time of ``--steps`` training steps on real
batches (after warm-up), one validation pass, and the final test evaluation, scaled by the
recipe's steps per epoch and epochs. A full run on an idle machine is the direct measurement; this
estimate lets a busy machine, or a candidate recipe, be priced in a few minutes. It leaves out
Lightning's per-step bookkeeping (measured separately by train_speed.py).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

from fmnist.config import DEFAULTS, MODELS
from fmnist.training import data as data_mod
from fmnist.training import evaluate
from fmnist.training.modules import MODULES


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def step_seconds(module, split: data_mod.Split, steps: int, warmup: int = 3) -> float:
    """Median wall time of one optimisation step (forward, backward, Adam) on real batches."""
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    loader = iter(data_mod.batch_loader(split, module.config.batch_size, 0, True))
    module.train()

    def step():
        loss = module.training_step(next(loader), 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    module.log_dict = lambda *a, **k: None  # no Trainer here to log to
    times = [timed(step) for _ in range(warmup + steps)]
    return statistics.median(times[warmup:])


@torch.no_grad()
def validation_seconds(module, split: data_mod.Split) -> float:
    module.eval()
    module.log_dict = lambda *a, **k: None
    return timed(lambda: [module.validation_step(b, 0) for b in data_mod.batch_loader(split, 1000, 0, False)])


def test_seconds(name: str, module, split: data_mod.Split) -> float:
    config = module.config
    if name == "ae":
        return timed(lambda: evaluate.ae_metrics(module.model, split))
    if name == "vae":
        return timed(lambda: evaluate.vae_metrics(module.model, split, config.iw_samples, config.seed))
    return timed(lambda: evaluate.classifier_metrics(module.model, split))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding FashionMNIST/raw")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per model (default: 20)")
    args = parser.parse_args()
    torch.set_float32_matmul_precision("high")
    splits = data_mod.load_splits(args.data_dir, val_fraction=DEFAULTS.val_fraction, seed=0, limit=None, download=False)
    print(f"torch threads {torch.get_num_threads()}; default recipe, batch {DEFAULTS.batch_size}, arch {DEFAULTS.arch}")
    total = 0.0
    for name in MODELS:
        config = DEFAULTS.for_model(name)
        module = MODULES[name](config.to_dict())
        step = step_seconds(module, splits.train, args.steps)
        val = validation_seconds(module, splits.val)
        test = test_seconds(name, module, splits.test)
        steps_per_epoch = math.ceil(len(splits.train) / config.batch_size)
        seconds = config.epochs * (steps_per_epoch * step + val) + test
        total += seconds
        print(
            f"{name:10s} {config.epochs:3d} epochs x ({steps_per_epoch} steps x {step * 1000:.0f} ms + validation "
            f"{val:.1f} s) + test {test:.1f} s = {seconds / 60:.1f} min"
        )
    print(f"total {total / 60:.1f} min (target <= 60)")


if __name__ == "__main__":
    main()

"""Chooses the head model's latent noise on the validation split: heads like ``fmnist train
--model head`` (two hidden layers of 256, Adam 3e-3 cosine over 30 epochs, batch 128) trained on the
latents of a bundle's ``encoder.onnx`` with Gaussian noise of ``noise`` times each latent's spread.
Prints, per setting, the best validation epoch's validation and test accuracy, averaged over seeds. Usage::

    python benchmarks/head_noise.py --data-dir DIR [--artifacts DIR] [--seeds 3] noise=0 noise=0.1 "noise=0.1,width=512"
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fmnist.runtime.bundle import Bundle
from fmnist.training import data as D
from fmnist.training.augment import jitter_latents
from fmnist.training.models import Head

Latents = tuple[torch.Tensor, torch.Tensor]  # (N, d) latents, (N,) labels


def encode(bundle: Bundle, split: D.Split) -> Latents:
    return torch.from_numpy(bundle.encode(split.images.numpy() / np.float32(255))), split.labels


def fit(
    train: Latents, val: Latents, test: Latents, width=256, depth=2, noise=0.0, epochs=30, lr=3e-3, batch=128, seed=0
):
    """(best validation accuracy, the test accuracy of that epoch, the epoch)."""
    torch.manual_seed(seed)
    (x, y), best = train, (0.0, 0.0, -1)
    head = Head(x.shape[1], width, depth)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for epoch in range(epochs):
        for idx in torch.randperm(len(x)).split(batch):
            loss = F.cross_entropy(head(jitter_latents(x[idx], noise)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        schedule.step()
        with torch.no_grad():
            accs = [float((head(z).argmax(1) == t).float().mean()) for z, t in (val, test)]
        if accs[0] > best[0]:
            best = (*accs, epoch)
    return best


def number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--artifacts", type=Path, default=None)
    p.add_argument("--seeds", type=int, default=3, help="seeds per setting (0, 1, ...); means are printed")
    p.add_argument("settings", nargs="+", help="keyword arguments of fit(), e.g. noise=0.1,width=512")
    a = p.parse_args()
    torch.set_num_threads(1)
    splits = D.load_splits(a.data_dir, val_fraction=0.1, seed=0, limit=None, download=False)
    bundle = Bundle(a.artifacts, "cpu")
    train, val, test = (encode(bundle, s) for s in (splits.train, splits.val, splits.test))
    for setting in a.settings:
        kwargs = {k: number(v) for k, v in (kv.split("=") for kv in setting.split(","))}
        start = time.perf_counter()
        runs = [fit(train, val, test, **{"seed": seed, **kwargs}) for seed in range(a.seeds)]
        val_accs, test_accs = np.array([r[0] for r in runs]), np.array([r[1] for r in runs])
        took = (time.perf_counter() - start) / a.seeds
        print(
            f"{setting:14s} best-epoch val {val_accs.mean():.4f} (sd {val_accs.std():.4f}) "
            f"test {test_accs.mean():.4f} (sd {test_accs.std():.4f}) over {a.seeds} seeds, {took:.0f} s each",
            flush=True,
        )


if __name__ == "__main__":
    main()

"""Chooses the head model's latent noise on the validation split: heads like ``fmnist train
--model head`` (two hidden layers of 256, Adam 3e-3 cosine over 30 epochs, batch 128) trained on the
latents of a bundle's ``encoder.onnx`` with Gaussian noise of ``noise`` times each latent's spread.
Prints, per setting, the best validation epoch's validation and test accuracy, averaged over seeds. Usage::

    python benchmarks/head_noise.py --data-dir DIR [--artifacts DIR] [--seeds 3] noise=0 noise=0.1 "noise=0.1,drop=0.2"
"""

import argparse
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

from fmnist.artifacts import default_bundle_dir
from fmnist.training import data as D


def encode(session: ort.InferenceSession, split: D.Split) -> tuple[torch.Tensor, torch.Tensor]:
    x, name = D.to_float(split.images).numpy(), session.get_inputs()[0].name
    z = np.concatenate([session.run(None, {name: x[i : i + 2000]})[0] for i in range(0, len(x), 2000)])
    return torch.from_numpy(z), split.labels


def fit(train, val, test, width=256, depth=2, drop=0.0, noise=0.0, epochs=30, lr=3e-3, batch=128, seed=0):
    torch.manual_seed(seed)
    layers, d = [], train[0].shape[1]
    for _ in range(depth):
        layers, d = [*layers, nn.Linear(d, width), nn.ReLU(), nn.Dropout(drop)], width
    model = nn.Sequential(*layers, nn.Linear(d, 10))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    (x, y), best = train, (0.0, 0.0, -1)
    for epoch in range(epochs):
        model.train()
        for idx in torch.randperm(len(x)).split(batch):
            z = x[idx] + noise * x[idx].std(0, correction=0) * torch.randn(len(idx), x.shape[1])
            loss = F.cross_entropy(model(z), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        schedule.step()
        model.eval()
        with torch.no_grad():
            accs = [float((model(z).argmax(1) == t).float().mean()) for z, t in (val, test)]
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
    p.add_argument("settings", nargs="+", help="keyword arguments of fit(), e.g. noise=0.1,drop=0.2")
    a = p.parse_args()
    torch.set_num_threads(1)
    splits = D.load_splits(a.data_dir, val_fraction=0.1, seed=0, limit=None, download=False)
    session = ort.InferenceSession(str((a.artifacts or default_bundle_dir()) / "encoder.onnx"))
    train, val, test = (encode(session, s) for s in (splits.train, splits.val, splits.test))
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

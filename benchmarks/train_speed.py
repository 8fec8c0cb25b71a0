"""Epoch time of `fmnist train` (Lightning) against a plain PyTorch loop, side by side.

Same model (the seed AE), same in-memory uint8 tensors and batch loader, same batch size, same
optimizer and schedule; each epoch is one pass over the training split plus one over the
validation split. Prints the median epoch time of each (first epoch dropped as warm-up) and the
ratio Lightning / plain, which the README quotes.

    python benchmarks/train_speed.py --data-dir ../shared/data --epochs 4 [--accelerator gpu] [--arch wide]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from fmnist.config import Config, default_data_dir
from fmnist.training import data, losses
from fmnist.training.modules import AEModule
from fmnist.training.run import Hardware, InMemoryData, make_trainer, quiet_lightning


def plain_epochs(config: Config, splits: data.Splits, device: torch.device) -> list[float]:
    L.seed_everything(config.seed, verbose=False)
    module = AEModule(config.to_dict()).to(device)
    model = module.model
    optimizer = module.configure_optimizers()["optimizer"]
    train = data.batch_loader(splits.train, config.batch_size, config.seed, True)
    val = data.batch_loader(splits.val, config.batch_size, config.seed, False)
    times = []
    for epoch in range(config.epochs):
        start = time.perf_counter()
        train.sampler.set_epoch(epoch)
        model.train()
        for x, _ in train:
            x = x.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            loss, _ = losses.ae_loss(model(x), x, model, config.l1)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for x, _ in val:
                x = x.to(device, non_blocking=True)
                losses.ae_loss(model(x), x, model, config.l1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def lightning_epochs(config: Config, splits: data.Splits, progress: bool, accelerator: str) -> list[float]:
    L.seed_everything(config.seed, verbose=False)
    with tempfile.TemporaryDirectory() as tmp:
        hardware = Hardware(accelerator=accelerator, devices=1, progress=progress)
        trainer = make_trainer(config, Path(tmp), AEModule, hardware)
        trainer.fit(AEModule(config.to_dict()), datamodule=InMemoryData(splits, config))
        return [row["epoch_time_s"] for row in trainer.callbacks[0].rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--progress", action="store_true", help="with Lightning's progress bar")
    parser.add_argument("--accelerator", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--arch", default=Config.arch, help="AE architecture (config.ARCHS)")
    args = parser.parse_args()
    quiet_lightning()
    config = Config(epochs=args.epochs, limit_train=args.limit_train, arch=args.arch)
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    splits = data.load_splits(
        args.data_dir, val_fraction=config.val_fraction, seed=config.seed, limit=config.limit_train, download=False
    )
    plain = statistics.median(plain_epochs(config, splits, device)[1:])
    lit = statistics.median(lightning_epochs(config, splits, args.progress, args.accelerator)[1:])
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"arch {config.arch}, train images {len(splits.train)}, val images {len(splits.val)}, "
        f"batch {config.batch_size}, {where}"
    )
    print(f"plain PyTorch epoch   {plain:.3f} s (median)")
    print(f"Lightning epoch       {lit:.3f} s (median)")
    print(f"ratio Lightning/plain {lit / plain:.3f} (target <= 1.25)")


if __name__ == "__main__":
    main()

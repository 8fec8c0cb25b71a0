"""Train the fixed reference network whose features ``fmnist evaluate`` measures samples in.

Run once; its ONNX graph is committed as ``src/fmnist/runtime/reference.onnx``, so Fréchet
distances compare across bundles (a bundle's own classifier would move the yardstick with it).
Seeded and CPU-deterministic: rerunning this script rebuilds the same graph.

    python scripts/train_reference.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

from fmnist.export.graphs import export_graph
from fmnist.runtime.reference import FEATURES, REFERENCE_GRAPH
from fmnist.training.data import load_official, to_float

EPOCHS, BATCH, LR, SEED = 4, 128, 2e-3, 1234


class ReferenceNet(nn.Module):
    """image (B, 1, 28, 28) -> (logits (B, 10), features (B, FEATURES)): a plain CNN classifier."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 64, 7, 7)
            nn.Conv2d(64, 128, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 128, 3, 3)
            nn.Flatten(),
            nn.Linear(128 * 9, FEATURES),
            nn.ReLU(),
        )
        self.out = nn.Linear(FEATURES, 10)

    def forward(self, image):
        features = self.body(image)
        return self.out(features), features


def train(data_dir: Path) -> tuple[ReferenceNet, float]:
    torch.manual_seed(SEED)
    train_split, test_split = load_official(data_dir, True, False), load_official(data_dir, False, False)
    net = ReferenceNet()
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, EPOCHS)
    for epoch in range(EPOCHS):
        start = time.perf_counter()
        net.train()
        for idx in torch.randperm(len(train_split)).split(BATCH):
            logits, _ = net(to_float(train_split.images[idx]))
            loss = nn.functional.cross_entropy(logits, train_split.labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
        print(f"epoch {epoch}: last loss {loss.item():.4f}, {time.perf_counter() - start:.0f} s", flush=True)
    net.eval()
    with torch.inference_mode():
        logits = [net(to_float(test_split.images[i : i + 1000]))[0] for i in range(0, len(test_split), 1000)]
    predictions = torch.cat(logits).argmax(1)
    return net, (predictions == test_split.labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding FashionMNIST/raw")
    parser.add_argument("--out", type=Path, default=REFERENCE_GRAPH, help=f"(default: {REFERENCE_GRAPH})")
    args = parser.parse_args()
    torch.set_num_threads(1)  # deterministic, and leaves the other core to whatever else runs
    net, accuracy = train(args.data_dir)
    example = to_float(load_official(args.data_dir, False, False).images[:64])
    export_graph(net, example, args.out, "image", ["logits", "features"])
    print(f"test accuracy {accuracy:.4f}; wrote {args.out}")


if __name__ == "__main__":
    main()

"""Fashion-MNIST held in memory as uint8 tensors, batched by indexing.

The whole dataset is 47 MB, so there are no per-item PIL transforms and no worker processes:
each batch is one fancy-index into a uint8 tensor and one conversion to float.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import torch

from fmnist.errors import DataError

DOWNLOAD_TIMEOUT_S = 30


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # (N, 28, 28) uint8; or (N, d) float latents, for a head on a frozen encoder
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Splits:
    train: Split
    val: Split
    test: Split


def _one_line(error: Exception) -> str:
    """torchvision's download errors span lines (one per mirror tried)."""
    return " ".join(str(error).split())


def load_official(root: Path, train: bool, download: bool) -> Split:
    """One official split through torchvision (which checks the files and never re-downloads)."""
    from torchvision.datasets import FashionMNIST

    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DataError(f"--data-dir {root} is a file, not a folder")
    explicit_missing = not root.exists() and not download
    if explicit_missing:
        raise DataError(
            f"data folder {root} does not exist: point --data-dir or $FMNIST_DATA at a folder holding "
            "FashionMNIST/raw, or drop --no-download to fetch the data"
        )
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # no network must fail, not hang
    try:
        ds = FashionMNIST(str(root), train=train, download=download)
    except RuntimeError as e:
        raise DataError(
            f"Fashion-MNIST not found under {root}/FashionMNIST/raw "
            f"({'download disabled' if not download else _one_line(e)}); "
            "point --data-dir or $FMNIST_DATA at a folder holding it"
        ) from None
    except OSError as e:
        raise DataError(
            f"could not download Fashion-MNIST into {root} ({e.__class__.__name__}: {_one_line(e)}); "
            "check the network, or point --data-dir or $FMNIST_DATA at a copy of the data"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)
    return Split(ds.data.contiguous(), ds.targets.long().contiguous())


def split_train_val(full: Split, val_fraction: float, seed: int, limit: int | None) -> tuple[Split, Split]:
    """Seeded hold-out: a permutation of the training set, its tail for validation.

    ``limit`` keeps the first N training images after the shuffle (the validation set is kept
    whole unless it is larger than the limited training set, so tiny runs stay tiny).
    """
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(full), generator=g)
    n_val = int(round(len(full) * val_fraction))
    train_idx, val_idx = order[n_val:], order[:n_val]
    if limit is not None:
        train_idx = train_idx[:limit]
        val_idx = val_idx[: max(limit, 1)] if limit < n_val else val_idx
    return (
        Split(full.images[train_idx], full.labels[train_idx]),
        Split(full.images[val_idx], full.labels[val_idx]),
    )


def load_splits(root: Path, *, val_fraction: float, seed: int, limit: int | None, download: bool) -> Splits:
    train, val = split_train_val(load_official(root, True, download), val_fraction, seed, limit)
    return Splits(train, val, load_official(root, False, download))


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) in [0, 1]."""
    return images.unsqueeze(1).float().div_(255.0)


class EpochBatches(torch.utils.data.Sampler):
    """Index batches, reshuffled each epoch from (seed, epoch) alone.

    A pure function of the epoch makes a resumed run draw the same batches as an uninterrupted
    one. Lightning calls ``set_epoch``. Under DDP each rank takes every world_size-th batch, and the
    last round is filled up with the epoch's first batches: every rank must take the same number of
    steps, or the ranks with one more wait for ever in DDP's gradient all-reduce.
    """

    def __init__(self, n: int, batch_size: int, seed: int, shuffle: bool, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.rank, self.world = rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[torch.Tensor]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        batches = list(order.split(self.batch_size))
        padded = [batches[i % len(batches)] for i in range(len(self) * self.world)] if batches else []
        return padded[self.rank :: self.world]

    def __iter__(self):
        # lazy: on resume Lightning creates the iterator before it calls set_epoch
        yield from self._batches()

    def __len__(self) -> int:
        n_batches = -(-self.n // self.batch_size)
        return -(-n_batches // self.world)


class TensorBatches(torch.utils.data.Dataset):
    """``dataset[index_tensor]`` -> (float images (B, 1, 28, 28), labels (B,))."""

    def __init__(self, split: Split):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.split.images[idx]
        return (to_float(x) if x.dtype == torch.uint8 else x), self.split.labels[idx]


@torch.inference_mode()
@torch.no_grad()  # not inference_mode: a head trains on these latents, and autograd must accept them
def encode_images(encoder, images: torch.Tensor, batch: int = 2000) -> torch.Tensor:
    """uint8 images (N, 28, 28) through ``encoder`` (a module is put in eval mode) -> latents (N, d)."""
    if isinstance(encoder, torch.nn.Module):
        encoder.eval()
    return torch.cat([encoder(to_float(images[i : i + batch])) for i in range(0, len(images), batch)])


def encode_split(encoder: torch.nn.Module, split: Split, batch: int = 2000) -> Split:
    """The split's images through a fixed encoder, as a Split of (N, d) latents: a head on a frozen
    encoder then trains on 8 numbers per image instead of rerunning the encoder every epoch."""
    return Split(encode_images(encoder, split.images, batch), split.labels)


def batch_loader(split: Split, batch_size: int, seed: int, shuffle: bool, rank: int = 0, world: int = 1):
    """A DataLoader that yields whole batches from memory (no collation, no workers)."""
    sampler = EpochBatches(len(split), batch_size, seed, shuffle, rank, world)
    return torch.utils.data.DataLoader(TensorBatches(split), sampler=sampler, batch_size=None)

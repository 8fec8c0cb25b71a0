"""Callbacks: the per-epoch metrics CSV, per-epoch reseeding (for exact resume), the named progress bar."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import lightning as L
import torch


class MetricsCSV(L.Callback):
    """One row per epoch: every train_*/val_* metric, the learning rate and the epoch time.

    The rows live in the callback's state, which Lightning saves in each checkpoint, so a resumed
    run's CSV holds exactly the epochs its checkpoint had; the file is rewritten whole each epoch.
    Epochs count from 1, as the progress bar, summary.json and every message do.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.rows: list[dict] = []
        self._start, self._lr = 0.0, 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()
        self._lr = trainer.optimizers[0].param_groups[0]["lr"]  # the rate this epoch trained with

    def on_train_epoch_end(self, trainer, pl_module):
        metrics = {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if k.startswith(("train_", "val_"))}
        self.rows.append(
            {
                "epoch": trainer.current_epoch + 1,
                **metrics,
                "lr": self._lr,
                "epoch_time_s": round(time.perf_counter() - self._start, 4),
            }
        )
        if trainer.is_global_zero:
            self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        try:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(self.rows[0]))
                writer.writeheader()
                writer.writerows(self.rows)
            tmp.replace(self.path)
        except BaseException:  # a full disk, say: no half-written file left beside the whole one
            tmp.unlink(missing_ok=True)
            raise

    def state_dict(self):
        return {"rows": self.rows, "first_epoch": 1}

    def load_state_dict(self, state_dict):
        # checkpoints saved before epochs counted from 1 (no "first_epoch") hold rows counted from 0
        shift = 1 - state_dict.get("first_epoch", 0)
        self.rows = [{**row, "epoch": row["epoch"] + shift} for row in state_dict["rows"]]


class EpochSeed(L.Callback):
    """Reseed torch at each epoch start from (seed, epoch): a resumed run draws what an
    uninterrupted one would (VAE noise), without storing RNG states."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer, pl_module):
        torch.manual_seed(self.seed * 100_003 + trainer.current_epoch + 1)


class ModelProgressBar(L.pytorch.callbacks.TQDMProgressBar):
    """Lightning's bar, named for the model it trains: ``[2/3] classifier, epoch 4/30``."""

    def __init__(self, label: str):
        super().__init__()
        self.label = label

    def on_train_epoch_start(self, trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(f"{self.label}, epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")

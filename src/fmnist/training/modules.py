"""Thin LightningModules around the plain models: one shared step, config in the checkpoint.

Each model of :mod:`fmnist.contract.models` registers one module here, and the module holds that
model's own steps: the network it builds, how it starts from the model it trains from, what it
trains on, and its test-set metrics and figures. The training stage calls these, never a name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from fmnist.config import ENCODER_SHAPE, Config
from fmnist.contract.models import BY_NAME
from fmnist.training import augment, evaluate, figures, losses, models
from fmnist.training.data import Split, Splits, encode_split

Progress = Callable[[Iterable], Iterable] | None  # wraps the test batches in a progress bar


class _Base(L.LightningModule):
    """Saves the config dict as hyper-parameters and rebuilds the model from it."""

    model_name: str
    monitor: str  # validation metric that picks best.ckpt
    monitor_mode: str
    objective: str  # validation metric whose best (lowest) epoch `fmnist tune` minimises
    network: Callable[[Config], nn.Module]  # the plain model, built from the config
    # the head trains on latents encoded before fit: it needs its start even when resumed
    encodes_inputs = False

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        config = self.fixed_config(config)
        self.save_hyperparameters({"config": config})  # what the model was built from, kept in the checkpoint
        self.config = Config.from_saved(config)
        self.model = self.network(self.config)

    @staticmethod
    def fixed_config(config: dict[str, Any]) -> dict[str, Any]:
        """The config with whatever this model always sets (nothing, but for the head)."""
        return config

    def _metrics(self, batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # -- the model's own steps in `fmnist train` and `fmnist tune` -------------------------------

    def wants_start(self) -> bool:
        """Whether to copy weights in from the model it trains from (contract: ``trains_from``)."""
        return BY_NAME[self.model_name].trains_from is not None

    def start_from(self, source: _Base) -> None:
        """Copy weights in from ``source``, the trained module of the model this one trains from
        (called only when wants_start)."""

    def training_splits(self, splits: Splits) -> Splits:
        """The splits fit trains and validates on (the images, but for the head)."""
        return splits

    def test_metrics(self, test: Split, folder: Path, progress: Progress = None) -> dict[str, Any]:
        """Metrics on the official test set (``test_*`` keys), plus the model's figures in ``folder``."""
        raise NotImplementedError

    def _common_step(self, batch, stage: str) -> torch.Tensor:
        metrics = self._metrics(batch)
        self.log_dict(
            {f"{stage}_{k}": v for k, v in metrics.items()},
            on_step=False,
            on_epoch=True,
            prog_bar=stage == "val",
            batch_size=len(batch[0]),
        )
        return metrics["loss"]

    def training_step(self, batch, batch_idx):
        return self._common_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._common_step(batch, "val")

    def param_groups(self) -> list[dict]:
        return [{"params": self.parameters(), "lr": self.config.lr}]

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.param_groups(), lr=self.config.lr, weight_decay=self.config.l2)
        if self.config.lr_schedule == "constant":
            return optimizer
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.config.epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


class AEModule(_Base):
    model_name, monitor, monitor_mode, objective = "ae", "val_mse", "min", "val_mse"
    network = models.AutoEncoder

    def _metrics(self, batch):
        x, _ = batch
        loss, mse = losses.ae_loss(self.model(x), x, self.model, self.config.l1)
        return {"loss": loss, "mse": mse}

    def test_metrics(self, test, folder, progress=None):
        return {"test_" + k: v for k, v in evaluate.ae_metrics(self.model, test).items()}


class ClassifierModule(_Base):
    # Accuracy picks the checkpoint: fine-tuned end to end, validation accuracy still rises for
    # epochs after the validation loss has turned up (over-confident, not less accurate). Tuning
    # keeps the loss, the smoother signal for comparing trials (and what existing studies hold).
    model_name, monitor, monitor_mode, objective = "classifier", "val_acc", "max", "val_loss"
    network = models.Classifier

    def start_from(self, source):
        self.model.encoder.load_state_dict(source.model.encoder.state_dict())

    def test_metrics(self, test, folder, progress=None):
        m = evaluate.classifier_metrics(self.model, test)
        figures.save_confusion(m["confusion"], folder, self.model_name)
        return {"test_accuracy": m["accuracy"], "test_per_class_accuracy": m["per_class_accuracy"]}

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.config.augment:
            x = augment.augment(x, self.config)
        return self._common_step((x, y), "train")

    def _metrics(self, batch):
        x, y = batch
        logits = self.model(x)
        acc = (logits.argmax(1) == y).float().mean()
        return {"loss": F.cross_entropy(logits, y), "acc": acc}

    def param_groups(self) -> list[dict]:
        c = self.config
        groups = [{"params": self.model.head.parameters(), "lr": c.lr}]
        if c.unfreeze:
            groups.append({"params": self.model.encoder.parameters(), "lr": c.lr * c.encoder_lr_scale})
        return groups


class HeadModule(ClassifierModule):
    """The seed's experiment: only the head learns, on the AE's frozen encoder, from plain images."""

    model_name = "head"
    encodes_inputs = True

    def training_splits(self, splits):
        """Its encoder never changes: it trains on the latents, computed once."""
        encoder = self.model.encoder
        return Splits(encode_split(encoder, splits.train), encode_split(encoder, splits.val), splits.test)

    @staticmethod
    def fixed_config(config: dict[str, Any]) -> dict[str, Any]:
        return {**config, "unfreeze": False, "augment": False}

    def _metrics(self, batch):
        z, y = batch
        if z.ndim == 2:  # latents of the frozen encoder, computed once (data.encode_split)
            if self.training and self.config.head_noise > 0:
                z = augment.jitter_latents(z, self.config.head_noise)
            logits = self.model.head(z)
            return {"loss": F.cross_entropy(logits, y), "acc": (logits.argmax(1) == y).float().mean()}
        return super()._metrics(batch)


# The likelihood scale's running estimate under vae_scale "optimal": the mean of many batches'
# closed-form values, not the last batch's alone.
SCALE_MOMENTUM = 0.99


class VAEModule(_Base):
    model_name, monitor, monitor_mode, objective = "vae", "val_loss", "min", "val_loss"
    network = models.VAE

    def wants_start(self):
        return self.config.vae_from_ae

    def start_from(self, source):
        """From an AE of the same shape only (another arch or latent size has other layers)."""
        if all(getattr(source.config, k) == getattr(self.config, k) for k in ENCODER_SHAPE):
            models.start_vae_from_ae(self.model, source.model)

    def test_metrics(self, test, folder, progress=None):
        c = self.config
        m = evaluate.vae_metrics(self.model, test, c.iw_samples, c.seed, progress)
        figures.save_vae_grids(self.model, test, folder, c.seed)
        return {"test_" + k: v for k, v in m.items()}

    def _log_scale(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        """The scale this step's likelihood uses: under "optimal" the batch's closed form while
        training, tracked into ``model.log_scale`` (what validation, test and export use)."""
        scale = self.model.log_scale
        if self.config.vae_scale == "optimal" and self.training:
            best = losses.optimal_log_scale(x, recon, self.config.vae_likelihood)
            with torch.no_grad():
                scale.copy_(best if self.global_step == 0 else SCALE_MOMENTUM * scale + (1 - SCALE_MOMENTUM) * best)
            return best
        return scale

    def _metrics(self, batch):
        x, _ = batch
        recon, _, mu, logvar = self.model(x)
        kind = self.config.vae_likelihood
        x = losses.likelihood_target(x, kind)
        elbo, rec, kl = losses.elbo_terms(x, recon, mu, logvar, self._log_scale(x, recon), kind)
        return {"loss": -elbo.mean(), "elbo": elbo.mean(), "rec": rec.mean(), "kl": kl.mean()}

    def param_groups(self) -> list[dict]:
        if self.config.vae_scale == "learned":
            return super().param_groups()
        fitted = [p for name, p in self.named_parameters() if not name.endswith("log_scale")]
        return [{"params": fitted, "lr": self.config.lr}]


MODULES: dict[str, type[_Base]] = {cls.model_name: cls for cls in (AEModule, HeadModule, ClassifierModule, VAEModule)}


def load_module(model_name: str, checkpoint: str, map_location: str = "cpu") -> _Base:
    """Rebuild a trained module from its checkpoint (config from the checkpoint, not defaults)."""
    return MODULES[model_name].load_from_checkpoint(checkpoint, map_location=map_location)

"""Test-set metrics as plain functions of a model and a split (no Trainer)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from fmnist.training import losses
from fmnist.training.data import Split, to_float

EVAL_BATCH = 1000


def _batches(split: Split, batch_size: int = EVAL_BATCH):
    for start in range(0, len(split), batch_size):
        yield to_float(split.images[start : start + batch_size]), split.labels[start : start + batch_size]


@torch.inference_mode()
def ae_metrics(model, split: Split) -> dict[str, float]:
    model.eval()
    sq = sum(((model(x) - x) ** 2).sum().item() for x, _ in _batches(split))
    return {"mse": sq / (len(split) * 28 * 28)}


@torch.inference_mode()
def classifier_metrics(model, split: Split) -> dict:
    """Accuracy, per-class accuracy, and the row-normalised confusion matrix (true x predicted)."""
    model.eval()
    predictions = torch.cat([model(x).argmax(1) for x, _ in _batches(split)])
    counts = torch.zeros(10, 10, dtype=torch.long)
    counts.index_put_((split.labels, predictions), torch.ones_like(predictions), accumulate=True)
    per_class = counts.diag().float() / counts.sum(1).clamp(min=1)
    return {
        "accuracy": (predictions == split.labels).float().mean().item(),
        "per_class_accuracy": per_class.tolist(),
        "confusion": (counts.float() / counts.sum(1, keepdim=True).clamp(min=1)).tolist(),
    }


@torch.inference_mode()
def vae_metrics(
    model, split: Split, iw_samples: int, seed: int = 0, progress: Callable[[list], Iterable] | None = None
) -> dict[str, float]:
    """ELBO, its terms, MSE of the decoded posterior mean, and the importance-weighted log p(x);
    ``progress`` wraps the list of batches (e.g. in a tqdm bar)."""
    model.eval()
    torch.manual_seed(seed)
    totals = dict.fromkeys(("elbo", "rec", "kl", "mse", "log_px"), 0.0)
    batches = list(_batches(split, 250))
    for x, _ in progress(batches) if progress else batches:
        recon, _, mu, logvar = model(x)
        target = losses.likelihood_target(x, model.likelihood)
        elbo, rec, kl = losses.elbo_terms(target, recon, mu, logvar, model.log_scale, model.likelihood)
        totals["elbo"] += elbo.sum().item()
        totals["rec"] += rec.sum().item()
        totals["kl"] += kl.sum().item()
        totals["mse"] += ((model.decoder(mu) - x) ** 2).mean((1, 2, 3)).sum().item()
        totals["log_px"] += losses.importance_weighted_log_px(model, x, iw_samples).sum().item()
    return {k: v / len(split) for k, v in totals.items()}

"""The VAE's likelihoods side by side (``--vae-likelihood``): per run folder, the VAE's test
log-likelihood in bits per dimension (importance-weighted bound, k samples, dequantized 8-bit test
images, as ``fmnist evaluate``) and the Frechet distance of its samples z ~ N(0, I) to the test
images in the reference network's features; with the full-covariance Gaussian and PPCA at the
latent size as baselines. Usage::

    python benchmarks/vae_likelihoods.py --data-dir DIR [--k 16] RUN [RUN ...]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from fmnist import runs
from fmnist.runtime import likelihood
from fmnist.runtime.evaluation import frechet_distance, load_split
from fmnist.runtime.progress import Progress
from fmnist.runtime.reference import reference_features


def measure(run: Path, test: np.ndarray, real: np.ndarray, k: int, seed: int, progress: Progress) -> dict:
    module = runs.load_models(run, ("vae",), needed_by="this benchmark")["vae"]
    vae = module.model.eval()
    y = likelihood.dequantize(test, seed)

    @torch.inference_mode()
    def encode(batch):
        mu, logvar = vae.encode(torch.as_tensor(batch, dtype=torch.float32).view(-1, 1, 28, 28))
        return mu.numpy(), logvar.numpy()

    @torch.inference_mode()
    def decode(z):
        return vae.decoder(torch.as_tensor(z, dtype=torch.float32)).view(len(z), -1).numpy()

    scales = vae.log_scale.detach().double().flatten().numpy()
    kind, log_scale = vae.likelihood, np.broadcast_to(scales, (y.shape[1],))
    log_p = likelihood.vae_log_density(encode, decode, y, k, kind, log_scale, seed, lambda b: progress.iterate(kind, b))
    z = np.random.default_rng(seed).standard_normal((len(test), module.config.latent_dim))
    samples = decode(z).reshape(-1, 28, 28)
    return {
        "run": str(run),
        "likelihood": kind,
        "vae_scale": module.config.vae_scale,
        "epochs": module.config.epochs,
        "vae_bits_per_dim": likelihood.bits_per_dim(log_p, y.shape[1]),
        "frechet_distance": frechet_distance(real, reference_features(samples)),
        "mean_log_scale": float(scales.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    test, _ = load_split(args.data_dir, "t10k")
    train, _ = load_split(args.data_dir, "train")
    real = reference_features(test)
    progress = Progress.on_terminal()
    for run in args.runs:
        start = time.perf_counter()
        row = measure(run, test, real, args.k, args.seed, progress)
        print(json.dumps({**row, "k": args.k, "seconds": round(time.perf_counter() - start, 1)}), flush=True)
    y_test, y_train = likelihood.dequantize(test, args.seed), likelihood.dequantize(train, args.seed + 1)
    latent = runs.load_models(args.runs[0], ("vae",), needed_by="this benchmark")["vae"].config.latent_dim
    for name, q in (("full Gaussian", None), (f"PPCA q={latent}", latent)):
        model = likelihood.fit_gaussian(y_train, q)
        print(json.dumps({"baseline": name, "bits_per_dim": likelihood.bits_per_dim(model.log_density(y_test), 784)}))


if __name__ == "__main__":
    main()

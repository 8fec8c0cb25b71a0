"""The README's two VAE figures (docs/samples_vae.png, docs/reconstructions_vae.png) from a run
folder's VAE alone, drawn as `fmnist report` draws them: the shipped VAE was retrained into a run
that has no head or classifier (scripts/vae_from_bundle.sh), which the full report needs.

    python scripts/vae_figures.py RUN_DIR OUT_DIR [--data-dir DIR]
"""

import argparse
from pathlib import Path

import torch

from fmnist import runs
from fmnist.analysis import figures
from fmnist.analysis.report import CLASS_NAMES, N_SAMPLES, decode, first_of_each_class
from fmnist.training import data as data_mod

parser = argparse.ArgumentParser(description="the VAE figures of `fmnist report` from a run's VAE")
parser.add_argument("run_dir", type=Path)
parser.add_argument("out_dir", type=Path)
parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
run, out = args.run_dir, args.out_dir
out.mkdir(parents=True, exist_ok=True)
vae = runs.load_models(run, ["vae"], needed_by="the VAE figures")["vae"]
config, vae = vae.config, vae.model
test = data_mod.load_official(args.data_dir, train=False, download=False)
picks = first_of_each_class(test.labels)
x = data_mod.to_float(test.images[picks])
with torch.inference_mode():
    rec = vae.decoder(vae.encode(x)[0])
names = [n.replace("/", "/\n") for n in CLASS_NAMES]
title = "VAE (posterior mean)"
figures.image_rows(
    [x.squeeze(1).numpy(), rec.squeeze(1).numpy()],
    ["test", "VAE"],
    names,
    f"{title} reconstructions of the first test image of each class",
    out / "reconstructions_vae.png",
)
seed = args.seed
normal = torch.randn(N_SAMPLES, config.latent_dim, generator=torch.Generator().manual_seed(seed))
figures.sample_grid(decode(vae.decoder, normal), "vae: z ~ N(0, I) -> VAE decoder", out / "samples_vae.png")

"""Test log-likelihood in bits per dimension of bundles (``fmnist evaluate``'s figures alone): the
VAE's importance-weighted bound, a full-covariance Gaussian and PPCA at the latent size, all on the
same dequantized 8-bit test images, the baselines fitted on the official training set. Usage::

    python benchmarks/bits_per_dim.py --data-dir DIR [--seed 0] BUNDLE [BUNDLE ...]
"""

import argparse
import json
import sys
import time
from pathlib import Path

from fmnist.runtime.bundle import Bundle
from fmnist.runtime.evaluation import bits_per_dim, iw_samples, load_split
from fmnist.runtime.progress import Progress


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    test, _ = load_split(args.data_dir, "t10k")
    train, _ = load_split(args.data_dir, "train")
    for folder in args.bundles:
        bundle = Bundle(folder, "cpu")
        start = time.perf_counter()
        figures = bits_per_dim(bundle, test, train, args.seed, Progress.on_terminal())
        row = {
            "bundle": str(folder),
            "iw_samples": iw_samples(bundle.manifest),
            **figures,
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(json.dumps(row), flush=True)
    print(f"# {len(test)} test images, {len(train)} training images, seed {args.seed}", file=sys.stderr)


if __name__ == "__main__":
    main()

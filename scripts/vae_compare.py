"""Two ``fmnist evaluate --json`` results of a bundle before and after its VAE was replaced, side by
side, and the rule of issue 23: the new VAE ships only with fewer bits per dimension and samples no
worse in Frechet distance. Exit status 0 when it ships, 1 when the old one stays. Usage::

    python scripts/vae_compare.py OLD.json NEW.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# (what, key path in evaluate's JSON); lower is better for all but the ELBO and the accuracy
ROWS = (
    ("VAE bits/dim", ("vae_bits_per_dim",)),
    ("VAE samples, Frechet", ("samplers", "vae", "frechet_distance")),
    ("VAE ELBO, nats/image", ("vae_elbo",)),
    ("full Gaussian bits/dim", ("gaussian_bits_per_dim",)),
    ("PPCA bits/dim", ("ppca_bits_per_dim",)),
    ("KDE samples, Frechet", ("samplers", "kde", "frechet_distance")),
    ("KDE-PCA samples, Frechet", ("samplers", "kde-pca", "frechet_distance")),
    ("reconstruction MSE", ("reconstruction_mse",)),
    ("classifier accuracy", ("classifier_accuracy",)),
)


def value(result: dict, path: tuple[str, ...]):
    for key in path:
        result = result[key]
    return result


def ships(old: dict, new: dict) -> bool:
    """Fewer bits per dimension, and the VAE's samples no further from the test images."""
    bits, frechet = ROWS[0][1], ROWS[1][1]
    return value(new, bits) < value(old, bits) and value(new, frechet) <= value(old, frechet)


def table(old: dict, new: dict) -> list[str]:
    lines = [
        f"{'':28}{'before':>12}{'after':>12}",
        f"{'VAE likelihood':28}{old['vae_likelihood']:>12}{new['vae_likelihood']:>12}",
    ]
    lines += [f"{what:28}{value(old, path):12.4f}{value(new, path):12.4f}" for what, path in ROWS]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path, help="fmnist evaluate --json of the bundle before")
    parser.add_argument("new", type=Path, help="fmnist evaluate --json of the bundle after")
    args = parser.parse_args(argv)
    old, new = (json.loads(p.read_text()) for p in (args.old, args.new))
    print("\n".join(table(old, new)))
    verdict = ships(old, new)
    print("ships: fewer bits/dim, VAE samples no worse" if verdict else "does not ship: the old VAE stays")
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())

"""Cold start of the inference commands, end to end, against `python -c "import torch"`.

Each command runs as a fresh process, as a user types it; the figure is the median wall time of
several runs. The target is at most 0.5 s for `fmnist classify one.png` and `fmnist generate --n 16`.

    python benchmarks/cold_start.py --runs 7 [--artifacts DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def wall(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--artifacts", default=None, help="bundle (default: as the CLI resolves it)")
    args = parser.parse_args()
    fmnist = [shutil.which("fmnist") or sys.exit("install the package first: `fmnist` is not on PATH")]
    bundle = ["--artifacts", args.artifacts] if args.artifacts else []
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "one.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(image)
        subprocess.run(
            [*fmnist, "classify", str(image), *bundle], check=True, stdout=subprocess.DEVNULL
        )  # warm disk cache
        rows = {
            'python -c "import torch"': wall([sys.executable, "-c", "import torch"], args.runs),
            "fmnist classify one.png": wall([*fmnist, "classify", str(image), *bundle], args.runs),
            "fmnist generate --n 16": wall(
                [*fmnist, "generate", "--n", "16", "--out", f"{tmp}/s.png", *bundle], args.runs
            ),
        }
    baseline = rows['python -c "import torch"']
    for name, seconds in rows.items():
        print(f"{name:28s} {seconds:6.3f} s  ({seconds / baseline:.2f}x import torch)")


if __name__ == "__main__":
    main()

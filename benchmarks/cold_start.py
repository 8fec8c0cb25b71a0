"""Cold start of the inference commands, end to end, against `python -c "import torch"`.

Each command runs as a fresh process, as a user types it (``python -m fmnist`` is what the
``fmnist`` script runs); each figure is the median wall time of ``--runs`` runs, all in one
session so the ratios hold however busy the machine is. Targets: at most 0.5 s for
``fmnist classify one.png`` and ``fmnist generate --n 16``. The import rows show where the time
goes: Python itself, typer (whose parameter parsing builds pydantic TypeAdapters), and numpy +
onnxruntime + Pillow.

The bundle is ``--artifacts``, else the one the CLI resolves when it exists, else the toy bundle
of tests/toybundle.py (tiny graphs: session creation is then a few ms faster than for real ones).

    python benchmarks/cold_start.py [--runs 7] [--artifacts DIR]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from fmnist import artifacts

ROOT = Path(__file__).resolve().parents[1]


def median_wall(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bundle(arg: str | None, tmp: Path) -> tuple[Path, str]:
    if arg:
        return Path(arg), "--artifacts"
    resolved = artifacts.resolve_bundle_dir(None)
    if (resolved / artifacts.MANIFEST).is_file():
        return resolved, "the CLI's default"
    sys.path.insert(0, str(ROOT))
    from tests.toybundle import build_toy_bundle

    return build_toy_bundle(tmp / "toy"), "the toy bundle (no trained bundle found)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--artifacts", default=None, help="bundle (default: as the CLI resolves it)")
    args = parser.parse_args()
    py = [sys.executable]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder, which = bundle(args.artifacts, tmp)
        image = tmp / "one.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(image)
        fmnist = [*py, "-m", "fmnist"]
        b = ["--artifacts", str(folder)]
        commands = {
            'python -c "import torch"': [*py, "-c", "import torch"],
            "fmnist classify one.png": [*fmnist, "classify", str(image), *b],
            "fmnist generate --n 16": [*fmnist, "generate", "--n", "16", "--out", str(tmp / "s.png"), *b],
            "fmnist --help": [*fmnist, "--help"],
            "python -c pass": [*py, "-c", "pass"],
            "  import typer": [*py, "-c", "import typer"],
            "  import typer, pydantic": [*py, "-c", "import typer, pydantic"],
            "  import numpy, onnxruntime, PIL.Image": [*py, "-c", "import numpy, onnxruntime, PIL.Image"],
        }
        subprocess.run(commands["fmnist classify one.png"], check=True, stdout=subprocess.DEVNULL)  # warm caches
        rows = {name: median_wall(cmd, args.runs) for name, cmd in commands.items()}
    print(f"bundle: {which} ({folder}); median of {args.runs} runs")
    torch_s = rows['python -c "import torch"']
    for name, seconds in rows.items():
        print(f"{name:40s} {seconds:6.3f} s   {seconds / torch_s:5.2f}x import torch")


if __name__ == "__main__":
    main()

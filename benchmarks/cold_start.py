"""Cold start of the inference commands against the import floor, as paired medians.

The floor is ``python -c "import numpy, onnxruntime, PIL.Image"``: no command running a bundle
can start faster than its libraries load. Each round runs the floor and every command once, as
fresh processes in a shuffled order (``python -m fmnist`` is what the ``fmnist`` script runs), and
the ratio command / floor is taken within the round; the medians over ``--runs`` rounds are
printed with the floor beside them. Bar: ``fmnist classify one.png`` and ``fmnist generate --n 16``
at most 1.25x the floor. Wall time and CPU time (user + system of the process and its children)
are both shown: on a busy machine the CPU figures move less. ``python -c pass``, ``fmnist --help``
(the Typer app) and the floor without the interpreter's teardown are shown for scale: an inference
command ends its process without that teardown (``fmnist.__main__._exit_now``), which the floor
pays, so against the teardown-free floor the ratios are a little higher.

The bundle is ``--artifacts``, else the one the CLI resolves when it exists, else the toy bundle
of tests/toybundle.py (tiny graphs: session creation is then a few ms faster than for real ones).

    python benchmarks/cold_start.py [--runs 9] [--artifacts DIR]
"""

from __future__ import annotations

import argparse
import os
import random
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
FLOOR = 'python -c "import numpy, onnxruntime, PIL.Image"'
FLOOR_EXIT = "the same, ended by os._exit (no teardown)"
BAR = 1.25
BARRED = ("fmnist classify one.png", "fmnist generate --n 16")


# as installed: with its bytecode cached (pip compiles it; here the warm-up run writes it), which
# PYTHONDONTWRITEBYTECODE in a developer's environment would stop, compiling fmnist on every start
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of ``cmd``; the CPU time from wait4 (to the
    microsecond, where os.times counts clock ticks of 10 ms)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return wall, usage.ru_utime + usage.ru_stime


def bundle(arg: str | None, tmp: Path) -> tuple[Path, str]:
    if arg:
        return Path(arg), "--artifacts"
    resolved = artifacts.resolve_bundle_dir(None)
    if (resolved / artifacts.MANIFEST).is_file():
        return resolved, "the CLI's default"
    sys.path.insert(0, str(ROOT))
    from tests.toybundle import build_toy_bundle

    return build_toy_bundle(tmp / "toy"), "the toy bundle (no trained bundle found)"


def commands(folder: Path, tmp: Path) -> dict[str, list[str]]:
    py = [sys.executable]
    image = tmp / "one.png"
    garment = np.zeros((28, 28), np.uint8)
    garment[4:24, 8:20] = 200
    Image.fromarray(garment).save(image)
    fmnist = [*py, "-m", "fmnist"]
    b = ["--artifacts", str(folder)]
    return {
        FLOOR: [*py, "-c", "import numpy, onnxruntime, PIL.Image"],
        FLOOR_EXIT: [*py, "-c", "import os, numpy, onnxruntime, PIL.Image; os._exit(0)"],
        "fmnist classify one.png": [*fmnist, "classify", str(image), *b],
        "fmnist generate --n 16": [*fmnist, "generate", "--n", "16", "--out", str(tmp / "s.png"), *b],
        "python -c pass": [*py, "-c", "pass"],
        "fmnist --help": [*fmnist, "--help"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--artifacts", default=None, help="bundle (default: as the CLI resolves it)")
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder, which = bundle(args.artifacts, tmp)
        cmds = commands(folder, tmp)
        for cmd in cmds.values():  # warm the file cache
            timed(cmd)
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in cmds}
        for _ in range(args.runs):
            order = list(cmds)
            rng.shuffle(order)
            for name in order:
                runs[name].append(timed(cmds[name]))
    load = os.getloadavg()[0]
    print(f"bundle: {which} ({folder}); {args.runs} paired rounds; load average {load:.1f} (ratios hold on a busy box)")
    print(f"{'':50s} {'wall':>8s} {'x floor':>8s} {'CPU':>8s} {'x floor':>8s}")
    for name, times in runs.items():
        wall, cpu = (statistics.median(t[i] for t in times) for i in (0, 1))
        wall_x, cpu_x = ratios(times, runs[FLOOR])
        verdict = ""
        if name in BARRED:
            bare = ratios(times, runs[FLOOR_EXIT])[0]
            verdict = f"  (bar {BAR}x: {'met' if wall_x <= BAR else 'NOT met'}; {bare:.2f}x the floor without teardown)"
        print(f"{name:50s} {wall:6.3f} s {wall_x:7.2f}x {cpu:6.3f} s {cpu_x:7.2f}x{verdict}")


def ratios(times: list[tuple[float, float]], floor: list[tuple[float, float]]) -> tuple[float, ...]:
    """Medians of the within-round ratios to ``floor``: (wall, CPU)."""
    return tuple(statistics.median(t[i] / f[i] for t, f in zip(times, floor, strict=True)) for i in (0, 1))


if __name__ == "__main__":
    main()

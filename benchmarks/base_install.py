"""The base install, ``pip install fmnist`` without extras, into a new virtual environment: timed,
sized and checked.

1. Wheelhouse (not timed): every wheel the base install needs, the package's requirements and the
   setuptools that builds it, fetched once by ``pip download`` into ``--wheelhouse``: what a warm pip
   cache holds. (It stands in for pip's HTTP cache, which stays empty on machines whose network path
   drops the caching headers, as this project's does: there a second ``pip install`` downloads
   everything again.) Later runs find it full and touch no network.
2. Timed: ``python -m venv`` and then, with the venv's own pip, ``pip install --no-index
   --find-links WHEELHOUSE <repo>``; wall and CPU seconds (user + system, children included), which
   on a shared machine says more than the wall time.
3. Size: the venv on disk (allocated blocks, as ``du``), and its largest packages.
4. Checks: no library of the training extra can be imported; ``fmnist classify`` answers.

Usage::

    python benchmarks/base_install.py [--wheelhouse DIR] [--rounds 3] [--json FILE]

``tests/integration/test_base_install.py`` builds its venv with the same functions.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# setuptools builds fmnist from its source tree (pyproject's build-system), so it must be there too.
BUILD_REQUIREMENT = "setuptools>=68"
DEFAULT_WHEELHOUSE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fmnist" / "wheelhouse"
# Import names of the training extra (fmnist.cli.extras.TRAINING_MODULES; not imported from there,
# so this script runs without fmnist on the path).
TRAINING_MODULES = (
    "torch",
    "torchvision",
    "lightning",
    "onnx",
    "onnxscript",
    "sklearn",
    "joblib",
    "optuna",
    "optuna_integration",
    "matplotlib",
)


def fill_wheelhouse(wheelhouse: Path, repo: Path = ROOT) -> bool:
    """Make ``wheelhouse`` hold every wheel ``pip install repo`` needs; True when it had to download."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(wheelhouse)]
    pip += ["--find-links", str(wheelhouse), str(repo), BUILD_REQUIREMENT]
    if subprocess.run([*pip, "--no-index"], capture_output=True).returncode == 0:
        return False  # everything there, found offline
    done = subprocess.run(pip, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pip download into {wheelhouse} failed:\n{done.stderr[-2000:]}")
    return True


def _run_timed(cmd: list[str], **kwargs) -> tuple[float, float]:
    """Run ``cmd`` (it must succeed): (wall seconds, CPU seconds of it and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def make_base_venv(venv: Path, wheelhouse: Path, repo: Path = ROOT) -> dict[str, float]:
    """``python -m venv venv`` and ``pip install repo`` from the wheelhouse alone; their seconds."""
    # The base interpreter, not this venv's: a venv made from a venv would still be a fresh one,
    # but sys._base_executable says plainly which Python it is.
    python = getattr(sys, "_base_executable", sys.executable)
    venv_wall, venv_cpu = _run_timed([python, "-m", "venv", str(venv)])
    install = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index", "--find-links", str(wheelhouse)]
    # PIP_FIND_LINKS and pip.conf stay as they are: --no-index leaves only the wheelhouse and local links.
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    install_wall, install_cpu = _run_timed([*install, str(repo)], env=env)
    return {
        "venv_wall_s": venv_wall,
        "venv_cpu_s": venv_cpu,
        "install_wall_s": install_wall,
        "install_cpu_s": install_cpu,
        "total_wall_s": venv_wall + install_wall,
        "total_cpu_s": venv_cpu + install_cpu,
    }


def disk_usage(path: Path) -> int:
    """Bytes allocated to the files under ``path`` (``du -s``; hard links counted once)."""
    seen, total = set(), 0
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            st = os.lstat(os.path.join(folder, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def site_packages(venv: Path) -> Path:
    (found,) = venv.glob("lib/python*/site-packages")
    return found


def largest_packages(venv: Path, top: int = 8) -> list[tuple[str, float]]:
    """The biggest entries of site-packages, in MB."""
    sizes = [(p.name, disk_usage(p) / 1e6) for p in site_packages(venv).iterdir() if p.is_dir()]
    return sorted(sizes, key=lambda s: -s[1])[:top]


def importable(venv: Path, modules: tuple[str, ...] = TRAINING_MODULES) -> list[str]:
    """Which of ``modules`` the venv's Python can find."""
    probe = f"import importlib.util as u; print(' '.join(m for m in {modules!r} if u.find_spec(m)))"
    out = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.split()


def classify_works(venv: Path, folder: Path) -> str:
    """``fmnist classify`` on one made-up garment in the venv: its output line."""
    image = folder / "garment.png"
    # Written by the venv's Python: it has Pillow and numpy, the benchmark's may not.
    make = (
        "import sys, numpy as np; from PIL import Image; yy, xx = np.mgrid[:28, :28]; "
        "blob = np.exp(-(((yy - 14) / 9) ** 2 + ((xx - 14) / 6) ** 2)) * 220; "
        "Image.fromarray(blob.astype(np.uint8)).save(sys.argv[1])"
    )
    subprocess.run([str(venv / "bin" / "python"), "-c", make, str(image)], check=True)
    out = subprocess.run([str(venv / "bin" / "fmnist"), "classify", str(image)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"fmnist classify failed in the base venv: {out.stderr}")
    return out.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheelhouse", type=Path, default=DEFAULT_WHEELHOUSE, help=f"(default: {DEFAULT_WHEELHOUSE})")
    parser.add_argument("--rounds", type=int, default=3, help="fresh venvs to time; medians reported")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")

    start = time.perf_counter()
    downloaded = fill_wheelhouse(args.wheelhouse)
    wheels = sorted(args.wheelhouse.glob("*.whl"))
    print(
        f"wheelhouse {args.wheelhouse}: {len(wheels)} wheels, {sum(w.stat().st_size for w in wheels) / 1e6:.0f} MB "
        f"({'downloaded' if downloaded else 'already full'}, {time.perf_counter() - start:.0f} s)"
    )
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")
    rounds = []
    for k in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="fmnist-base-") as tmp:
            venv = Path(tmp) / "venv"
            r = make_base_venv(venv, args.wheelhouse)
            r["size_mb"] = disk_usage(venv) / 1e6
            r["load_average"] = os.getloadavg()[0]
            if k == 0:
                r["training_modules_importable"] = importable(venv)
                r["classify"] = classify_works(venv, Path(tmp))
                r["largest_packages_mb"] = [(name, round(mb, 1)) for name, mb in largest_packages(venv)]
            rounds.append(r)
        print(
            f"round {k + 1}: venv {r['venv_wall_s']:.1f} s + pip install {r['install_wall_s']:.1f} s wall "
            f"= {r['total_wall_s']:.1f} s ({r['total_cpu_s']:.1f} CPU s); {r['size_mb']:.0f} MB on disk; "
            f"load {r['load_average']:.1f}",
            flush=True,
        )
    first = rounds[0]
    print(f"largest packages (MB): {', '.join(f'{n} {mb}' for n, mb in first['largest_packages_mb'])}")
    print(f"training libraries importable: {first['training_modules_importable'] or 'none'}")
    print(f"fmnist classify: {first['classify']}")
    wall = statistics.median(r["total_wall_s"] for r in rounds)
    cpu = statistics.median(r["total_cpu_s"] for r in rounds)
    size = statistics.median(r["size_mb"] for r in rounds)
    print(f"median of {len(rounds)}: {wall:.1f} s wall, {cpu:.1f} CPU s, {size:.0f} MB")
    verdict = {True: "met", False: "NOT met"}
    print(f"targets: size <= 300 MB {verdict[size <= 300]}; install <= 30 s {verdict[wall <= 30]}")
    if args.json:
        args.json.write_text(json.dumps({"rounds": rounds, "median_wall_s": wall, "median_cpu_s": cpu}, indent=2))


if __name__ == "__main__":
    main()

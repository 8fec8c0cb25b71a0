"""`fmnist classify FOLDER` against the machine's limit for it, and its memory at 1,000 vs 10,000 images.

Two image sets, written once under ``--work``: the 10,000 official test images as 28x28 PNGs, and
2,000 product-style JPEGs made from the first test images by ``fmnist.runtime.photos``. For each,
in interleaved rounds (medians reported, so a drift in machine load touches every figure):

- D: decode + preprocess alone, in parallel on all cores (the command's own process pool),
  measured ``--repeats`` times a round, alternating with the command's runs (medians);
- C: onnxruntime classify alone, batch 256, on all cores, images already in memory;
- the limit when the two stages share the cores: 1 / (1/D + 1/C);
- the command: ``python -m fmnist classify FOLDER --jsonl`` end to end, start-up included, as
  images/s, against the bar of 0.7 of the limit; and when its first result reached the pipe,
  beside when the one result of ``classify one.png`` does (start-up alone).

Then the peak resident memory of the command's process tree (sampled from /proc every 10 ms)
classifying 1,000 and then 10,000 of the PNGs: streaming keeps it flat. The no-garment notices
printed are counted too: real garments must get none.

    nice -n 10 python benchmarks/bulk_classify.py [--rounds 3] [--repeats 3] [--artifacts DIR] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from fmnist import artifacts
from fmnist.runtime.bundle import Bundle
from fmnist.runtime.evaluation import load_test_set
from fmnist.runtime.limits import MAX_PIXELS
from fmnist.runtime.photos import photo_set
from fmnist.runtime.stream import BATCH, decoded_chunks, default_jobs

BAR = 0.7


def write_sets(work: Path, data_dir: Path) -> dict[str, list[Path]]:
    """{"test PNGs": 10,000 paths, "product JPEGs": 2,000 paths}, written unless already there."""
    from PIL import Image

    images = load_test_set(data_dir)[0]
    sets = {"test PNGs": (work / "png", ".png", len(images)), "product JPEGs": (work / "jpeg", ".jpg", 2000)}
    out = {}
    for name, (folder, suffix, n) in sets.items():
        paths = [folder / f"{i:05d}{suffix}" for i in range(n)]
        if not all(p.exists() for p in paths):
            folder.mkdir(parents=True, exist_ok=True)
            if suffix == ".png":
                for path, x in zip(paths, images, strict=False):
                    Image.fromarray((x * 255 + 0.5).astype(np.uint8)).save(path)
            else:
                for path, jpeg in zip(paths, photo_set(images[:n]), strict=True):
                    path.write_bytes(jpeg)
        out[name] = paths
    return out


def decode_rate(paths: list[Path], jobs: int) -> tuple[float, np.ndarray]:
    """D: images/s of the command's pool decoding and preprocessing ``paths``; and the images."""
    start = time.perf_counter()
    images = np.concatenate([x for _, x, _ in decoded_chunks(paths, jobs, "auto", MAX_PIXELS, None)])
    return len(paths) / (time.perf_counter() - start), images


def classify_rate(model: Bundle, images: np.ndarray) -> float:
    """C: images/s of onnxruntime classifying ``images`` in batches of BATCH."""
    model.classify(images[:BATCH])  # the session made and warm
    start = time.perf_counter()
    for i in range(0, len(images), BATCH):
        model.classify(images[i : i + BATCH])
    return len(images) / (time.perf_counter() - start)


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its children (the decode pool)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if stat.parent.name == str(pid) or fields[1] == str(pid):
                total += int((stat.parent / "statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError):
            continue
    return total


def run_command(folder_args: list[str], bundle: str, sample: bool = False) -> dict:
    """The command end to end: wall seconds, seconds to the first result, notices; with ``sample``
    its peak tree RSS too (the sampling reads all of /proc every 10 ms, about a seventh of a core,
    so it is off while the speed is measured)."""
    cmd = [sys.executable, "-m", "fmnist", "classify", *folder_args, "--jsonl", "--artifacts", bundle]
    peak, first = 0, None
    start = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as installed: bytecode cached
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, env=env)
    done = threading.Event()

    def sample_rss() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample_rss, daemon=True)
    if sample:
        sampler.start()
    try:
        lines = 0
        for _ in proc.stdout:
            first = first or time.perf_counter() - start
            lines += 1
        stderr = proc.stderr.read().decode()
        code = proc.wait()
    finally:
        done.set()
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    wall = time.perf_counter() - start
    if sample:
        sampler.join()
    if code != 0:
        raise SystemExit(f"classify exited {code}: {stderr.strip()[:300]}")
    return {"wall": wall, "first": first, "lines": lines, "peak": peak, "notices": stderr.count("no garment found")}


def measure_set(paths: list[Path], model: Bundle, bundle: str, jobs: int, repeats: int) -> dict:
    """One round: D and the command ``repeats`` times each, alternately, and C; their medians."""
    ds, commands = [], []
    for _ in range(repeats):
        d, images = decode_rate(paths, jobs)
        ds.append(d)
        commands.append(run_command([str(paths[0].parent)], bundle))
        assert commands[-1]["lines"] == len(paths), commands[-1]
    c = classify_rate(model, images)
    d = statistics.median(ds)
    command = {key: statistics.median(r[key] for r in commands) for key in ("wall", "first", "notices")}
    start_up = run_command([str(paths[0])], bundle)["first"]  # one image: the first result is start-up alone
    rate = len(paths) / command["wall"]
    return {"D": d, "C": c, "limit": 1 / (1 / d + 1 / c), "command": rate, **command, "start_up": start_up}


def memory(paths: list[Path], bundle: str, counts: tuple[int, ...], work: Path) -> dict[int, int]:
    """Peak tree RSS classifying the first ``n`` PNGs (their own folder of links), per n."""
    out = {}
    for n in counts:
        folder = work / f"first{n}"
        if not folder.is_dir():
            folder.mkdir()
            for p in paths[:n]:
                (folder / p.name).symlink_to(p)
        out[n] = run_command([str(folder)], bundle, sample=True)["peak"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="D and command runs per round (medians)")
    parser.add_argument("--artifacts", help="bundle (default: as the CLI resolves it)")
    parser.add_argument("--work", default="/tmp/fmnist-bulk-classify", help="folder for the image sets (kept)")
    parser.add_argument("--data-dir", default=os.environ.get("FMNIST_DATA"), help="Fashion-MNIST root")
    args = parser.parse_args()
    bundle = str(artifacts.resolve_bundle_dir(args.artifacts))
    work, jobs = Path(args.work), default_jobs()
    sets = write_sets(work, Path(args.data_dir))
    model = Bundle(bundle, "cpu")
    load = os.getloadavg()[0]
    print(f"bundle {bundle}; {jobs} cores, load average {load:.1f} at start (a busy machine: ratios, not speeds)")
    rounds: dict[str, list[dict]] = {name: [] for name in sets}
    for k in range(args.rounds):
        for name, paths in sets.items():
            r = measure_set(paths, model, bundle, jobs, args.repeats)
            rounds[name].append(r)
            print(f"round {k + 1} {name:13s} " + describe(r), flush=True)
    print(f"median of {args.rounds} rounds:")
    for name, runs in rounds.items():
        med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        verdict = "met" if med["command"] >= BAR * med["limit"] else "NOT met"
        print(
            f"  {name:13s} "
            + describe(med)
            + f"  -> {med['command'] / med['limit']:.2f} of the limit (bar {BAR}: {verdict})"
        )
    peaks = memory(sets["test PNGs"], bundle, (1000, 10000), work)
    ratio = peaks[10000] / peaks[1000]
    print(
        "peak memory of the command's processes: "
        + ", ".join(f"{n:,} images {peak / 2**20:.0f} MiB" for n, peak in peaks.items())
        + f" ({ratio:.2f}x for 10x the images; flat: {'yes' if ratio < 1.2 else 'NO'})"
    )
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


def describe(r: dict) -> str:
    return (
        f"D {r['D']:6.0f}/s  C {r['C']:6.0f}/s  limit {r['limit']:6.0f}/s  command {r['command']:6.0f}/s "
        f"({r['command'] / r['limit']:.2f})  first result {r['first']:.2f} s (one image's: {r['start_up']:.2f} s)  "
        f"no-garment notices {r['notices']:.0f}"
    )


if __name__ == "__main__":
    main()

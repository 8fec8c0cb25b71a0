"""Issue 19's acceptance run for bundle rollout, and the cost of API keys, against real
``fmnist serve`` processes on loopback.

Phases, each on a fresh server (``--watch --watch-interval 0.5``) serving ``--artifacts`` through a
link, under ``--clients`` keep-alive clients that classify real Fashion-MNIST test images (PNGs):

- ``swap``: for ``--duration`` seconds, while the link is swapped ``--swaps`` times between two
  bundles (A and B, different weights) in one rename each, as ``fmnist export`` does, and once to
  a broken bundle (a flipped byte in its classifier) that must be refused. Every answer is checked
  against what the bundle its ``x-fmnist-bundle`` header names gives for that image (computed here,
  in-process): a mismatch is an answer from the wrong bundle or a mixed micro-batch.
- ``noswap``: the same load for the same time without swaps; the bar is swap/noswap >= 0.8.
- ``keys-off`` / ``keys-on``: ``--keys-duration`` seconds each, ``--rounds`` times interleaved
  (off-on, on-off, ...), without and with ``FMNIST_API_KEYS`` (the clients send the key in both);
  the medians give the ratio, whose bar is on/off >= 0.95.

Prints failures (non-200 answers or broken connections), mismatches, reload counts and req/s.
Usage::

    PYTHONPATH=src python benchmarks/rollout.py [--duration 60] [--clients 64] [--swaps 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BOUNDARY = "fmnistrollout"
KEY = "bench-key-0123456789abcdef"


# --------------------------------------------------------------------------- inputs


def test_pngs(data_dir: Path, count: int) -> list[bytes]:
    """The first ``count`` Fashion-MNIST test images as 28x28 PNGs."""
    from PIL import Image

    raw = data_dir / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte"
    data = raw.read_bytes() if raw.exists() else gzip.decompress(raw.with_suffix(raw.suffix + ".gz").read_bytes())
    pixels = np.frombuffer(data, np.uint8, offset=16).reshape(-1, 28, 28)[:count]
    out = []
    for image in pixels:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def expected_answers(bundles: list[Path], pngs: list[bytes]) -> dict[str, np.ndarray]:
    """Per bundle id, the probabilities [len(pngs),10] the bundle gives for each image."""
    from fmnist.runtime.images import load_image
    from fmnist.serve.app import load_bundle
    from fmnist.serve.served import bundle_id

    x = np.stack([load_image(p, "auto") for p in pngs])
    answers = {}
    for folder in bundles:
        model = load_bundle(folder, "cpu")
        answers[bundle_id(model.manifest)] = model.classify(x)
    return answers


def broken_copy(bundle: Path, folder: Path) -> Path:
    """``bundle`` copied with one byte of its classifier flipped: its hash check fails."""
    shutil.copytree(bundle, folder)
    graph = folder / "classifier.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    return folder


def point(link: Path, target: Path) -> None:
    """Swap ``link`` to ``target`` in one rename."""
    tmp = link.with_name(link.name + ".new")
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)


def request_bytes(png: bytes, key: str | None) -> bytes:
    body = (
        (
            f'--{BOUNDARY}\r\ncontent-disposition: form-data; name="file"; filename="x.png"\r\n'
            "content-type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    auth = f"authorization: Bearer {key}\r\n" if key else ""
    head = (
        f"POST /v1/classify HTTP/1.1\r\nhost: 127.0.0.1\r\n{auth}"
        f"content-type: multipart/form-data; boundary={BOUNDARY}\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(link: Path, port: int, env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fmnist", "serve", "--artifacts", str(link), "--port", str(port),
         "--provider", "cpu", "--watch", "--watch-interval", "0.5", "--log-level", "warning"],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
        if proc.poll() is not None:
            break
    stop_server(proc)
    raise RuntimeError(f"fmnist serve did not start: {proc.communicate()[0].decode()[-2000:]}")


def stop_server(proc: subprocess.Popen) -> str:
    """SIGTERM, then SIGKILL to the whole process group; what it printed."""
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        pass
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.communicate()[0].decode()


def reload_counts(port: int, key: str | None) -> dict[str, float]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(request, timeout=10) as r:
        text = r.read().decode()
    found = re.findall(r'fmnist_bundle_reloads_total\{result="(\w+)"\} ([\d.e+]+)', text)
    return {result: float(value) for result, value in found}


# --------------------------------------------------------------------------- load


async def load(port: int, requests: list[bytes], clients: int, seconds: float) -> dict:
    """``clients`` keep-alive connections sending ``requests`` round-robin for ``seconds``:
    answers as (image index, bundle header, body), failures counted."""
    answers: list[tuple[int, bytes, bytes]] = []
    failures: list[str] = []
    end = time.perf_counter() + seconds

    async def client(offset: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = offset
        try:
            while time.perf_counter() < end:
                k = i % len(requests)
                writer.write(requests[k])
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
                body = await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 200"):
                    failures.append(head.split(b"\r\n", 1)[0].decode() + " " + body[:200].decode(errors="replace"))
                else:
                    bundle = re.search(rb"x-fmnist-bundle: ([0-9a-f]+)", head, re.I)
                    answers.append((k, bundle.group(1) if bundle else b"", body))
                i += 1
        except (OSError, asyncio.IncompleteReadError, AttributeError) as e:
            failures.append(f"connection broke: {e!r}")
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(c * 7) for c in range(clients)))
    return {"answers": answers, "failures": failures, "seconds": time.perf_counter() - start}


def mismatches(answers: list[tuple[int, bytes, bytes]], expected: dict[str, np.ndarray]) -> int:
    """Answers whose probabilities differ (by more than 1e-4) from their named bundle's."""
    bad = 0
    for k, bundle, body in answers:
        want = expected.get(bundle.decode())
        got = json.loads(body)["results"][0]["probabilities"]
        if want is None or np.abs(np.asarray(got) - want[k]).max() > 1e-4:
            bad += 1
    return bad


async def swapping(link: Path, a: Path, b: Path, broken: Path, swaps: int, seconds: float) -> None:
    """``swaps`` alternations A -> B -> A ... spread over ``seconds``, the broken bundle once midway."""
    step = seconds / (swaps + 2)
    for i in range(swaps):
        await asyncio.sleep(step)
        if i == swaps // 2:
            point(link, broken)
            await asyncio.sleep(step / 2)
        point(link, (b, a)[i % 2])


def run_phase(name: str, link: Path, requests: list[bytes], args, env=None, swap=None) -> dict:
    point(link, args.bundle_a)
    port = free_port()
    proc = start_server(link, port, env or {})
    try:

        async def main():
            jobs = [load(port, requests, args.clients, swap[1] if swap else args.keys_duration)]
            if swap:
                jobs.append(swapping(link, args.bundle_a, args.bundle_b, swap[0], args.swaps, swap[1]))
            return (await asyncio.gather(*jobs))[0]

        result = asyncio.run(main())
        time.sleep(1.5)  # the last swap's reload
        result["reloads"] = reload_counts(port, KEY if env else None)
    finally:
        result_log = stop_server(proc)
    result["rps"] = len(result["answers"]) / result["seconds"]
    result["log"] = result_log
    print(f"{name:9s} {result['rps']:8.1f} req/s  answers {len(result['answers'])}  failures {len(result['failures'])}"
          f"  reloads {result['reloads']}", flush=True)  # fmt: skip
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle-a", type=Path, default=ROOT / "src" / "fmnist" / "default_bundle")
    p.add_argument("--bundle-b", type=Path, default=ROOT / "benchmarks" / "bundles" / "seed")
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("FMNIST_DATA", ROOT.parent / "shared/data")))
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--swaps", type=int, default=10)
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--keys-duration", type=float, default=15.0)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--phases", default="swap,noswap,keys")
    args = p.parse_args()
    args.bundle_a, args.bundle_b = args.bundle_a.resolve(), args.bundle_b.resolve()
    phases = args.phases.split(",")
    load_avg = os.getloadavg()[0]
    print(f"rollout benchmark: {args.clients} clients, {args.images} test PNGs, {os.cpu_count()} CPUs shared with "
          f"the load generator; load average {load_avg:.1f} at start (a busy machine: ratios only)")  # fmt: skip
    pngs = test_pngs(args.data_dir, args.images)
    expected = expected_answers([args.bundle_a, args.bundle_b], pngs)
    plain = [request_bytes(png, None) for png in pngs]
    keyed = [request_bytes(png, KEY) for png in pngs]
    with tempfile.TemporaryDirectory(prefix="fmnist-rollout-") as tmp:
        link, broken = Path(tmp) / "current", broken_copy(args.bundle_a, Path(tmp) / "broken")
        runs = {}
        if "swap" in phases:
            runs["swap"] = run_phase("swap", link, plain, args, swap=(broken, args.duration))
        if "noswap" in phases:
            args_noswap = argparse.Namespace(**{**vars(args), "keys_duration": args.duration})
            runs["noswap"] = run_phase("noswap", link, plain, args_noswap)
        if "keys" in phases:
            for r in range(args.rounds):  # off, on, on, off, ...: a drift in the machine's load favours neither
                for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
                    env = {"FMNIST_API_KEYS": KEY} if mode == "on" else None
                    runs[f"keys-{mode}.{r}"] = run_phase(f"keys-{mode}", link, keyed, args, env=env)
    report(runs, expected, args)


def report(runs: dict, expected: dict, args) -> None:
    if "swap" in runs:
        swap = runs["swap"]
        bad = mismatches(swap["answers"], expected)
        seen = sorted({b.decode() for _, b, _ in swap["answers"]})
        refused = [line for line in swap["log"].splitlines() if "refused" in line]
        print(f"\nswap: {len(swap['failures'])} failed requests, {bad} mismatched answers of {len(swap['answers'])}; "
              f"bundles answering: {seen}; reloads {swap['reloads']} (want ok={args.swaps}, failed=1)")  # fmt: skip
        print(f"swap: refusal log line(s): {refused}")
        for failure in swap["failures"][:5]:
            print(f"  failure: {failure}")
    if "swap" in runs and "noswap" in runs:
        ratio = runs["swap"]["rps"] / runs["noswap"]["rps"]
        print(f"throughput during swaps / without: {ratio:.3f} (bar >= 0.8)")
    offs = [v["rps"] for k, v in runs.items() if k.startswith("keys-off")]
    ons = [v["rps"] for k, v in runs.items() if k.startswith("keys-on")]
    if offs and ons:
        fails = sum(len(v["failures"]) for k, v in runs.items() if k.startswith("keys"))
        ratio = float(np.median(ons) / np.median(offs))
        print(f"keys on / off (median req/s {np.median(ons):.1f} / {np.median(offs):.1f}): {ratio:.3f} "
              f"(bar >= 0.95); failures {fails}")  # fmt: skip


if __name__ == "__main__":
    main()

"""The Open Inference Protocol's image model against ``/v1/classify``, on one ``fmnist serve``.

Both get the same real Fashion-MNIST test images as PNG files, one per request, from
``--concurrency`` keep-alive clients: ``/v1/classify`` as a multipart upload, ``/v2/models/
fmnist_image/infer`` as a ``BYTES`` input in the binary tensor data extension (what
``tritonclient`` sends), with the output asked for in binary. The two alternate for ``--rounds``
rounds on the same server, and the medians give the ratio; the bar is V2 at least 0.8 of V1's
requests per second. Before timing, every image's V2 probabilities are checked equal to V1's.

Usage::

    PYTHONPATH=src python benchmarks/v2_load.py [--artifacts DIR] [--requests 4000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import statistics
import struct
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.serve_load import classify_request, free_port  # noqa: E402
from benchmarks.workers_drain import kill, start  # noqa: E402

BAR = 0.8


def png_test_images(data_dir: Path, count: int) -> list[bytes]:
    from PIL import Image

    from fmnist.runtime.evaluation import read_idx

    pixels = read_idx(data_dir / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte")[:count]
    out = []
    for p in pixels:
        buf = io.BytesIO()
        Image.fromarray(p).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def v2_request(port: int, png: bytes) -> bytes:
    """What tritonclient sends for one BYTES element with binary data, all outputs in binary."""
    raw = struct.pack("<I", len(png)) + png
    tensor = {"name": "image_file", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}}
    header = json.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}}).encode()
    body = header + raw
    head = (
        f"POST /v2/models/fmnist_image/infer HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/octet-stream\r\ninference-header-content-length: {len(header)}\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def exchange(reader, writer, request: bytes) -> tuple[bytes, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"^content-length: *(\d+)", head, re.I | re.M).group(1))
    return head, await reader.readexactly(length)


def v2_probabilities(head: bytes, body: bytes) -> np.ndarray:
    size = int(re.search(rb"inference-header-content-length: (\d+)", head, re.I).group(1))
    return np.frombuffer(body[size:], "<f4")


async def check_equal(port: int, pngs: list[bytes]) -> None:
    """Every image's probabilities over V2 equal /v1/classify's, to the bit."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i, png in enumerate(pngs):
            _, v1 = await exchange(reader, writer, classify_request(port, png))
            head, v2 = await exchange(reader, writer, v2_request(port, png))
            want = np.array(json.loads(v1)["results"][0]["probabilities"], np.float32)
            if not np.array_equal(v2_probabilities(head, v2), want):
                raise SystemExit(f"image {i}: V2 answers {v2_probabilities(head, v2)}, /v1/classify {want}")
    finally:
        writer.close()


async def load(port: int, requests: list[bytes], total: int, concurrency: int) -> tuple[float, int]:
    """``total`` requests (cycling over ``requests``) from ``concurrency`` keep-alive clients: (req/s, errors)."""
    issued = errors = 0

    async def client(offset: int) -> None:
        nonlocal issued, errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while issued < total:
                issued += 1
                head, _ = await exchange(reader, writer, requests[(issued + offset) % len(requests)])
                errors += not head.startswith(b"HTTP/1.1 200")
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    return total / (time.perf_counter() - t0), errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", default=None, help="bundle (default: the bundled one)")
    parser.add_argument("--data-dir", default=os.environ.get("FMNIST_DATA", ROOT.parent / "shared" / "data"))
    parser.add_argument("--images", type=int, default=256, help="distinct test PNGs")
    parser.add_argument("--requests", type=int, default=4000, help="per round and API")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    pngs = png_test_images(Path(args.data_dir), args.images)
    port = free_port()
    proc = start(args.artifacts, 1, port)
    try:
        asyncio.run(check_equal(port, pngs[:32]))
        apis = {"v1": [classify_request(port, p) for p in pngs], "v2": [v2_request(port, p) for p in pngs]}
        for api in apis.values():  # warm-up
            asyncio.run(load(port, api, 500, args.concurrency))
        rates: dict[str, list[float]] = {"v1": [], "v2": []}
        print(f"# V2 image model vs /v1/classify: {args.images} test PNGs, {args.requests} requests per round, "
              f"{args.concurrency} keep-alive clients, load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
              "(a shared, busy machine: the ratio is the figure, not the rates)")  # fmt: skip
        print("# check: V2 probabilities equal /v1/classify's for 32 test images: yes")
        for round_ in range(args.rounds):
            for name, requests in apis.items():
                rate, errors = asyncio.run(load(port, requests, args.requests, args.concurrency))
                rates[name].append(rate)
                print(f"round {round_ + 1} {name}: {rate:7.1f} req/s, {errors} errors")
    finally:
        kill(proc)
    v1, v2 = statistics.median(rates["v1"]), statistics.median(rates["v2"])
    ratio = v2 / v1
    verdict = "PASS" if ratio >= BAR else "FAIL"
    print(f"median: v1 {v1:.1f} req/s, v2 {v2:.1f} req/s, ratio {ratio:.2f} (bar {BAR}): {verdict}")


if __name__ == "__main__":
    main()

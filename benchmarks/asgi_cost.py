"""CPU time per ``/v1/classify`` request spent by the server's Python, without sockets or a load
generator: the ASGI app is called directly with one 28x28 PNG per request. By default request
after request with batching off, so the onnxruntime call is on the same thread and counted; with
``--concurrency 64``, 64 requests in flight through the batchers as under the HTTP load, and the
event loop's thread is timed apart (it bounds the requests/s; onnxruntime runs beside it). Steadier
than an HTTP load on a shared machine, so a change's cost on the request path shows; each source
tree given runs in its own process, alternately, and the minimum over the runs is reported.

Usage::

    PYTHONPATH=src python benchmarks/asgi_cost.py [--src DIR ...] [--requests 1000] [--runs 5] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOUNDARY = b"fmnistcost"


def request_parts() -> tuple[list[tuple[bytes, bytes]], bytes]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:28, :28]
    blob = np.exp(-(((yy - 14) / 9) ** 2 + ((xx - 14) / 6) ** 2)) * 220
    buf = io.BytesIO()
    Image.fromarray(np.clip(blob + rng.normal(0, 10, (28, 28)), 0, 255).astype(np.uint8)).save(buf, "PNG")
    body = (
        b"--" + BOUNDARY + b'\r\ncontent-disposition: form-data; name="file"; filename="x.png"\r\n'
        b"content-type: image/png\r\n\r\n" + buf.getvalue() + b"\r\n--" + BOUNDARY + b"--\r\n"
    )
    headers = [
        (b"host", b"x"),
        (b"content-type", b"multipart/form-data; boundary=" + BOUNDARY),
        (b"content-length", str(len(body)).encode()),
    ]
    return headers, body


async def measure(bundle: str, requests: int, runs: int, concurrency: int = 1) -> list[tuple[float, float]]:
    """(µs of process CPU, µs of the event loop thread's CPU) per request, one pair per run."""
    from fmnist.serve.app import create_app
    from fmnist.serve.settings import Settings

    headers, body = request_parts()
    app = create_app(bundle, Settings(batching=concurrency > 1, provider="cpu"))

    async def one() -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/classify", "raw_path": b"/v1/classify", "query_string": b"",
                 "root_path": "", "headers": headers, "client": ("127.0.0.1", 5000),
                 "server": ("127.0.0.1", 8000), "state": {}}  # fmt: skip
        sent = []

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            sent.append(message)

        await app(scope, receive, send)
        assert sent[0]["status"] == 200, sent

    async def client(count: int) -> None:
        for _ in range(count):
            await one()

    async def batch(count: int) -> None:
        await asyncio.gather(*(client(count // concurrency) for _ in range(concurrency)))

    async with app.router.lifespan_context(app):
        await batch(200)
        figures = []
        for _ in range(runs):
            t0, l0 = time.process_time(), time.thread_time()
            await batch(requests)
            done = requests // concurrency * concurrency
            figures.append(((time.process_time() - t0) / done * 1e6, (time.thread_time() - l0) / done * 1e6))
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", action="append", help="a source tree to measure (repeat; default: this one)")
    p.add_argument("--artifacts", default=str(ROOT / "src" / "fmnist" / "default_bundle"))
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3, help="processes per tree, alternating between trees")
    p.add_argument("--concurrency", type=int, default=1, help="requests in flight (over 1: batching on)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(measure(args.artifacts, args.requests, args.runs, args.concurrency))))
        return
    trees = args.src or [str(ROOT / "src")]
    best = {tree: [] for tree in trees}
    mode = f"{args.concurrency} in flight, batching on" if args.concurrency > 1 else "one by one, batching off"
    print(f"µs of CPU per /v1/classify request through the ASGI app ({mode}): process (event loop thread); "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    for _ in range(args.rounds):
        for tree in trees:
            out = subprocess.run(
                [sys.executable, __file__, "--child", "--artifacts", args.artifacts, "--requests",
                 str(args.requests), "--runs", str(args.runs), "--concurrency", str(args.concurrency)],
                env={**os.environ, "PYTHONPATH": tree}, capture_output=True, text=True, check=True,
            )  # fmt: skip
            figures = [tuple(f) for f in json.loads(out.stdout.strip().splitlines()[-1])]
            best[tree].append(min(figures))
            runs = ", ".join(f"{p:.0f} ({t:.0f})" for p, t in figures)
            print(f"  {tree}: min {min(figures)[0]:7.1f} ({min(figures)[1]:.1f})  (runs: {runs})", flush=True)
    for tree, figures in best.items():
        process, loop = min(figures)
        print(f"{tree}: {process:.1f} µs per request ({loop:.1f} on the event loop; min over {len(figures)} processes)")


if __name__ == "__main__":
    main()

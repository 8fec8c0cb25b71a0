"""Where ``fmnist serve``'s time goes on ``/v1/classify`` under load: py-spy samples the server
process while ``benchmarks/serve_load.py``'s keep-alive clients classify, then prints the share of
samples under each stage of the request path (inclusive) and the functions that hold the most
samples themselves (exclusive).

Usage::

    PYTHONPATH=src python benchmarks/profile_classify.py [--seconds 20] [--src DIR] [--flags ...]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import serve_load  # noqa: E402

# Stage of the request path -> a frame that marks it (py-spy's "function (file:line)" text).
STAGES = {
    "event loop idle (select/epoll)": "select (selectors.py",
    "HTTP parsing (httptools protocol)": "data_received (",
    "middleware: Observe": "__call__ (fmnist/serve/middleware.py",
    "FastAPI's router and parameter solving": "fastapi/routing.py",
    "upload reading (multipart, decode, preprocess)": "read_uploads (",
    "PNG decode + preprocess": "_decode (",
    "classify handler": "classify (fmnist/serve/routes/images.py",
    "JSON response": "render (starlette/responses.py",
    "response write (one send per answer)": "HeadWithBody.write (",
    "onnxruntime run (batcher thread)": "run (onnxruntime",
    "metrics": "observe_request (",
}


def profile(pid: int, seconds: float, out: Path) -> None:
    subprocess.run(
        ["py-spy", "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "200", "--format", "raw",
         "-o", str(out), "--nonblocking", "--threads"],
        check=True, capture_output=True,
    )  # fmt: skip


def summarise(collapsed: Path, top: int) -> None:
    stacks = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        stacks[stack] += int(count)
    total = sum(stacks.values())
    print(f"{total} samples of every thread; the share of them under each stage (inclusive):")
    for stage, marker in STAGES.items():
        n = sum(c for s, c in stacks.items() if marker in s)
        print(f"  {n / total:6.1%}  {stage}")
    own = collections.Counter()
    for s, c in stacks.items():
        own[s.split(";")[-1]] += c
    print(f"top {top} functions by own samples:")
    for frame, c in own.most_common(top):
        print(f"  {c / total:6.1%}  {frame[:150]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--artifacts", default=str(serve_load.ROOT / "src" / "fmnist" / "default_bundle"))
    p.add_argument("--src", default=str(serve_load.ROOT / "src"), help="source tree the server runs")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    port = serve_load.free_port()
    pngs, _ = serve_load.request_pngs()
    requests = [serve_load.classify_request(port, png) for png in pngs]
    proc = serve_load.start_server("on", args.artifacts, port, Path(args.src))
    try:
        asyncio.run(serve_load.load(port, 300, args.concurrency, requests))  # warm-up
        done = threading.Event()

        def keep_loading() -> None:
            while not done.is_set():
                asyncio.run(serve_load.load(port, 2000, args.concurrency, requests))

        loader = threading.Thread(target=keep_loading, daemon=True)
        loader.start()
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "profile.txt"
            profile(proc.pid, args.seconds, out)
            done.set()
            loader.join(60)
            summarise(out, args.top)
    finally:
        serve_load.stop_server(proc)


if __name__ == "__main__":
    main()

"""Load test for ``fmnist serve``: classify requests (one 28x28 PNG each) from many keep-alive
clients against real servers on loopback.

Runs, one after the other on a free port each:

- ``naive``: a bare FastAPI endpoint that decodes the PNG and runs one onnxruntime call per
  request (the baseline the product must not fall behind);
- ``off``: ``fmnist serve --no-batching``;
- ``on``: ``fmnist serve`` (dynamic micro-batching, the default);
- ``workers2``: ``fmnist serve --workers 2``.

The requests carry real test PNGs in turn (the first 1,000 of $FMNIST_DATA's test set; one
synthetic PNG without it). For each mode it prints requests per second, p50 and p99 latency, the
error count, the server's CPU per request (all its threads, and its event loops alone: one
process's requests/s is bound by its event loop's thread, onnxruntime runs beside it) and, from
``/metrics``, the mean batch size; each round also measures the in-process
limit: what one process does with the same PNGs and no HTTP (decode + preprocess, classify in
batches of 64 on the server's one onnxruntime thread), and the HTTP figure is printed as a share
of it (bar: at least 0.35; the load generator shares the cores, so the share is a lower bound).
Every mode runs ``--rounds`` times, interleaved, and the
medians over the rounds give the ratios and the verdict on the issue's targets (a p99 on a shared
2-core machine moves by tens of ms from one run to the next). The load generator is
lean (raw asyncio streams, a pre-built request, keep-alive) because it shares the CPU with the
server. ``--baseline-src DIR`` adds each server mode run from another source tree (a worktree of
an earlier commit), as ``MODE@baseline``, in the same interleaved rounds: a change's cost measured
under the same load as the change. Usage::

    PYTHONPATH=src python benchmarks/serve_load.py [--artifacts DIR] [--requests 5000]
    git worktree add /tmp/base main~1
    PYTHONPATH=src python benchmarks/serve_load.py --modes on,workers2 --baseline-src /tmp/base/src
"""

import argparse
import asyncio
import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODES = ("naive", "off", "on", "workers2")
BOUNDARY = "fmnistbench"


# --------------------------------------------------------------------------- servers


def naive_server(bundle: str, port: int) -> None:
    """The baseline: decode, one onnxruntime call, JSON; nothing else."""
    import uvicorn
    from fastapi import FastAPI, UploadFile

    from fmnist.runtime.bundle import Bundle
    from fmnist.runtime.images import load_image

    model = Bundle(bundle)
    app = FastAPI()

    @app.post("/v1/classify")
    async def classify(file: UploadFile):
        x = load_image(await file.read(), "auto")
        p = model.classify(x[None])[0]
        label = int(p.argmax())
        return {"results": [{"filename": file.filename, "label": label, "probability": float(p[label])}]}

    @app.get("/readyz")
    async def readyz():
        return {"status": "ready"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start_server(mode: str, bundle: str, port: int, src: Path = ROOT / "src", timeout: float = 60) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    if mode == "naive":
        cmd = [sys.executable, __file__, "--naive-server", "--artifacts", bundle, "--port", str(port)]
    else:
        flags = {"off": ["--no-batching"], "on": [], "workers2": ["--workers", "2"]}[mode]
        cmd = [
            sys.executable,
            "-m",
            "fmnist.cli",
            "serve",
            "--artifacts",
            bundle,
            "--port",
            str(port),
            "--log-level",
            "warning",
            *flags,
        ]
    return start_process(cmd, env, f"http://127.0.0.1:{port}/readyz", mode, timeout)


def start_process(cmd: list[str], env: dict, ready_url: str, name: str, timeout: float, **popen) -> subprocess.Popen:
    """``cmd`` in a session of its own, once ``ready_url`` answers 200 (stopped, whole group, if it
    does not within ``timeout`` seconds); ``popen``: more arguments of Popen (``stdout``, say)."""
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, **popen)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(ready_url, timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc)
            raise SystemExit(f"{name} server did not start")
        time.sleep(0.2)


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's whole process group (uvicorn workers, LitServe's inference
    processes), SIGKILL after 30 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything of the group still there


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User + system CPU of a process and its direct children (uvicorn workers), from /proc: all
    their threads, and their main threads alone (the event loops, which bound the requests/s: the
    batchers' onnxruntime threads run beside them)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = loops = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if stat.parent.name == str(pid) or fields[1] == str(pid):  # fields[1]: parent pid
                main = (stat.parent / "task" / stat.parent.name / "stat").read_text().rsplit(")", 1)[1].split()
            else:
                continue
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
        loops += (int(main[11]) + int(main[12])) / tick
    return total, loops


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- load


def sample_png() -> bytes:
    """A 28x28 grey 'garment' (a bright blob on black), fixed by its seed."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:28, :28]
    blob = np.exp(-(((yy - 14) / 9) ** 2 + ((xx - 14) / 6) ** 2)) * 220
    pixels = np.clip(blob + rng.normal(0, 10, (28, 28)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def request_pngs(count: int = 1000) -> tuple[list[bytes], str]:
    """The first ``count`` official test images as PNG files (from $FMNIST_DATA), else the one
    synthetic ``sample_png``; and which."""
    from PIL import Image

    root = os.environ.get("FMNIST_DATA")
    if not root or not (Path(root) / "FashionMNIST" / "raw").is_dir():
        return [sample_png()], "one synthetic 28x28 PNG (no $FMNIST_DATA)"
    from fmnist.runtime.evaluation import load_test_set

    pngs = []
    for x in load_test_set(Path(root))[0][:count]:
        buf = io.BytesIO()
        Image.fromarray((x * 255 + 0.5).astype(np.uint8)).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    return pngs, f"{len(pngs)} real test PNGs"


def classify_request(port: int, png: bytes | None = None, path: str = "/v1/classify") -> bytes:
    """One upload of ``png`` (default: ``sample_png()``) to ``path``."""
    body = (
        (
            f'--{BOUNDARY}\r\ncontent-disposition: form-data; name="file"; filename="x.png"\r\n'
            f"content-type: image/png\r\n\r\n"
        ).encode()
        + (png or sample_png())
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: multipart/form-data; boundary={BOUNDARY}\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def load(port: int, total: int, concurrency: int, requests: list[bytes]) -> tuple[float, np.ndarray, int]:
    """``total`` requests over ``concurrency`` keep-alive connections, taking ``requests`` (built
    by ``classify_request``) in turn: (seconds, latencies, errors)."""
    latencies: list[float] = []
    errors = 0
    issued = 0

    async def client() -> None:
        nonlocal errors, issued
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while issued < total:
                request = requests[issued % len(requests)]
                issued += 1
                t0 = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
                body = await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                if not head.startswith(b"HTTP/1.1 200") or b'"label"' not in body:
                    errors += 1
        except (OSError, asyncio.IncompleteReadError, AttributeError):
            errors += total - issued + 1  # the connection broke: count what it did not do
            issued = total
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return time.perf_counter() - start, np.array(latencies), errors


def measure(port: int, args, pngs: list[bytes], path: str = "/v1/classify", pid: int | None = None) -> dict:
    """Warm-up, then the measured load against the server on ``port``: req/s, p50, p99, errors,
    and the server's CPU per request when its ``pid`` is given."""
    requests = [classify_request(port, png, path) for png in pngs]
    runner = _loop_runner()
    runner(load(port, args.warmup, args.concurrency, requests))
    cpu0 = cpu_seconds(pid) if pid else (0.0, 0.0)
    seconds, lat, errors = runner(load(port, args.requests, args.concurrency, requests))
    cpu, loop_cpu = (a - b for a, b in zip(cpu_seconds(pid), cpu0, strict=True)) if pid else (0.0, 0.0)
    return {
        "requests": len(lat),
        "rps": len(lat) / seconds,
        "p50_ms": float(np.percentile(lat, 50) * 1000),
        "p99_ms": float(np.percentile(lat, 99) * 1000),
        "errors": errors,
        "server_cpu_ms": cpu / len(lat) * 1000,
        "loop_cpu_ms": loop_cpu / len(lat) * 1000,
    }


def metric_samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Prometheus text -> {(name, labels): value}; ``le`` as a float string, so "1" and "1.0" agree and
    the label order does not matter (hand-written and prometheus_client output both parse)."""
    out = {}
    for m in re.finditer(r"^(\w+)(?:\{(.*)\})? (\S+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if "le" in labels:
            labels["le"] = str(float(labels["le"]))
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(3))
    return out


def mean_batch(port: int) -> tuple[float, float] | None:
    """(mean images per classify call, share of calls with more than one image) from /metrics."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            samples = metric_samples(r.read().decode())
    except OSError:
        return None
    op = ("op", "classify")
    try:
        count = samples[("fmnist_batch_size_count", frozenset({op}))]
        total = samples[("fmnist_batch_size_sum", frozenset({op}))]
        ones = samples[("fmnist_batch_size_bucket", frozenset({op, ("le", "1.0")}))]
    except KeyError:
        return None
    return total / count, 1 - ones / count


def run_mode(mode: str, bundle: str, args, pngs: list[bytes]) -> dict:
    port = free_port()
    server, _, tree = mode.partition("@")
    proc = start_server(server, bundle, port, Path(args.baseline_src) if tree else ROOT / "src", args.start_timeout)
    try:
        result = measure(port, args, pngs, pid=proc.pid)
        batch = mean_batch(port) if server != "naive" else None
    finally:
        stop_server(proc)
    return {
        "mode": mode,
        **result,
        "mean_batch": batch[0] if batch else None,
        "batched_share": batch[1] if batch else None,
    }


def in_process_limit(bundle: str, pngs: list[bytes], total: int, max_batch: int = 64) -> dict:
    """What one process does with the same PNGs and no HTTP: decode + preprocess each (one
    thread, as the server decodes small images inline), classify in batches of the server's
    ``max_batch`` with its one onnxruntime thread; images/s over ``total`` images."""
    from fmnist.runtime.bundle import Bundle
    from fmnist.runtime.images import load_image
    from fmnist.serve.app import SERVER_THREADS

    model = Bundle(bundle, "cpu", threads=SERVER_THREADS)
    model.classify(load_image(pngs[0])[None])  # session made
    start = time.perf_counter()
    decoded = np.stack([load_image(pngs[i % len(pngs)]) for i in range(total)])
    decode_s = time.perf_counter() - start
    for i in range(0, total, max_batch):
        model.classify(decoded[i : i + max_batch])
    seconds = time.perf_counter() - start
    return {"rps": total / seconds, "decode_share": decode_s / seconds}


def _loop_runner():
    try:
        import uvloop

        return uvloop.run
    except ImportError:
        return asyncio.run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", help="bundle folder (default: fmnist.artifacts.resolve_bundle_dir(None))")
    parser.add_argument("--requests", type=int, default=5000, help="measured requests per mode")
    parser.add_argument("--warmup", type=int, default=500, help="unmeasured requests first")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent keep-alive clients")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {MODES}")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every mode; medians are reported")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--start-timeout", type=float, default=60, help="seconds a server may take to be ready")
    parser.add_argument(
        "--baseline-src",
        help="another source tree (its src/ folder): every server mode also runs from it, as MODE@baseline",
    )
    parser.add_argument("--naive-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if args.naive_server:
        return naive_server(args.artifacts, args.port)

    bundle, kind = find_bundle(args.artifacts)
    print(
        f"bundle: {bundle} ({kind}); {args.requests} requests after {args.warmup} warm-up, "
        f"{args.concurrency} clients, {os.cpu_count()} CPUs"
    )
    pngs, which = request_pngs()
    print(f"requests: {which}, in turn; the load generator shares the cores with the server")
    modes = args.modes.split(",")
    if args.baseline_src:
        modes += [f"{m}@baseline" for m in modes if m != "naive"]
        print(f"baseline: {args.baseline_src}")
    rounds: dict[str, list[dict]] = {mode: [] for mode in modes}
    limits = []
    for k in range(args.rounds):  # modes interleaved, so a drift in machine load touches them all
        for mode in rounds:
            r = run_mode(mode, bundle, args, pngs)
            rounds[mode].append(r)
            print(f"round {k + 1} {describe(r)}", flush=True)
        limits.append(in_process_limit(bundle, pngs, args.requests))
        print(f"round {k + 1} {'in-process limit':>18}: {limits[-1]['rps']:7.0f} images/s (no HTTP)", flush=True)
    results = {mode: summarise(runs) for mode, runs in rounds.items()}
    print(f"median of {args.rounds} rounds (min to max):")
    for r in results.values():
        print(f"  {describe(r)}  [req/s {r['rps_range']}, p99 {r['p99_range']} ms]")
    limit = float(np.median([x["rps"] for x in limits]))
    decode = float(np.median([x["decode_share"] for x in limits]))
    print(
        f"  {'in-process limit':>18}: {limit:7.0f} images/s: one process, no HTTP, decode + preprocess "
        f"({decode:.0%} of its time) + classify in batches of 64 on one onnxruntime thread"
    )
    rps = {m: r["rps"] for m, r in results.items()}
    if "on" in rps and "naive" in rps:
        print(f"batching on / naive: {rps['on'] / rps['naive']:.2f}x")
    if "on" in rps and "off" in rps:
        print(f"batching on / off:   {rps['on'] / rps['off']:.2f}x  (target >= 0.9)")
    if "workers2" in rps and "on" in rps:
        print(f"2 workers / 1:       {rps['workers2'] / rps['on']:.2f}x")
    for mode in rps:
        if mode.endswith("@baseline") and mode.split("@")[0] in rps:
            print(f"{mode.split('@')[0]} / {mode}: {rps[mode.split('@')[0]] / rps[mode]:.3f}x")
    if "on" in results:
        share = results["on"]["rps"] / limit
        verdict = "met" if share >= 0.35 else "NOT met"
        print(f"HTTP classify (on) / in-process limit: {share:.2f}  (bar >= 0.35: {verdict})")
        on = results["on"]
        ok = on["rps"] >= 1000 and on["p99_ms"] <= 100 and on["errors"] == 0
        print(f"target (on: >= 1000 req/s, p99 <= 100 ms, 0 errors): {'met' if ok else 'NOT met'}")
    if args.json:
        record = {"bundle": kind, "results": results, "in_process_limit": limit}
        Path(args.json).write_text(json.dumps(record, indent=2))


def describe(r: dict) -> str:
    batch = f"  mean batch {r['mean_batch']:.1f} ({r['batched_share']:.0%} of calls > 1)" if r["mean_batch"] else ""
    return (
        f"{r['mode']:>18}: {r['rps']:7.0f} req/s  p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  "
        f"errors {r['errors']}  server CPU {r['server_cpu_ms']:.2f} ms/req (event loop {r['loop_cpu_ms']:.2f}){batch}"
    )


def summarise(runs: list[dict]) -> dict:
    """Per-metric medians over the rounds (errors summed), with the rps and p99 ranges."""
    out = {"mode": runs[0]["mode"], "rounds": runs, "errors": sum(r["errors"] for r in runs)}
    for key in ("requests", "rps", "p50_ms", "p99_ms", "server_cpu_ms", "loop_cpu_ms", "mean_batch", "batched_share"):
        values = [r[key] for r in runs if r[key] is not None]
        out[key] = float(np.median(values)) if values else None
    out["rps_range"] = f"{min(r['rps'] for r in runs):.0f}-{max(r['rps'] for r in runs):.0f}"
    out["p99_range"] = f"{min(r['p99_ms'] for r in runs):.0f}-{max(r['p99_ms'] for r in runs):.0f}"
    return out


def find_bundle(arg: str | None) -> tuple[str, str]:
    """The bundle to serve: --artifacts, else the real one (resolve_bundle_dir) when it exists."""
    from fmnist.artifacts import MANIFEST, resolve_bundle_dir

    if arg:
        return arg, "given"
    real = resolve_bundle_dir(None)
    if (real / MANIFEST).is_file():
        return str(real), "real"
    raise SystemExit(f"no bundle at {real}: pass --artifacts DIR (a folder written by `fmnist export`)")


if __name__ == "__main__":
    main()

"""`fmnist serve` against LitServe serving the same bundle, and against bare uvicorn's ceiling.

Three servers on loopback, each driven by the keep-alive load generator of serve_load.py (64
clients, real test PNGs in turn) in interleaved rounds, medians reported:

- ``fmnist``: ``fmnist serve`` as shipped (dynamic batching on);
- ``litserve``: LitServe (from the package registry, in a virtual environment of its own under
  ``--cache``, made on first use: ``pip install litserve numpy onnxruntime pillow``, no torch)
  serving the same bundle through fmnist's runtime (``fmnist.runtime`` from this repository's
  src, on its path: the same decoding, preprocessing and onnxruntime session options) with
  LitServe's dynamic batching (max_batch_size 64, batch_timeout 1 ms, fmnist's defaults) and
  one inference worker on the CPU;
- ``ceiling``: a bare ASGI app under uvicorn that reads the request and answers a fixed JSON
  body: what HTTP alone costs on this machine.

Bar: fmnist at least 3x LitServe's req/s with a p99 at most half of LitServe's. The load
generator shares the cores with the servers (say so next to any figure). On a machine busy with
other jobs the comparison leans towards LitServe: its API server and inference worker are two
processes, which together get more of the scheduler's time than fmnist's one; only an idle
machine gives the ratio users see.

    nice -n 10 python benchmarks/peers.py [--rounds 3] [--requests 5000] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_load  # noqa: E402  (the load generator and server control, shared)

ROOT = Path(__file__).resolve().parents[1]
MODES = ("fmnist", "litserve", "ceiling")
PEER_PACKAGES = ("litserve", "python-multipart", "numpy", "onnxruntime", "pillow")  # multipart: its form parsing
MAX_BATCH, BATCH_TIMEOUT_S = 64, 0.001  # fmnist serve's --max-batch and --max-wait-ms


# --------------------------------------------------------------------------- the peers' servers


try:  # only in the LitServe environment; LitServe pickles its API into a spawned worker, so module level
    import litserve as ls
except ImportError:
    ls = None

if ls is not None:

    class Classify(ls.LitAPI):
        """The bundle through fmnist's runtime, batched by LitServe."""

        def __init__(self, bundle: str, threads: int, **options) -> None:
            super().__init__(**options)
            self.bundle, self.threads = bundle, threads

        def setup(self, device) -> None:
            from fmnist.runtime.bundle import Bundle

            self.model = Bundle(self.bundle, "cpu", threads=self.threads)

        def decode_request(self, request):
            from fmnist.runtime.images import load_image

            return load_image(request["file"].file.read(), "auto")

        def batch(self, inputs):
            return np.stack(inputs)

        def predict(self, x):
            return self.model.classify(x)

        def unbatch(self, output):
            return list(output)

        def encode_response(self, output):
            from fmnist.runtime.bundle import top_classes

            return top_classes(output[None], self.model.class_names)[0][0]


def litserve_server(bundle: str, port: int, threads: int) -> None:
    """Run in the LitServe virtual environment: the bundle behind LitServe's batching loop, with
    ``threads`` onnxruntime threads per call, as fmnist serve runs it."""
    options = {"max_batch_size": MAX_BATCH, "batch_timeout": BATCH_TIMEOUT_S, "api_path": "/v1/classify"}
    server = ls.LitServer(Classify(bundle, threads, **options), accelerator="cpu", workers_per_device=1)
    server.run(port=port, log_level="warning", generate_client_file=False, num_api_servers=1)


def ceiling_server(port: int) -> None:
    """A fixed answer, straight from ASGI: no framework, no parsing, no model."""
    import uvicorn

    body = json.dumps({"label": 0, "class": "T-shirt/top", "probability": 1.0}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:  # read the whole request, as a real server must
            more = (await receive()).get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --------------------------------------------------------------------------- set-up and control


def peer_python(cache: Path) -> Path:
    """The LitServe virtual environment's python, made (and filled from the registry) if missing."""
    folder = cache / "litserve-venv"
    python = folder / "bin" / "python"
    done, wanted = folder / ".complete", " ".join(PEER_PACKAGES)
    if not done.exists() or done.read_text() != wanted:
        print(f"making {folder}: pip install {wanted}", flush=True)
        if not python.exists():
            venv.create(folder, with_pip=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, *PEER_PACKAGES], check=True)
        done.write_text(wanted)
    return python


def versions(python: Path) -> str:
    code = (
        "import importlib.metadata as m; print(', '.join(f'{p} {m.version(p)}' for p in ('litserve', 'onnxruntime')))"
    )
    return subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def start(mode: str, bundle: str, port: int, python: Path, timeout: float):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    if mode == "fmnist":
        return serve_load.start_server("on", bundle, port, timeout=timeout)
    if mode == "litserve":
        from fmnist.serve.app import SERVER_THREADS  # the server's, not imported in the peer's environment

        threads = ["--threads", str(SERVER_THREADS)]
        cmd = [str(python), __file__, "--serve", "litserve", "--artifacts", bundle, "--port", str(port), *threads]
        return serve_load.start_process(cmd, env, f"http://127.0.0.1:{port}/health", mode, timeout)
    cmd = [sys.executable, __file__, "--serve", "ceiling", "--port", str(port)]
    return serve_load.start_process(cmd, env, f"http://127.0.0.1:{port}/readyz", mode, timeout)


def run_mode(mode: str, bundle: str, python: Path, args, pngs: list[bytes]) -> dict:
    port = serve_load.free_port()
    proc = start(mode, bundle, port, python, args.start_timeout)
    try:
        result = serve_load.measure(port, args, pngs)
        batch = serve_load.mean_batch(port) if mode == "fmnist" else None
    finally:
        serve_load.stop_server(proc)
    return {"mode": mode, **result, "mean_batch": batch[0] if batch else None, "batched_share": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", help="bundle folder (default: as the CLI resolves it)")
    parser.add_argument("--requests", type=int, default=5000, help="measured requests per server and round")
    parser.add_argument("--warmup", type=int, default=500, help="unmeasured requests first")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent keep-alive clients")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every server; medians are reported")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {MODES}")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "fmnist" / "peers"), help="for the venv")
    parser.add_argument("--start-timeout", type=float, default=120, help="seconds a server may take to be ready")
    parser.add_argument("--serve", choices=("litserve", "ceiling"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "litserve":
        return litserve_server(args.artifacts, args.port, args.threads)
    if args.serve == "ceiling":
        return ceiling_server(args.port)

    bundle, kind = serve_load.find_bundle(args.artifacts)
    modes = args.modes.split(",")
    python = peer_python(Path(args.cache)) if "litserve" in modes else Path(sys.executable)
    pngs, which = serve_load.request_pngs()
    print(
        f"bundle: {bundle} ({kind}); {args.requests} requests after {args.warmup} warm-up, "
        f"{args.concurrency} keep-alive clients, {which}; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} (the load generator shares them; a busy machine gives ratios, not speeds)"
    )
    if "litserve" in modes:
        print(f"peer: {versions(python)} (max_batch_size {MAX_BATCH}, batch_timeout {BATCH_TIMEOUT_S} s, 1 worker)")
    rounds: dict[str, list[dict]] = {mode: [] for mode in modes}
    for k in range(args.rounds):
        for mode in modes:
            r = run_mode(mode, bundle, python, args, pngs)
            rounds[mode].append(r)
            print(f"round {k + 1} {describe(r)}", flush=True)
    results = {mode: serve_load.summarise(runs) for mode, runs in rounds.items()}
    print(f"median of {args.rounds} rounds (min to max):")
    for r in results.values():
        print(f"  {describe(r)}  [req/s {r['rps_range']}, p99 {r['p99_range']} ms]")
    report_ratios(results)


def report_ratios(results: dict[str, dict]) -> None:
    if "fmnist" in results and "litserve" in results:
        f, lit = results["fmnist"], results["litserve"]
        speed, tail = f["rps"] / lit["rps"], f["p99_ms"] / lit["p99_ms"]
        verdict = "met" if speed >= 3 and tail <= 0.5 else "NOT met"
        print(f"fmnist / LitServe: req/s {speed:.2f}x, p99 {tail:.2f}x  (bar: >= 3x, <= 0.5x: {verdict})")
    if "ceiling" in results:
        for mode in ("fmnist", "litserve"):
            if mode in results:
                print(f"{mode} / bare-uvicorn ceiling: req/s {results[mode]['rps'] / results['ceiling']['rps']:.2f}")


def describe(r: dict) -> str:
    return (
        f"{r['mode']:>9}: {r['rps']:7.0f} req/s  p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  "
        f"errors {r['errors']}" + (f"  mean batch {r['mean_batch']:.1f}" if r["mean_batch"] else "")
    )


if __name__ == "__main__":
    main()

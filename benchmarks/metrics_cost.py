"""CPU cost of the server's metrics per request: ``Metrics.observe_request`` plus one
``observe_batch``, as the Observe middleware and a batcher call them for one classify request.

Each variant runs in its own process (prometheus_client picks its mode when imported) and is timed
in CPU seconds (``time.process_time``, best of ``--repeats``), so other load on the machine moves
the figures little:

- ``current``: this checkout's metrics, one process (``fmnist serve``);
- ``current-multiprocess``: the same with ``$PROMETHEUS_MULTIPROC_DIR`` set (``--workers N``);
- ``baseline``: the metrics module of ``--baseline-src`` (an earlier commit's ``src``), if given.

Usage::

    python benchmarks/metrics_cost.py [--baseline-src /tmp/base/src] [--calls 100000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import sys, time
from fmnist.serve.metrics import Metrics

calls, repeats = int(sys.argv[1]), int(sys.argv[2])
m = Metrics()
best = float("inf")
for _ in range(repeats):
    start = time.process_time()
    for i in range(calls):
        m.observe_request("/v1/classify", "POST", 200, 0.0012)
        m.observe_batch("classify", 8)
    best = min(best, time.process_time() - start)
start = time.process_time()
m.render()
render = time.process_time() - start
print(best / calls * 1e6, render * 1e3)
"""


def measure(src: Path, calls: int, repeats: int, multiprocess_dir: str | None = None) -> tuple[float, float]:
    """(microseconds per request, milliseconds per /metrics render) with ``src`` first on the path."""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")])
    if multiprocess_dir:
        env["PROMETHEUS_MULTIPROC_DIR"] = multiprocess_dir
    cmd = [sys.executable, "-c", PROBE, str(calls), str(repeats)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-src", type=Path, help="an earlier commit's src folder")
    parser.add_argument("--calls", type=int, default=100_000, help="requests recorded per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many")
    args = parser.parse_args()

    rows = {}
    if args.baseline_src:
        rows["baseline"] = measure(args.baseline_src, args.calls, args.repeats)
    rows["current"] = measure(ROOT / "src", args.calls, args.repeats)
    with tempfile.TemporaryDirectory(prefix="fmnist-metrics-") as folder:
        rows["current-multiprocess"] = measure(ROOT / "src", args.calls, args.repeats, folder)
    print(f"{args.calls} requests recorded, best of {args.repeats}, CPU time")
    for name, (us, render_ms) in rows.items():
        print(f"  {name:>21}: {us:6.2f} us per request; /metrics render {render_ms:.2f} ms")


if __name__ == "__main__":
    main()

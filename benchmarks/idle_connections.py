"""Idle partial connections against ``fmnist serve`` (slowloris): does everyone else still get answers?

One client opens ``--connections`` connections to a real ``fmnist serve`` on loopback and sends on
each only ``POST /v1/classify HTTP/1.1\\r\\nHost: x\\r\\n``, never the end of the headers. Meanwhile
another client asks for ``/healthz`` and classifies one image, on new connections, ``--probes``
times; the script prints their latencies, then waits for the server to close the idle connections
(its ``--header-timeout``, 10 s by default) and prints when the last one went. Usage::

    PYTHONPATH=src python benchmarks/idle_connections.py [--connections 5000] [--artifacts DIR]
"""

import argparse
import io
import os
import resource
import selectors
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTIAL = b"POST /v1/classify HTTP/1.1\r\nHost: x\r\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (28, 28), 200).save(buf, "PNG")
    return buf.getvalue()


def classify_request(port: int, image: bytes) -> bytes:
    body = b'--b\r\ncontent-disposition: form-data; name="file"; filename="a.png"\r\n\r\n' + image + b"\r\n--b--\r\n"
    head = (
        b"POST /v1/classify HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
        b"content-type: multipart/form-data; boundary=b\r\ncontent-length: %d\r\n\r\n" % len(body)
    )
    return head + body


def ask(port: int, request: bytes) -> tuple[float, bytes]:
    """Seconds from connecting to the whole answer, and its status line."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    reply = b"".join(chunks)
    return time.perf_counter() - t0, reply.split(b"\r\n", 1)[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=5000)
    p.add_argument("--probes", type=int, default=10)
    p.add_argument("--artifacts", help="bundle folder (default: the bundled one)")
    p.add_argument("--serve-args", default="", help="more `fmnist serve` flags, e.g. '--header-timeout 5'")
    args = p.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.connections + 100:
        sys.exit(f"this process may open {hard} files, too few for {args.connections} connections")
    port = free_port()
    cmd = [sys.executable, "-m", "fmnist", "serve", "--port", str(port), "--provider", "cpu", *args.serve_args.split()]
    if args.artifacts:
        cmd += ["--artifacts", args.artifacts]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit(server.communicate()[0].decode())
                time.sleep(0.2)
        image = png()
        health = b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        ask(port, classify_request(port, image))  # a first upload pays one-time imports
        print(f"fmnist serve {' '.join(cmd[4:])}; {args.connections} idle partial connections from one client")

        t0 = time.perf_counter()
        idle = []
        for _ in range(args.connections):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.sendall(PARTIAL)
            s.setblocking(False)
            idle.append(s)
        opened = time.perf_counter()
        print(f"opened {len(idle)} in {opened - t0:.2f} s")

        for name, request in (("healthz", health), ("classify", classify_request(port, image))):
            times, statuses = [], set()
            for _ in range(args.probes):
                seconds, status = ask(port, request)
                times.append(seconds)
                statuses.add(status.decode())
            times.sort()
            print(
                f"{name:8s} while held: median {times[len(times) // 2] * 1e3:.1f} ms, max {times[-1] * 1e3:.1f} ms, "
                f"statuses {sorted(statuses)}"
            )

        selector = selectors.DefaultSelector()
        for s in idle:
            selector.register(s, selectors.EVENT_READ)
        open_now, answers = len(idle), {}
        last = opened
        while open_now and time.perf_counter() - opened < 120:
            for key, _ in selector.select(timeout=1):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except ConnectionResetError:
                    data = b""
                if data:
                    status = data.split(b"\r\n", 1)[0].decode()
                    answers[status] = answers.get(status, 0) + 1
                    continue
                selector.unregister(s)
                s.close()
                open_now -= 1
                last = time.perf_counter()
        print(
            f"closed by the server: {len(idle) - open_now} of {len(idle)}, the last {last - opened:.1f} s "
            f"after the last was opened; answers {answers}"
        )
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()

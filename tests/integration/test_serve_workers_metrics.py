"""``fmnist serve --workers 2``: /metrics counts the requests of every worker, not of the one that
answers the scrape (prometheus_client's multiprocess mode), and the metrics folder goes at exit."""

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from serve_fakes import free_port, png

REQUESTS = 200
CLIENTS = 8


def classify_requests(families) -> float:
    """The 200s of POST /v1/classify in these metric families."""
    want = {"route": "/v1/classify", "method": "POST", "status": "200"}
    samples = (s for f in families for s in f.samples)
    return sum(s.value for s in samples if s.name == "fmnist_http_requests_total" and s.labels == want)


def per_worker(folder: Path) -> list[float]:
    """Each worker's classify requests, from its own counter file."""
    files = sorted(folder.glob("counter_*.db"))
    return [classify_requests(MultiProcessCollector.merge([str(f)], accumulate=False)) for f in files]


def wait_ready(proc: subprocess.Popen, url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()
        time.sleep(0.1)


@pytest.mark.slow
def test_metrics_count_every_workers_requests(toy_bundle, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TMPDIR": str(tmp)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fmnist.cli", "serve", "--artifacts", str(toy_bundle), "--port", str(port),
         "--workers", "2", "--provider", "cpu", "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url)
        (folder,) = tmp.glob("fmnist-metrics-*")
        image = png(120)

        def one(_: int) -> int:
            # A new connection per request, so the two workers share them.
            r = httpx.post(f"{url}/v1/classify", files=[("file", ("x.png", image))], headers={"connection": "close"})
            return r.status_code

        with ThreadPoolExecutor(CLIENTS) as pool:
            assert list(pool.map(one, range(REQUESTS))) == [200] * REQUESTS
        workers = per_worker(folder)
        assert len(workers) == 2 and sum(workers) == REQUESTS
        assert min(workers) > 0, f"one worker answered every request ({workers}): the test proves nothing"
        for _ in range(6):  # whichever worker answers the scrape
            text = httpx.get(f"{url}/metrics", headers={"connection": "close"}).text
            assert classify_requests(text_string_to_metric_families(text)) == REQUESTS
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log = proc.stdout.read().decode()
        assert "Traceback" not in log, log
        assert not folder.exists(), "the metrics folder outlived the server"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

"""``fmnist serve --workers 2``: /metrics counts the requests of every worker, not of the one that
answers the scrape (prometheus_client's multiprocess mode), and the metrics folder goes at exit."""

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from serve_fakes import png

from tests import servers

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


def both_workers_answer(url: str, folder: Path) -> bool:
    """A worker writes its counter file when it answers its first request: /readyz until both have,
    so the load below meets two ready workers however long the second takes to start."""
    httpx.get(f"{url}/readyz", headers={"connection": "close"}, timeout=None)
    return len(list(folder.glob("counter_*.db"))) == 2


@pytest.mark.slow
def test_metrics_count_every_workers_requests(toy_bundle, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    args = ["--workers", "2", "--log-level", "warning"]
    with servers.serve(toy_bundle, *args, env=env) as server:
        (folder,) = tmp.glob("fmnist-metrics-*")
        servers.wait_for(lambda: both_workers_answer(server.url, folder), 120, "both workers ready", server.proc)
        image = png(120)

        def one(_: int) -> int:
            # A new connection per request, so the two workers share them; no deadline: a loaded
            # machine answers late, not wrongly.
            r = httpx.post(
                f"{server.url}/v1/classify",
                files=[("file", ("x.png", image))],
                headers={"connection": "close"},
                timeout=None,
            )
            return r.status_code

        with ThreadPoolExecutor(CLIENTS) as pool:
            assert list(pool.map(one, range(REQUESTS))) == [200] * REQUESTS
        workers = per_worker(folder)
        assert len(workers) == 2 and sum(workers) == REQUESTS
        assert min(workers) > 0, f"one worker answered every request ({workers}): the test proves nothing"
        for _ in range(6):  # whichever worker answers the scrape
            text = httpx.get(f"{server.url}/metrics", headers={"connection": "close"}, timeout=None).text
            assert classify_requests(text_string_to_metric_families(text)) == REQUESTS
        log = servers.stop(server.proc)
        assert server.proc.returncode != -signal.SIGKILL, f"SIGTERM did not stop the server:\n{log}"
        assert "Traceback" not in log, log
        assert not folder.exists(), "the metrics folder outlived the server"

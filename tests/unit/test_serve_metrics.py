"""The server's metrics through prometheus_client: exact series for known observations, in one process
and summed over processes in the multiprocess mode."""

import os
import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families

from fmnist.serve.metrics import Metrics, multiprocess_dir


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted label items): value} of a text exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_requests_latency_and_batch_sizes_in_one_process():
    m = Metrics()
    assert not m.multiprocess
    for seconds in (0.0005, 0.002, 0.002):
        m.observe_request("/v1/classify", "POST", 200, seconds)
    m.observe_request("/v1/generate", "POST", 422, 0.003)
    m.observe_batch("classify", 5)
    m.observe_batch("classify", 1)
    text = m.render().decode()
    got = samples(text)
    route = ("route", "/v1/classify")
    assert got[("fmnist_http_requests_total", (("method", "POST"), route, ("status", "200")))] == 3
    assert got[("fmnist_http_requests_total", (("method", "POST"), ("route", "/v1/generate"), ("status", "422")))] == 1
    assert got[("fmnist_http_request_duration_seconds_bucket", (("le", "0.001"), route))] == 1
    assert got[("fmnist_http_request_duration_seconds_bucket", (("le", "0.0025"), route))] == 3  # le is inclusive
    assert got[("fmnist_http_request_duration_seconds_bucket", (("le", "+Inf"), route))] == 3
    assert got[("fmnist_http_request_duration_seconds_count", (route,))] == 3
    assert abs(got[("fmnist_http_request_duration_seconds_sum", (route,))] - 0.0045) < 1e-12
    op = ("op", "classify")
    assert got[("fmnist_batch_size_bucket", (("le", "1.0"), op))] == 1
    assert got[("fmnist_batch_size_bucket", (("le", "4.0"), op))] == 1
    assert got[("fmnist_batch_size_bucket", (("le", "8.0"), op))] == 2
    assert got[("fmnist_batch_size_sum", (op,))] == 6
    assert got[("fmnist_batch_size_count", (op,))] == 2
    # the families the README documents, and no *_created series
    assert "# TYPE fmnist_http_requests_total counter" in text
    assert "# TYPE fmnist_http_request_duration_seconds histogram" in text
    assert "# TYPE fmnist_batch_size histogram" in text
    assert "_created" not in text


def test_two_apps_in_one_process_keep_their_own_counts():
    a, b = Metrics(), Metrics()
    a.observe_request("/healthz", "GET", 200, 0.001)
    key = ("fmnist_http_requests_total", (("method", "GET"), ("route", "/healthz"), ("status", "200")))
    assert samples(a.render().decode())[key] == 1
    assert key not in samples(b.render().decode())


WORKER = """
import sys
from fmnist.serve.metrics import Metrics
m = Metrics()
assert m.multiprocess
for _ in range(int(sys.argv[1])):
    m.observe_request("/v1/classify", "POST", 200, 0.002)
m.observe_batch("classify", int(sys.argv[1]))
if sys.argv[2] == "render":
    sys.stdout.write(m.render().decode())
m.close()
"""


def test_multiprocess_mode_sums_every_process(tmp_path, monkeypatch):
    """What `fmnist serve --workers N` sets up: each process writes its own files, any one renders all."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with multiprocess_dir() as folder:
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == folder and os.path.isdir(folder)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        for n in (3, 4):
            subprocess.run([sys.executable, "-c", WORKER, str(n), "quiet"], env=env, check=True)
        out = subprocess.run(
            [sys.executable, "-c", WORKER, "5", "render"], env=env, check=True, capture_output=True, text=True
        ).stdout
    assert not os.path.exists(folder) and "PROMETHEUS_MULTIPROC_DIR" not in os.environ  # removed at exit
    got = samples(out)
    route = ("route", "/v1/classify")
    assert got[("fmnist_http_requests_total", (("method", "POST"), route, ("status", "200")))] == 12
    assert got[("fmnist_http_request_duration_seconds_count", (route,))] == 12
    assert got[("fmnist_batch_size_count", (("op", "classify"),))] == 3
    assert got[("fmnist_batch_size_sum", (("op", "classify"),))] == 12


def test_a_multiprocess_dir_given_by_the_caller_is_used_and_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with multiprocess_dir() as folder:
        assert folder == str(tmp_path)
    assert tmp_path.is_dir() and os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path)

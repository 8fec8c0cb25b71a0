"""Connections that would hold the server: deadlines for headers and body, the connection cap, the
open-file limit, and SIGTERM with requests in flight and bodies still arriving.

Raw sockets on loopback against a real uvicorn running ``fmnist serve``'s protocol and options
(``serve_fakes.ThreadServer``, or ``fmnist serve`` itself in a subprocess).
"""

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from serve_fakes import FakeModel, ThreadServer, free_port, png, start_serve, stop

from fmnist.errors import ConfigError
from fmnist.serve.app import create_app
from fmnist.serve.connections import MAX_HEADER_BYTES, RESERVED_FDS, fit_guard, raise_fd_limit
from fmnist.serve.settings import ConnectionSettings
from tests import servers

PARTIAL_HEADERS = b"POST /v1/classify HTTP/1.1\r\nHost: x\r\n"  # ... and never the blank line


def multipart_request(path: str, data: bytes, filename: str = "a.png", extra: bytes = b"") -> bytes:
    """A whole HTTP/1.1 request uploading ``data`` as the field ``file``."""
    body = (
        b'--b\r\ncontent-disposition: form-data; name="file"; filename="%s"\r\ncontent-type: image/png\r\n\r\n'
        % filename.encode()
        + data
        + b"\r\n--b--\r\n"
    )
    head = b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-type: multipart/form-data; boundary=b\r\n"
    return head % path.encode() + b"content-length: %d\r\n%s\r\n" % (len(body), extra) + body


def read_all(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (b"" for a plain close)."""
    sock.settimeout(timeout)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def status_and_json(reply: bytes) -> tuple[int, dict]:
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def requests_counted(metrics: str, route: str, status: int) -> float:
    """fmnist_http_requests_total of ``route`` and ``status`` in a /metrics text, whatever the label order."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("fmnist_http_requests_total{")
        and f'route="{route}"' in line
        and f'status="{status}"' in line
    )


@pytest.fixture(scope="module")
def guarded():
    limits = ConnectionSettings(header_timeout=0.6, body_timeout=0.8, max_connections=8)
    with ThreadServer(create_app(FakeModel()), limits) as s:
        yield s


def connect(server, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    if data:
        sock.sendall(data)
    return sock


def test_a_connection_that_sends_nothing_is_closed_after_the_header_deadline(guarded):
    with connect(guarded) as s:
        t0 = time.monotonic()
        assert read_all(s, 5) == b""
        assert 0.4 < time.monotonic() - t0 < servers.scaled(3)


def test_headers_not_finished_in_time_get_408(guarded):
    with connect(guarded, PARTIAL_HEADERS) as s:
        t0 = time.monotonic()
        status, body = status_and_json(read_all(s, 5))
        assert (status, body) == (408, {"error": "request headers not received within 0.6 s"})
        assert 0.4 < time.monotonic() - t0 < servers.scaled(3)


def test_a_body_not_finished_in_time_gets_408_and_its_handler_ends(guarded):
    head = multipart_request("/v1/classify", png(10))
    with connect(guarded, head[:-20]) as s:  # all but the last 20 bytes of the body
        status, body = status_and_json(read_all(s, 5))
        assert (status, body) == (408, {"error": "request body not received within 0.8 s"})
    # the handler saw a disconnect (499 in the metrics), never a 500
    metrics = httpx.get(f"{guarded.url}/metrics").text
    assert requests_counted(metrics, "/v1/classify", 499) >= 1, metrics
    assert requests_counted(metrics, "/v1/classify", 500) == 0, metrics


def test_headers_over_the_size_limit_get_431(guarded):
    with connect(guarded) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * (MAX_HEADER_BYTES + 10))
        status, body = status_and_json(read_all(s, 5))
        assert status == 431 and "headers over" in body["error"]


def test_a_slow_but_steady_upload_within_the_deadlines_is_answered(guarded):
    request = multipart_request("/v1/classify?invert=no", png(10), extra=b"connection: close\r\n")
    with connect(guarded, request[:100]) as s:
        time.sleep(0.3)
        s.sendall(request[100:])
        status, body = status_and_json(read_all(s, 5))
        assert status == 200 and body["results"][0]["filename"] == "a.png"


def test_past_the_cap_new_connections_get_503_until_idle_ones_expire(guarded):
    idle = [connect(guarded, PARTIAL_HEADERS) for _ in range(8)]
    try:
        time.sleep(0.1)
        with connect(guarded, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n") as s:
            reply = read_all(s, 5)
        status, body = status_and_json(reply)
        assert status == 503 and "too many open connections" in body["error"]
        assert b"retry-after: 1" in reply.lower()
        for sock in idle:  # the header deadline frees them
            assert read_all(sock, 5).startswith(b"HTTP/1.1 408")
        assert httpx.get(f"{guarded.url}/healthz").status_code == 200
    finally:
        for sock in idle:
            sock.close()


def test_the_cap_stays_below_the_open_file_limit(capsys):
    guard = fit_guard(ConnectionSettings(max_connections=10_000), 1024)
    assert guard.ceiling == 1024 - RESERVED_FDS
    assert guard.max_connections < guard.ceiling
    assert capsys.readouterr().err == (
        f"fmnist: notice: --max-connections 10000 is over what the open-file limit (1024) allows; "
        f"using {guard.max_connections}\n"
    )
    assert fit_guard(ConnectionSettings(max_connections=100), 1024).max_connections == 100
    assert capsys.readouterr().err == ""
    with pytest.raises(ConfigError, match="open-file limit"):
        fit_guard(ConnectionSettings(), 70)


# --------------------------------------------------------------------------- fmnist serve


IDLE = 500  # the README's figure, 5,000, comes from benchmarks/idle_connections.py


@pytest.mark.slow
def test_idle_partial_connections_do_not_stop_other_clients(toy_bundle):
    """One client holds IDLE connections that never finish their headers: another still gets
    /healthz and /v1/classify within a second, and the idle ones are closed after the deadline."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if raise_fd_limit() < IDLE + 100:
        pytest.skip(f"this process may open {hard} files, too few for {IDLE} connections")
    header_timeout = 3.0
    proc, url = start_serve(toy_bundle, "--header-timeout", str(header_timeout), fd_limits=(256, None))
    idle = []
    try:
        # the server raised its soft limit to the hard one
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        soft, hard_seen = re.search(r"Max open files\s+(\d+)\s+(\d+)", limits).groups()
        assert soft == hard_seen, limits
        port = int(url.rsplit(":", 1)[1])
        with httpx.Client(base_url=url, timeout=10) as c:  # a first upload pays one-time imports (PIL plugins)
            assert c.post("/v1/classify", files=[("file", ("a.png", png(200)))]).status_code == 200
        for _ in range(IDLE):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(PARTIAL_HEADERS)
            idle.append(sock)
        opened = time.monotonic()
        with httpx.Client(base_url=url, timeout=5) as c:
            for _ in range(3):
                t0 = time.monotonic()
                assert c.get("/healthz").status_code == 200
                r = c.post("/v1/classify", files=[("file", ("a.png", png(200)))], params={"invert": "no"})
                assert r.status_code == 200 and r.json()["results"][0]["filename"] == "a.png"
                assert time.monotonic() - t0 < servers.scaled(1)
        for sock in idle:
            assert read_all(sock, header_timeout + 10).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - opened < header_timeout + 10
    finally:
        for sock in idle:
            sock.close()
        log = stop(proc)
    assert "Traceback" not in log, log


@pytest.mark.slow
def test_serve_lowers_the_cap_below_a_low_open_file_limit(toy_bundle):
    proc, url = start_serve(toy_bundle, "--max-connections", "5000", fd_limits=(512, 512))
    try:
        with httpx.Client(base_url=url) as c:
            assert c.get("/healthz").status_code == 200
    finally:
        log = stop(proc)
    assert "fmnist: notice: --max-connections 5000 is over what the open-file limit (512) allows" in log, log


# --------------------------------------------------------------------------- SIGTERM


def test_sigterm_finishes_requests_in_flight_and_closes_slow_bodies_after_the_drain():
    """In flight: answered. Still sending a body after the drain: 503 and closed, no traceback
    (before, uvicorn waited 30 s and then cancelled them with CancelledError tracebacks)."""
    drain = 1.5
    port = free_port()
    here = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here), *sys.path])}
    proc = subprocess.Popen(
        [sys.executable, str(here / "serve_fakes.py"), str(port), "1.0", str(drain)],  # classify sleeps 1 s
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    slow, in_flight = [], None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()
            time.sleep(0.1)
        # Each request waits for its handler's "100 Continue" before sending its body: it is then
        # accepted and in the app, not in the listen queue (which SIGTERM closes with resets).
        request = multipart_request(
            "/v1/classify?invert=no", png(70), filename="in-flight.png", extra=b"expect: 100-continue\r\n"
        )
        head, _, body = request.partition(b"\r\n\r\n")

        def started(sock: socket.socket, body_part: bytes) -> socket.socket:
            sock.sendall(head + b"\r\n\r\n")
            assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(body_part)
            return sock

        in_flight = started(socket.create_connection(("127.0.0.1", port), timeout=10), body)
        for _ in range(5):  # half a body, then nothing
            slow.append(started(socket.create_connection(("127.0.0.1", port), timeout=10), body[:-100]))
        time.sleep(0.2)  # the in-flight request is in the model (which takes 1 s)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        status, body = status_and_json(read_all(in_flight, 10))
        assert status == 200 and body["results"][0]["filename"] == "in-flight.png"
        for sock in slow:
            status, body = status_and_json(read_all(sock, drain + 5))
            assert (status, body) == (503, {"error": "server shutting down"})
        # uvicorn re-raises the signal once shut down, so the exit status says "ended by SIGTERM"
        assert proc.wait(drain + 5) == -signal.SIGTERM
        assert time.monotonic() - t0 < drain + servers.scaled(2)
    finally:
        for sock in [*slow, *([in_flight] if in_flight else [])]:
            sock.close()
        if proc.poll() is None:
            proc.kill()
    log = proc.stdout.read().decode()
    assert "Application shutdown complete." in log, log
    for word in ("Traceback", "CancelledError", "Exception in ASGI application", "ERROR"):
        assert word not in log, log


class BrokenModel(FakeModel):
    broken = False  # set once the server is up (its start-up warm-up classifies)

    def classify(self, images):
        if self.broken:
            raise RuntimeError("a bug in the model")
        return super().classify(images)


def test_a_bug_in_a_handler_answers_500_with_one_error_line():
    """Not Starlette's plain-text "Internal Server Error": the same {"error": ...} as every other answer."""
    from fmnist.serve.settings import Settings

    model = BrokenModel()
    with ThreadServer(create_app(model, Settings(batching=False))) as s:
        model.broken = True
        port = int(s.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(multipart_request("/v1/classify", png(70)))
            status, body = status_and_json(read_all(sock, 10))
    assert status == 500
    assert body == {"error": "internal error (RuntimeError): the server's log has the traceback"}

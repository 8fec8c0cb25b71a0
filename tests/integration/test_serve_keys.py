"""API keys (``--api-key-file``, ``$FMNIST_API_KEYS``), request ids and ``--log-format json``."""

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from serve_fakes import FakeModel, ThreadServer, png, start_serve, stop

from fmnist.serve.app import create_app
from fmnist.serve.keys import ENV_VAR, open_notice
from fmnist.serve.settings import Settings

UPLOAD = [("file", ("a.png", png(100), "image/png"))]


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    path.write_text("first-key\n\n  second-key  \n")
    return path


@pytest.fixture(scope="module")
def server(key_file):
    with ThreadServer(create_app(FakeModel(), Settings(api_key_file=str(key_file)))) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"X-API-Key": "first-ke"},
                                     {"Authorization": "Basic first-key"}])  # fmt: skip
def test_a_request_without_a_valid_key_is_401(client, headers):
    r = client.post("/v1/classify", files=UPLOAD, headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert set(r.json()) == {"error"} and "API key" in r.json()["error"]
    assert len(r.headers["x-request-id"]) == 32


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Bearer first-key"}, {"authorization": "bearer second-key"}, {"X-API-Key": "first-key"}],
)
def test_either_header_with_any_key_is_served(client, headers):
    r = client.post("/v1/classify", files=UPLOAD, headers=headers)
    assert r.status_code == 200 and r.json()["results"][0]["filename"] == "a.png"


def test_probes_are_open_while_metrics_docs_and_the_rest_need_a_key(client):
    for path in ("/healthz", "/readyz"):
        assert client.get(path).status_code == 200, path
    for path in ("/metrics", "/docs", "/redoc", "/openapi.json", "/v1/model", "/nowhere"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"X-API-Key": "second-key"}).status_code in (200, 404), path


def test_public_docs_metrics_opens_them_only(key_file):
    settings = Settings(api_key_file=str(key_file), public_docs_metrics=True)
    with ThreadServer(create_app(FakeModel(), settings)) as s, httpx.Client(base_url=s.url) as c:
        for path in ("/metrics", "/docs", "/redoc", "/openapi.json"):
            assert c.get(path).status_code == 200, path
        assets = [a for a in c.get("/docs").text.split('"') if a.startswith("/static-offline-docs/")]
        assert assets and all(c.get(a).status_code == 200 for a in assets)
        assert c.get("/v1/model").status_code == 401
        assert c.post("/v1/generate", json={"n": 1}).status_code == 401


def test_keys_from_the_environment(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "env-one, env-two")
    with ThreadServer(create_app(FakeModel(), Settings())) as s, httpx.Client(base_url=s.url) as c:
        assert c.get("/v1/model").status_code == 401
        assert c.get("/v1/model", headers={"Authorization": "Bearer env-two"}).status_code == 200


def test_without_keys_every_route_is_open_and_a_request_id_is_returned():
    with ThreadServer(create_app(FakeModel(), Settings())) as s, httpx.Client(base_url=s.url) as c:
        assert c.get("/v1/model").status_code == 200
        r = c.get("/metrics", headers={"x-request-id": "abc-123"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "abc-123"
        r = c.get("/healthz", headers={"x-request-id": "with space"})  # not usable in a log: replaced
        assert r.headers["x-request-id"] != "with space" and len(r.headers["x-request-id"]) == 32


def test_open_notice_only_beyond_loopback_without_keys(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert open_notice("127.0.0.1", "") is None and open_notice("::1", "") is None
    assert open_notice("localhost", "") is None
    assert "--api-key-file" in open_notice("0.0.0.0", "")
    assert open_notice("0.0.0.0", "keys.txt") is None
    monkeypatch.setenv(ENV_VAR, "k")
    assert open_notice("0.0.0.0", "") is None


@pytest.mark.parametrize("content", [None, "", "\n  \n"])
def test_an_unusable_key_file_stops_the_start_in_one_line(tmp_path, content):
    path = tmp_path / "keys.txt"
    if content is not None:
        path.write_text(content)
    r = subprocess.run(
        [sys.executable, "-m", "fmnist", "serve", "--api-key-file", str(path)], capture_output=True, text=True
    )
    assert r.returncode == 2
    assert r.stderr.startswith(f"fmnist: error: --api-key-file {path}") and r.stderr.count("\n") == 1, r.stderr


def _special_key_file(tmp_path, kind: str):
    path = tmp_path / "keys.txt"
    if kind == "pipe":
        os.mkfifo(path)  # an open() without O_NONBLOCK would wait for a writer for ever
    elif kind == "zero":
        path.symlink_to("/dev/zero")  # a plain read() would fill memory
    elif kind == "folder":
        path.mkdir()
    else:
        path.write_text("k" * ((1 << 20) + 1))
    return path


@pytest.mark.parametrize("kind", ["pipe", "zero", "folder", "huge"])
def test_a_key_file_that_is_no_regular_small_file_stops_the_start_in_one_line(tmp_path, kind):
    path = _special_key_file(tmp_path, kind)
    r = subprocess.run(
        [sys.executable, "-m", "fmnist", "serve", "--api-key-file", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"fmnist: error: --api-key-file {path}") and r.stderr.count("\n") == 1, r.stderr


def test_an_environment_variable_set_without_a_key_stops_the_start():
    env = {**os.environ, ENV_VAR: " , "}
    r = subprocess.run([sys.executable, "-m", "fmnist", "serve"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2
    assert r.stderr == f"fmnist: error: ${ENV_VAR} holds no key: set it to comma-separated keys, or unset it\n"


def test_json_logs_request_ids_and_a_key_file_reread_on_sighup(toy_bundle, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("old-secret-key\n")
    proc, url = start_serve(toy_bundle, "--api-key-file", str(keys), "--log-format", "json")
    try:
        old = {"Authorization": "Bearer old-secret-key"}
        r = httpx.get(f"{url}/v1/model", headers={**old, "x-request-id": "req-42"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "req-42"
        bundle = r.json()["bundle_id"]
        assert httpx.get(f"{url}/v1/model", headers={"X-API-Key": "wrong-secret-key"}).status_code == 401
        keys.write_text("new-secret-key\n")
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/v1/model", headers=old).status_code != 401:
            assert time.monotonic() < deadline, "the key file was not re-read"
        assert httpx.get(f"{url}/v1/model", headers={"X-API-Key": "new-secret-key"}).status_code == 200
    finally:
        log = stop(proc)
    lines = log.splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    others = [line for line in lines if not line.startswith("{")]
    assert not others, others  # every line JSON
    request = next(r for r in records if r.get("request_id") == "req-42")
    assert request["route"] == "/v1/model" and request["status"] == 200 and request["bundle"] == bundle
    assert request["method"] == "GET" and request["latency_ms"] >= 0 and request["client"].startswith("127.0.0.1:")
    assert {"time", "level", "message"} <= set(request)
    assert any(r.get("status") == 401 for r in records)
    assert any("bundle" in r["message"] and "unchanged" in r["message"] for r in records), records
    assert "secret-key" not in log

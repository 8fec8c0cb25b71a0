"""The HTTP API under a real uvicorn on loopback, talked to with httpx and raw sockets.

The model is ``serve_fakes.FakeModel``: its answers are functions of each image's own pixels, so
every caller can check it got its own answer.
"""

import asyncio
import base64
import dataclasses
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from serve_fakes import (
    FakeModel,
    ThreadServer,
    expected_probabilities,
    free_port,
    png,
)

from fmnist import CLASS_NAMES
from fmnist.runtime import images
from fmnist.runtime.sampling import SAMPLERS
from fmnist.serve.app import create_app
from fmnist.serve.served import bundle_id
from fmnist.serve.settings import ConnectionSettings, ServerSettings, Settings

LIMIT = 64 * 1024  # body limit of the test server
SETTINGS = Settings(max_body_bytes=LIMIT, max_files=8, max_generate=64, max_batch=16, max_wait_ms=2)


@pytest.fixture(scope="module")
def fake():
    return FakeModel(delay=0.002)


@pytest.fixture(scope="module")
def server(fake):
    with ThreadServer(create_app(fake, SETTINGS)) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def upload(*values: int, names=None) -> list:
    names = names or [f"img{i}.png" for i in range(len(values))]
    return [("file", (n, png(v), "image/png")) for n, v in zip(names, values, strict=True)]


def check_classify(result: dict, filename: str, value: int) -> None:
    """A classify result is the fake model's answer for a grey image of this value."""
    p = expected_probabilities(value / 255)
    label = int(p.argmax())
    assert result["filename"] == filename
    assert result["label"] == label and result["class"] == CLASS_NAMES[label]
    assert result["probability"] == pytest.approx(p[label], abs=1e-6)
    assert result["probabilities"] == pytest.approx(p.tolist(), abs=1e-6)
    assert result["no_garment"] is True  # one grey level: nothing stands out


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of sample ``name`` with exactly these labels in a Prometheus text exposition."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


def counter(client: httpx.Client, route: str, method: str, status: int) -> float:
    text = client.get("/metrics").text
    return metric(text, "fmnist_http_requests_total", route=route, method=method, status=str(status)) or 0.0


# --------------------------------------------------------------------------- routes


def wait_ready(proc: subprocess.Popen, url: str, timeout: float) -> None:
    """Poll /readyz until the server process answers 200; fail with its output if it dies or stalls."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()
        time.sleep(0.1)


def test_health_ready_and_model(client, fake):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "provider": "fake"}
    r = client.get("/v1/model")
    manifest = r.json()
    want = {k: v for k, v in fake.manifest.items() if k != "files"}
    assert manifest == want | {"bundle_id": bundle_id(fake.manifest)}
    assert "files" not in manifest
    assert r.headers["x-fmnist-bundle"] == f"{manifest['bundle_id']}; created=unknown"


def test_the_bundle_in_service_is_on_app_state(server, fake):
    state = server.server.config.app.state
    assert state.served.model is fake and state.model is fake
    assert state.batchers is state.served.batchers and set(state.batchers) == {"classify", "encode", "reconstruct"}
    assert state.ready and state.served.bundle_id == bundle_id(fake.manifest)


def test_openapi_documents_the_api(client):
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/v1/classify",
        "/v1/encode",
        "/v1/reconstruct",
        "/v1/generate",
        "/healthz",
        "/readyz",
        "/v1/model",
        "/metrics",
    ):
        assert path in paths
    form = paths["/v1/classify"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["file"]["items"]["format"] == "binary"
    result = schema["components"]["schemas"]["ClassifyResult"]["properties"]
    assert set(result) == {"filename", "label", "class", "probability", "probabilities", "no_garment"}
    assert "no garment" in result["no_garment"]["description"]
    gen = schema["components"]["schemas"]["GenerateRequest"]["properties"]
    assert gen["sampler"]["enum"] == list(SAMPLERS) and gen["n"]["maximum"] == 64
    assert (gen["scale"]["default"], gen["scale"]["minimum"], gen["scale"]["maximum"]) == (4, 1, 16)
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_classify_one_image(client):
    r = client.post("/v1/classify", files=upload(100, names=["shirt.png"]), params={"invert": "no"})
    assert r.status_code == 200
    (result,) = r.json()["results"]
    check_classify(result, "shirt.png", 100)


def test_classify_several_in_upload_order_with_invert_as_query_or_form(client):
    values = [250, 10, 130, 77, 200]
    files = upload(*values)
    r = client.post("/v1/classify", files=files, data={"invert": "no"})
    for i, (result, v) in enumerate(zip(r.json()["results"], values, strict=True)):
        check_classify(result, f"img{i}.png", v)
    # invert=yes: the model sees 255 - v; the form field wins over the query parameter
    r = client.post("/v1/classify", files=upload(40), params={"invert": "yes"})
    check_classify(r.json()["results"][0], "img0.png", 255 - 40)
    r = client.post("/v1/classify", files=upload(40), params={"invert": "yes"}, data={"invert": "no"})
    check_classify(r.json()["results"][0], "img0.png", 40)


def test_encode(client):
    r = client.post("/v1/encode", files=upload(51, 204), params={"invert": "no"})
    body = r.json()
    assert body["latent_dim"] == 2
    assert [x["filename"] for x in body["results"]] == ["img0.png", "img1.png"]
    assert body["results"][0]["latent"] == pytest.approx([51 / 255, 0.0], abs=1e-6)
    assert body["results"][1]["latent"] == pytest.approx([204 / 255, 0.0], abs=1e-6)


def test_reconstruct_in_each_format(client):
    values = [60, 180]
    expected = np.stack([np.full((28, 28), v / 255 * 0.5, np.float32) for v in values])
    r = client.post("/v1/reconstruct", files=upload(*values), params={"invert": "no", "format": "list"})
    results = r.json()["results"]
    assert [x["filename"] for x in results] == ["img0.png", "img1.png"]
    np.testing.assert_allclose(np.array([x["image"] for x in results]), expected, atol=1e-6)

    r = client.post("/v1/reconstruct", files=upload(*values), params={"invert": "no", "format": "png_base64"})
    for item, want in zip(r.json()["results"], expected, strict=True):
        with Image.open(io.BytesIO(base64.b64decode(item["png"]))) as im:
            np.testing.assert_array_equal(np.asarray(im), images.to_uint8(want))

    r = client.post(
        "/v1/reconstruct",
        files=upload(*values),
        params={"invert": "no"},
        headers={"accept": "image/png"},
    )
    assert r.headers["content-type"] == "image/png"
    assert r.content == images.to_png(expected)


@pytest.mark.parametrize("scale", [1, 2, 16])
def test_generate_png_scale(client, scale):
    r = client.post("/v1/generate", json={"n": 4, "seed": 2, "format": "png", "scale": scale})
    assert r.status_code == 200 and r.content == images.to_png(FakeModel().generate(4, seed=2), scale=scale)
    with Image.open(io.BytesIO(r.content)) as im:
        assert im.size == (62 * scale, 62 * scale)  # 2x2 images of 28 px, 2 px padding


@pytest.mark.parametrize("scale", [0, 17, 2.5, "4", True])
def test_generate_refuses_a_scale_outside_1_to_16(client, scale):
    r = client.post("/v1/generate", json={"n": 1, "scale": scale})
    assert r.status_code == 422 and "scale" in r.json()["error"]


def test_classify_says_which_images_hold_a_garment(client):
    garment = np.zeros((28, 28), np.uint8)
    garment[6:22, 9:19] = 200
    buf = io.BytesIO()
    Image.fromarray(garment).save(buf, "PNG")
    files = [("file", ("flat.png", png(230), "image/png")), ("file", ("g.png", buf.getvalue(), "image/png"))]
    results = client.post("/v1/classify", files=files).json()["results"]
    assert [r["no_garment"] for r in results] == [True, False]


def test_generate_in_each_format(client):
    r = client.post("/v1/generate", json={"n": 3, "sampler": SAMPLERS[0], "seed": 8})
    got = np.array([x["image"] for x in r.json()["results"]])  # default without Accept: list
    assert got.shape == (3, 28, 28)
    assert got[:, 0, 0].tolist() == pytest.approx([0.8, 0.9, 0.0])

    r = client.post("/v1/generate", json={"n": 3, "seed": 8}, headers={"accept": "image/png"})
    assert r.headers["content-type"] == "image/png"
    assert r.content == images.to_png(FakeModel().generate(3, seed=8), scale=4)  # the CLI's default scale

    r = client.post("/v1/generate", json={"n": 2, "seed": 1, "format": "png_base64"})
    pngs = [base64.b64decode(x["png"]) for x in r.json()["results"]]
    with Image.open(io.BytesIO(pngs[1])) as im:
        assert im.size == (28, 28) and (np.asarray(im) == round(0.2 * 255)).all()


def test_metrics_count_requests_by_route_and_status(client):
    ok = counter(client, "/v1/classify", "POST", 200)
    bad = counter(client, "/v1/generate", "POST", 422)
    for _ in range(3):
        client.post("/v1/classify", files=upload(90), params={"invert": "no"})
    client.post("/v1/generate", json={"n": 0})
    assert counter(client, "/v1/classify", "POST", 200) == ok + 3
    assert counter(client, "/v1/generate", "POST", 422) == bad + 1
    text = client.get("/metrics").text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain; version=0.0.4")
    assert metric(text, "fmnist_http_request_duration_seconds_count", route="/v1/classify") >= 3


# --------------------------------------------------------------------------- bad input


def _truncated_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (28, 28), np.uint8)).save(buf, "PNG")
    return buf.getvalue()[:120]


BAD_REQUESTS = [
    # (name, request kwargs, status, words in the error)
    (
        "not an image",
        dict(url="/v1/classify", files=[("file", ("x.png", b"hello", "image/png"))]),
        400,
        "x.png",
    ),
    (
        "truncated image",
        dict(url="/v1/classify", files=[("file", ("t.png", _truncated_png()))]),
        400,
        "t.png",
    ),
    ("no file field", dict(url="/v1/classify", files=[("other", ("a.png", png(1)))]), 400, "file"),
    (
        "text in file field",
        dict(url="/v1/encode", data={"file": "abc"}, files=[("x", ("a.png", png(1)))]),
        400,
        "file upload",
    ),
    ("too many files", dict(url="/v1/classify", files=upload(*range(9))), 400, "files"),
    (
        "bad invert form",
        dict(url="/v1/classify", files=upload(1), data={"invert": "maybe"}),
        400,
        "invert",
    ),
    ("bad invert query", dict(url="/v1/classify?invert=maybe", files=upload(1)), 400, "invert"),
    (
        "bad invert query, good form",  # both are checked; the form's would win
        dict(url="/v1/classify?invert=maybe", files=upload(1), data={"invert": "no"}),
        400,
        "invert (query)",
    ),
    ("empty invert form", dict(url="/v1/classify", files=upload(1), data={"invert": ""}), 400, "invert (form)"),
    ("bad format", dict(url="/v1/reconstruct?format=gif", files=upload(1)), 422, "format"),
    ("json to classify", dict(url="/v1/classify", json={"file": "x"}), 415, "multipart"),
    ("no content type", dict(url="/v1/reconstruct", content=b"xx"), 415, "multipart"),
    (
        "malformed json",
        dict(url="/v1/generate", content=b'{"n": 3,', headers={"content-type": "application/json"}),
        422,
        "malformed JSON",
    ),
    ("form to generate", dict(url="/v1/generate", data={"n": "3"}), 415, "application/json"),
    ("n zero", dict(url="/v1/generate", json={"n": 0}), 422, "body.n"),
    ("n over limit", dict(url="/v1/generate", json={"n": 65}), 422, "64"),
    ("n not int", dict(url="/v1/generate", json={"n": "many"}), 422, "body.n"),
    # strict types, as the schema's "integer" says: no conversion of booleans, strings or floats
    ("n a bool", dict(url="/v1/generate", json={"n": True}), 422, "body.n"),
    ("seed a bool", dict(url="/v1/generate", json={"n": 16, "seed": False}), 422, "body.seed"),
    ("n a numeric string", dict(url="/v1/generate", json={"n": "16"}), 422, "body.n"),
    (
        "n a float",
        dict(url="/v1/generate", content=b'{"n": 1e3}', headers={"content-type": "application/json"}),
        422,
        "body.n",
    ),
    ("unknown sampler", dict(url="/v1/generate", json={"sampler": "gan"}), 422, "body.sampler"),
    ("unknown key", dict(url="/v1/generate", json={"n": 1, "temperature": 2}), 422, "temperature"),
    ("json not an object", dict(url="/v1/generate", json=[1, 2]), 422, "body"),
]


@pytest.mark.parametrize("name,kwargs,status,words", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_input_is_a_4xx_with_a_json_error(client, name, kwargs, status, words):
    r = client.post(**kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["error"] and words in body["error"]
    assert client.get("/healthz").status_code == 200


def test_upload_schema_says_what_the_handler_accepts(client):
    for path in ("/v1/classify", "/v1/encode", "/v1/reconstruct"):
        op = client.get("/openapi.json").json()["paths"][path]["post"]
        file = op["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]["file"]
        assert (file["minItems"], file["maxItems"]) == (1, SETTINGS.max_files)
        (query,) = [p for p in op["parameters"] if p["name"] == "invert"]
        assert "form field" in query["description"] and "precedence" in query["description"]


def test_uploads_as_rfc_7578_allows(client):
    """A capitalised media type and an RFC 5987 file name (filename*=) are accepted."""
    data = png(60)
    disposition = "form-data; name=\"file\"; filename*=UTF-8''%E2%82%AC%20shirt.png"
    content = b"--B\r\nContent-Disposition: " + disposition.encode() + b"\r\n\r\n" + data + b"\r\n--B--\r\n"
    r = client.post(
        "/v1/classify?invert=no", content=content, headers={"content-type": "Multipart/Form-Data; Boundary=B"}
    )
    assert r.status_code == 200, r.text
    check_classify(r.json()["results"][0], "\u20ac shirt.png", 60)


def test_unknown_route_and_method_answer_json(client):
    r = client.get("/v2/nothing")
    assert (r.status_code, r.json()) == (404, {"error": "Not Found"})
    r = client.get("/v1/classify")
    assert (r.status_code, r.json()) == (405, {"error": "Method Not Allowed"})


def _raw(server, data: bytes, timeout: float = 5) -> bytes:
    """Send bytes on a fresh connection; read until the server closes it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_body_over_the_limit_by_content_length_is_refused_before_reading(server, client):
    before = counter(client, "(unmatched)", "POST", 413) + counter(client, "/v1/classify", "POST", 413)
    # Announce 10 MB but send only 100 bytes: the answer must come without waiting for the rest.
    head = (
        b"POST /v1/classify HTTP/1.1\r\nhost: x\r\ncontent-type: multipart/form-data; boundary=b\r\n"
        b"content-length: 10000000\r\n\r\n"
    )
    t0 = time.monotonic()
    reply = _raw(server, head + b"x" * 100)
    assert time.monotonic() - t0 < 3
    status, _, body = reply.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 413")
    assert b"connection: close" in status.lower()
    assert json.loads(body) == {"error": f"request body of 10000000 bytes is over the limit of {LIMIT} bytes"}
    after = counter(client, "(unmatched)", "POST", 413) + counter(client, "/v1/classify", "POST", 413)
    assert after == before + 1


def test_streamed_body_over_the_limit_is_refused(server, client):
    # Chunked upload, no Content-Length: the server counts the bytes as they arrive.
    boundary = b"bnd"
    part = (
        b'--bnd\r\ncontent-disposition: form-data; name="file"; filename="big.png"\r\n\r\n'
        + b"\0" * (LIMIT + 10_000)
        + b"\r\n--bnd--\r\n"
    )
    chunks = (
        b"".join(b"%x\r\n%s\r\n" % (len(part[i : i + 8192]), part[i : i + 8192]) for i in range(0, len(part), 8192))
        + b"0\r\n\r\n"
    )
    head = (
        b"POST /v1/classify HTTP/1.1\r\nhost: x\r\ncontent-type: multipart/form-data; boundary="
        + boundary
        + b"\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    status, _, body = _raw(server, head + chunks).partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 413")
    assert json.loads(body) == {"error": f"request body is over the limit of {LIMIT} bytes"}
    # a body just under the limit is fine
    r = client.post("/v1/classify", files=upload(5), params={"invert": "no"})
    assert r.status_code == 200


# --------------------------------------------------------------------------- concurrency


def test_concurrent_callers_get_their_own_answers_and_batches_form(server, client, fake):
    """64 concurrent clients, each with its own images: nothing mixed up, batches above 1."""
    fake.calls.clear()

    async def one(ac: httpx.AsyncClient, i: int):
        values = [(i * 4 + k) % 256 for k in range(1 + i % 3)]  # 1..3 images per request
        r = await ac.post(
            "/v1/classify",
            files=upload(*values, names=[f"c{i}-{k}.png" for k in range(len(values))]),
            params={"invert": "no"},
        )
        assert r.status_code == 200
        for k, (result, v) in enumerate(zip(r.json()["results"], values, strict=True)):
            check_classify(result, f"c{i}-{k}.png", v)
        return len(values)

    async def run():
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=20) as ac:
            return await asyncio.gather(*(one(ac, i) for i in range(64)))

    rows = asyncio.run(run())
    sizes = [n for op, n in fake.calls if op == "classify"]
    assert sum(sizes) == sum(rows)
    assert max(sizes) > 3, f"no batching: {sizes}"
    assert max(sizes) <= SETTINGS.max_batch
    text = client.get("/metrics").text
    le1 = metric(text, "fmnist_batch_size_bucket", op="classify", le="1.0")
    total = metric(text, "fmnist_batch_size_count", op="classify")
    assert total > le1, "the batch-size histogram shows no batch larger than 1"


def test_slow_and_vanished_clients_do_not_block_others(server, client):
    head = (
        b"POST /v1/classify HTTP/1.1\r\nhost: x\r\ncontent-type: multipart/form-data; boundary=b\r\n"
        b'content-length: 5000\r\n\r\n--b\r\ncontent-disposition: form-data; name="file"; '
        b'filename="a.png"\r\n\r\n'
    )
    before = counter(client, "/v1/classify", "POST", 499)
    slow = socket.create_connection(("127.0.0.1", server.port))
    slow.sendall(head + b"\x89PNG")  # ... and then nothing more for a while
    stalled_headers = socket.create_connection(("127.0.0.1", server.port))
    stalled_headers.sendall(b"POST /v1/classify HTTP/1.1\r\nhost:")
    try:
        t0 = time.monotonic()
        for v in range(10):
            r = client.post("/v1/classify", files=upload(v), params={"invert": "no"})
            check_classify(r.json()["results"][0], "img0.png", v)
        assert time.monotonic() - t0 < 5
    finally:
        slow.close()  # vanishes in the middle of its body
        stalled_headers.close()
    # The server notices the disconnect (status 499 in the metrics, not a 500) and goes on.
    deadline = time.monotonic() + 5
    while counter(client, "/v1/classify", "POST", 499) < before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert counter(client, "/v1/classify", "POST", 499) == before + 1
    assert counter(client, "/v1/classify", "POST", 500) == 0
    assert client.get("/readyz").status_code == 200


# --------------------------------------------------------------------------- batching off


def test_batching_off_gives_the_same_answers_one_call_per_request():
    fake = FakeModel()
    with (
        ThreadServer(create_app(fake, Settings(batching=False))) as s,
        httpx.Client(base_url=s.url) as c,
    ):
        fake.calls.clear()
        r = c.post("/v1/classify", files=upload(30, 220), params={"invert": "no"})
        check_classify(r.json()["results"][0], "img0.png", 30)
        check_classify(r.json()["results"][1], "img1.png", 220)
        assert fake.calls == [("classify", 2)]
        assert metric(c.get("/metrics").text, "fmnist_batch_size_count", op="classify") == 1


# --------------------------------------------------------------------------- the command


def test_serve_command_flags_and_errors(tmp_path):
    from typer.testing import CliRunner

    from fmnist.cli.app import app

    runner = CliRunner()
    out = runner.invoke(app, ["serve", "--help"], terminal_width=200).output
    for flag in (
        "--artifacts",
        "--provider",
        "--host",
        "--port",
        "--workers",
        "--batching",
        "--no-batching",
        "--max-batch",
        "--max-wait-ms",
        "--max-body-bytes",
        "--header-timeout",
        "--body-timeout",
        "--max-connections",
        "--shutdown-drain",
    ):
        assert flag in out
    r = runner.invoke(app, ["serve", "--workers", "2", "--artifacts", str(tmp_path / "none")])
    assert r.exit_code == 2 and "does not exist" in r.output
    r = runner.invoke(app, ["serve", "--max-batch", "0"])
    assert r.exit_code == 2 and "--max-batch must be >= 1" in r.output


# A valid value other than the default for every str field; numbers and bools are derived.
OTHER_VALUES = {
    "provider": "cpu",
    "host": "127.0.0.2",
    "log_level": "debug",
    "log_format": "json",
    "api_key_file": str(Path(__file__).with_name("api_keys.txt")),
}


def other_value(field) -> object:
    if isinstance(field.default, bool):
        return not field.default
    if isinstance(field.default, int | float):
        return field.default + 1
    return OTHER_VALUES[field.name]  # a new str field needs a value here


def cli_args(name: str, value: object) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [flag if value else "--no-" + flag[2:]]
    return [flag, str(value)]


@pytest.fixture
def started(monkeypatch):
    """``fmnist serve`` with its server replaced: what it would have run (the app and uvicorn's options)."""
    from fmnist.serve import processes
    from fmnist.serve.app import create_app_from_env

    seen = {}

    def fake_run(app, sock, **options):
        seen["app"] = create_app_from_env() if app == "fmnist.serve.app:create_app_from_env" else app
        seen["options"] = options

    monkeypatch.setattr(processes, "listen", lambda host, port: None)  # no port taken
    monkeypatch.setattr(processes, "run_server", fake_run)
    monkeypatch.delenv("FMNIST_SERVE_CONFIG", raising=False)
    return seen


@pytest.mark.parametrize("field", dataclasses.fields(Settings), ids=lambda f: f.name)
@pytest.mark.parametrize("workers", [1, 2])
def test_every_serve_flag_reaches_the_settings_the_app_runs_with(started, toy_bundle, field, workers):
    from typer.testing import CliRunner

    from fmnist.cli.app import app

    value = other_value(field)
    args = ["serve", "--artifacts", str(toy_bundle), "--workers", str(workers), *cli_args(field.name, value)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    settings = started["app"].state.settings
    assert settings == dataclasses.replace(Settings(), **{field.name: value})


@pytest.mark.parametrize("field", dataclasses.fields(ServerSettings), ids=lambda f: f.name)
def test_every_server_flag_reaches_uvicorn(started, toy_bundle, field):
    from typer.testing import CliRunner

    from fmnist.cli.app import app

    value = other_value(field)
    r = CliRunner().invoke(app, ["serve", "--artifacts", str(toy_bundle), *cli_args(field.name, value)])
    assert r.exit_code == 0, r.output
    want = dataclasses.asdict(dataclasses.replace(ServerSettings(), **{field.name: value}))
    if want["workers"] == 1:
        del want["workers"]  # one process: uvicorn runs the app object itself
    assert {k: started["options"][k] for k in want} == want


@pytest.mark.parametrize("field", dataclasses.fields(ConnectionSettings), ids=lambda f: f.name)
def test_every_connection_flag_reaches_the_protocol(started, toy_bundle, field):
    from typer.testing import CliRunner

    from fmnist.cli.app import app
    from fmnist.serve.connections import SHUTDOWN_GRACE_S, fit_guard, raise_fd_limit

    value = other_value(field)
    r = CliRunner().invoke(app, ["serve", "--artifacts", str(toy_bundle), *cli_args(field.name, value)])
    assert r.exit_code == 0, r.output
    want = dataclasses.replace(ConnectionSettings(), **{field.name: value})
    assert started["options"]["http"].keywords["guard"] == fit_guard(want, raise_fd_limit())
    assert started["options"]["timeout_graceful_shutdown"] == want.shutdown_drain + SHUTDOWN_GRACE_S


def test_serve_max_pixels_refuses_larger_uploads_with_400(started, toy_bundle):
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from fmnist.cli.app import app

    r = CliRunner().invoke(app, ["serve", "--artifacts", str(toy_bundle), "--max-pixels", "1000", "--provider", "cpu"])
    assert r.exit_code == 0, r.output
    buf = io.BytesIO()
    Image.new("L", (100, 100)).save(buf, "PNG")
    with TestClient(started["app"]) as c:
        r = c.post("/v1/classify", files=[("file", ("big.png", buf.getvalue()))])
        assert r.status_code == 400
        assert r.json() == {"error": "big.png: image of 10000 pixels is over the limit of 1000"}
        assert c.post("/v1/classify", files=[("file", ("ok.png", png(70)))]).status_code == 200


@pytest.mark.parametrize(
    "args,words",
    [
        (["--max-pixels", "10"], "--max-pixels must be >= 784, not 10"),
        (["--max-generate", "10001"], "--max-generate must be at most 10000, not 10001"),
        (["--provider", "tpu"], "--provider must be one of auto, cpu, cuda, not 'tpu'"),
        (["--workers", "0"], "--workers must be >= 1, not 0"),
        (["--port", "70000"], "--port must be at most 65535, not 70000"),
    ],
)
def test_serve_refuses_to_start_with_a_bad_limit(started, args, words):
    from typer.testing import CliRunner

    from fmnist.cli.app import app

    r = CliRunner().invoke(app, ["serve", *args])
    assert r.exit_code == 2 and r.output == f"fmnist: error: {words}\n"
    assert "app" not in started


def test_serving_modules_do_not_import_the_training_stack():
    code = (
        "import sys, fmnist.cli.app, fmnist.cli.serve, fmnist.serve.app, fmnist.serve.batching, "
        "fmnist.serve.metrics; bad = [m for m in ('torch', 'lightning', 'sklearn', 'optuna') "
        "if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert r.returncode == 0, r.stdout + r.stderr


def head_of(size: int) -> bytes:
    """A GET /healthz whose head (request line, headers, final CRLF CRLF) is exactly ``size`` bytes."""
    start, end = b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-pad: ", b"\r\n\r\n"
    return start + b"a" * (size - len(start) - len(end)) + end


def send_and_read(port: int, *parts: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for part in parts:
            s.sendall(part)
            time.sleep(0.05)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("size, status", [(65536, 200), (65537, 431), (65 * 1024, 431), (100 * 1024, 431)])
def test_the_64_kib_head_limit_holds_to_the_byte(server, size, status):
    """Counted to the end of the head, also when it comes in one piece with its end (where the
    count used to stop, letting ~100 KiB through)."""
    assert send_and_read(server.port, head_of(size)).startswith(b"HTTP/1.1 %d " % status)


def test_a_head_whose_end_straddles_two_reads_is_counted_once(server):
    head = head_of(65536)
    for cut in (2, 3, 4, 5):  # inside the final CRLF CRLF, and just before it
        answer = send_and_read(server.port, head[:-cut], head[-cut:])
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]


def test_images_with_too_many_pixels_are_refused_from_the_header(client):
    """A 17 kB PNG can hold 12000x12000 pixels (seconds of decoding): refused before decoding."""
    for side in (3000, 14000):  # over --max-pixels; 14000^2 is also a Pillow decompression bomb
        buf = io.BytesIO()
        Image.new("1", (side, side)).save(buf, "PNG")
        t0 = time.monotonic()
        r = client.post("/v1/classify", files=[("file", ("big.png", buf.getvalue()))])
        assert time.monotonic() - t0 < 1
        assert r.status_code == 400 and "big.png: image of" in r.json()["error"]


# --------------------------------------------------------------------------- the real Bundle


@pytest.fixture(scope="module")
def real(tiny_bundle):
    """The app loading the tiny trained bundle itself (the lifespan path), and the same Bundle."""
    from fmnist.runtime.bundle import Bundle

    settings = Settings(max_batch=8, max_wait_ms=5, provider="cpu")
    with ThreadServer(create_app(tiny_bundle, settings)) as s, httpx.Client(base_url=s.url, timeout=30) as c:
        yield c, Bundle(tiny_bundle, "cpu")


def garment_png(seed: int) -> bytes:
    """A random bright blob on black, different for every seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    cy, cx, sy, sx = rng.uniform(8, 20), rng.uniform(8, 20), rng.uniform(3, 10), rng.uniform(3, 10)
    pixels = np.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2)) * rng.uniform(120, 255)
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_real_model_concurrent_classify_matches_the_cli_path(real):
    """Each of 32 concurrent callers gets what Bundle.classify(load_image(...)) gives its image."""
    client, model = real
    assert client.get("/readyz").json() == {"status": "ready", "provider": "CPUExecutionProvider"}
    manifest = {k: v for k, v in model.manifest.items() if k != "files"}
    assert client.get("/v1/model").json() == manifest | {"bundle_id": bundle_id(model.manifest)}
    pngs = [garment_png(i) for i in range(32)]
    want = model.classify(np.stack([images.load_image(p) for p in pngs]))

    async def one(ac, i):
        r = await ac.post("/v1/classify", files=[("file", (f"g{i}.png", pngs[i]))])
        (result,) = r.json()["results"]
        assert result["filename"] == f"g{i}.png"
        assert result["probabilities"] == pytest.approx(want[i].tolist(), abs=1e-5)
        assert result["label"] == int(want[i].argmax()) and result["class"] == model.class_names[result["label"]]

    async def run():
        async with httpx.AsyncClient(base_url=client.base_url, timeout=30) as ac:
            await asyncio.gather(*(one(ac, i) for i in range(32)))

    asyncio.run(run())


def test_real_model_encode_reconstruct_generate(real):
    client, model = real
    pngs = [garment_png(100 + i) for i in range(3)]
    x = np.stack([images.load_image(p, "no") for p in pngs])
    files = [("file", (f"g{i}.png", p)) for i, p in enumerate(pngs)]
    r = client.post("/v1/encode", files=files, params={"invert": "no"}).json()
    assert r["latent_dim"] == model.latent_dim
    np.testing.assert_allclose([e["latent"] for e in r["results"]], model.encode(x), atol=1e-5)
    r = client.post("/v1/reconstruct", files=files, params={"invert": "no", "format": "list"}).json()
    np.testing.assert_allclose([e["image"] for e in r["results"]], model.reconstruct(x), atol=1e-5)
    for sampler in SAMPLERS:
        r = client.post("/v1/generate", json={"n": 4, "sampler": sampler, "seed": 3, "format": "list"})
        np.testing.assert_allclose([e["image"] for e in r.json()["results"]], model.generate(4, sampler, 3), atol=1e-5)
    r = client.post("/v1/generate", json={"n": 4, "seed": 3}, headers={"accept": "image/png"})
    assert r.content == images.to_png(model.generate(4, "kde", 3), scale=4)


@pytest.mark.parametrize(
    "data,words",
    [(b"GIF89a not really", "not an image"), (garment_png(0)[:60], "damaged or truncated"), (b"", "not an image")],
)
def test_real_model_bad_images_are_400(real, data, words):
    client, _ = real
    r = client.post("/v1/classify", files=[("file", ("bad.png", data))])
    assert r.status_code == 400 and r.json()["error"].startswith("bad.png: ") and words in r.json()["error"]


@pytest.mark.slow
def test_fmnist_serve_with_two_workers_serves_and_stops_on_sigterm(tiny_bundle):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fmnist.cli", "serve", "--artifacts", str(tiny_bundle), "--port", str(port),
         "--workers", "2", "--provider", "cpu"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, timeout=60)
        with httpx.Client(base_url=url) as c:
            for i in range(8):
                r = c.post("/v1/classify", files=[("file", (f"g{i}.png", garment_png(i)))])
                assert r.status_code == 200 and r.json()["results"][0]["filename"] == f"g{i}.png"
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log = proc.stdout.read().decode()
        assert "Traceback" not in log, log
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/healthz")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

"""The Open Inference Protocol (``/v2``) of a real ``fmnist serve`` on the bundled model, spoken by
the real ``tritonclient[http]``: metadata, health, JSON and binary tensors, the image model, the
request id, and errors. The classifier's answers over V2 must equal ``/v1/classify``'s for the same
Fashion-MNIST test images."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_fakes import free_port

from benchmarks.v2_load import png_test_images
from benchmarks.workers_drain import kill, start
from fmnist import artifacts
from fmnist.runtime import images

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is a dev dependency")
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.slow

IMAGES = 8
MAX_FILES = 8


@pytest.fixture(scope="module")
def url():
    port = free_port()
    proc = start(None, 1, port, ("--max-files", str(MAX_FILES), "--max-body-bytes", str(1 << 20)))
    try:
        yield f"127.0.0.1:{port}"
    finally:
        kill(proc)


@pytest.fixture(scope="module")
def client(url):
    c = httpclient.InferenceServerClient(url, concurrency=1)
    yield c
    c.close()


@pytest.fixture(scope="module")
def test_images(data_dir) -> tuple[list[bytes], np.ndarray]:
    """The first Fashion-MNIST test images as PNG files, and as the classifier's float32 [k,1,28,28]."""
    pngs = png_test_images(data_dir, IMAGES)
    return pngs, np.stack([images.load_image(png, "auto") for png in pngs])[:, None]  # as /v1 preprocesses


@pytest.fixture(scope="module")
def v1_probabilities(url, test_images) -> np.ndarray:
    files = [("file", (f"{i}.png", data, "image/png")) for i, data in enumerate(test_images[0])]
    r = httpx.post(f"http://{url}/v1/classify", files=files, timeout=60)
    assert r.status_code == 200, r.text
    return np.array([res["probabilities"] for res in r.json()["results"]], np.float32)


def image_input(pngs: list[bytes], binary: bool = True):
    tensor = httpclient.InferInput("image_file", [len(pngs)], "BYTES")
    tensor.set_data_from_numpy(np.array(pngs, dtype=object), binary_data=binary)
    return tensor


def fp32_input(name: str, array: np.ndarray, binary: bool):
    tensor = httpclient.InferInput(name, list(array.shape), "FP32")
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


# --------------------------------------------------------------------------- health and metadata


def test_health_and_server_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "fmnist" and "binary_tensor_data" in meta["extensions"]
    for name in ("classifier", "encoder", "decoder", "vae_encoder", "vae_decoder", "fmnist_image"):
        assert client.is_model_ready(name), name
    assert not client.is_model_ready("resnet50")


def test_model_metadata_is_read_from_the_bundles_graphs(client):
    manifest = json.loads((artifacts.default_bundle_dir() / "manifest.json").read_text())
    d = manifest["latent_dim"]
    classifier = client.get_model_metadata("classifier")
    assert classifier["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    outputs = {o["name"]: o for o in classifier["outputs"]}
    assert list(outputs) == manifest["graphs"]["classifier"]["outputs"]
    assert outputs["probabilities"]["shape"] == [-1, 10] and outputs["logits"]["shape"] == [-1, 10]
    assert outputs["features"]["datatype"] == "FP32" and outputs["features"]["shape"][0] == -1
    assert client.get_model_metadata("encoder")["outputs"] == [{"name": "latent", "datatype": "FP32", "shape": [-1, d]}]
    assert client.get_model_metadata("vae_decoder")["inputs"] == [
        {"name": "latent", "datatype": "FP32", "shape": [-1, d]}
    ]
    image = client.get_model_metadata("fmnist_image")
    assert image["inputs"] == [{"name": "image_file", "datatype": "BYTES", "shape": [-1]}]
    assert image["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        client.get_model_metadata("nope")


# --------------------------------------------------------------------------- answers equal /v1's


def test_the_image_model_answers_what_v1_classify_answers(client, test_images, v1_probabilities):
    result = client.infer("fmnist_image", [image_input(test_images[0])])
    assert result.get_response()["outputs"][0]["parameters"]["binary_data_size"] == IMAGES * 10 * 4
    np.testing.assert_array_equal(result.as_numpy("probabilities"), v1_probabilities)


def test_image_files_as_json_strings_are_refused_saying_what_to_do(client):
    tensor = httpclient.InferInput("image_file", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b"not really a png"], dtype=object), binary_data=False)
    with pytest.raises(InferenceServerException, match="binary tensor data extension"):
        client.infer("fmnist_image", [tensor])


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_the_classifier_graph_answers_what_v1_classify_answers(client, test_images, v1_probabilities, binary):
    x = test_images[1]
    asked = [httpclient.InferRequestedOutput("probabilities", binary_data=binary)]
    result = client.infer("classifier", [fp32_input("image", x, binary)], outputs=asked)
    output = result.get_response()["outputs"][0]
    assert ("data" in output) is not binary
    np.testing.assert_array_equal(result.as_numpy("probabilities"), v1_probabilities)
    # every output (tritonclient's default: all, binary): a direct run of the graph
    everything = client.infer("classifier", [fp32_input("image", x, binary)])
    np.testing.assert_allclose(everything.as_numpy("probabilities"), v1_probabilities, atol=1e-6)
    logits = everything.as_numpy("logits")
    assert logits.shape == (IMAGES, 10) and (logits.argmax(1) == v1_probabilities.argmax(1)).all()
    assert everything.as_numpy("features").shape[0] == IMAGES


def test_encoder_and_decoders_over_v2(url, client, test_images):
    pngs, x = test_images
    files = [("file", (f"{i}.png", data, "image/png")) for i, data in enumerate(pngs)]
    v1 = httpx.post(f"http://{url}/v1/encode", files=files, timeout=60).json()
    latent = client.infer("encoder", [fp32_input("image", x, True)]).as_numpy("latent")
    np.testing.assert_allclose(latent, np.array([r["latent"] for r in v1["results"]], np.float32), atol=1e-6)
    for decoder in ("decoder", "vae_decoder"):
        image = client.infer(decoder, [fp32_input("latent", latent, False)]).as_numpy("image")
        assert image.shape == (IMAGES, 1, 28, 28) and image.min() >= 0 and image.max() <= 1
    vae = client.infer("vae_encoder", [fp32_input("image", x, True)])
    assert vae.as_numpy("mean").shape == vae.as_numpy("logvar").shape == latent.shape


def test_the_request_id_comes_back(client, test_images):
    result = client.infer("fmnist_image", [image_input(test_images[0][:1])], request_id="req-42")
    assert result.get_response()["id"] == "req-42"
    assert "id" not in client.infer("fmnist_image", [image_input(test_images[0][:1])]).get_response()


# --------------------------------------------------------------------------- errors


def post(url: str, body: dict | bytes, headers: dict | None = None, model: str = "classifier") -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"http://{url}/v2/models/{model}/infer", content=content, headers=headers or {}, timeout=30)


def image_tensor(shape=(1, 1, 28, 28), datatype="FP32", data=None, name="image") -> dict:
    return {"name": name, "shape": list(shape), "datatype": datatype, "data": data or [0.5] * int(np.prod(shape))}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "malformed JSON inference request"),
        ({"inputs": "x"}, 'an inference request is a JSON object with an "inputs" list'),
        ({"inputs": [image_tensor(name="pixels")]}, "model classifier has no input 'pixels'"),
        ({"inputs": [image_tensor(datatype="FP64")]}, "input image must be FP32, not FP64"),
        ({"inputs": [image_tensor(shape=(1, 28, 28))]}, "input image has shape [1, 28, 28], the model takes"),
        ({"inputs": [image_tensor(data=[0.5, 0.5])]}, "shape [1, 1, 28, 28] holds 784 value(s), the data 2"),
        ({"inputs": [image_tensor(data=["a"] * 784)]}, "input image: data must be numbers"),
        ({"inputs": [image_tensor(shape=(0, 1, 28, 28))]}, "input image is empty"),
        ({"inputs": []}, "missing input image of model classifier"),
        ({"inputs": [image_tensor(), image_tensor()]}, "input image is given twice"),
        ({"inputs": [image_tensor()], "outputs": [{"name": "colour"}]}, "model classifier has no output 'colour'"),
        ({"inputs": [image_tensor()], "id": 7}, '"id" must be a string'),
    ],
)
def test_bad_requests_are_400_with_one_error_line(url, body, message):
    r = post(url, body)
    assert r.status_code == 400, r.text
    assert list(r.json()) == ["error"] and message in r.json()["error"], r.json()


def test_binary_data_that_does_not_add_up_is_400(url):
    head = json.dumps(
        {
            "inputs": [
                {"name": "image", "shape": [1, 1, 28, 28], "datatype": "FP32", "parameters": {"binary_data_size": 3136}}
            ]
        }
    ).encode()
    too_short = head + b"\0" * 100
    r = post(url, too_short, {"Inference-Header-Content-Length": str(len(head))})
    assert r.status_code == 400 and "runs past the end of the body" in r.json()["error"]
    extra = head + b"\0" * 3200
    r = post(url, extra, {"Inference-Header-Content-Length": str(len(head))})
    assert r.status_code == 400 and "64 bytes after the tensors' binary data" in r.json()["error"]
    r = post(url, head, {"Inference-Header-Content-Length": "999999"})
    assert r.status_code == 400 and "Inference-Header-Content-Length" in r.json()["error"]


def test_the_image_model_keeps_the_servers_limits(client, url, test_images):
    with pytest.raises(InferenceServerException, match=f"too many images: at most {MAX_FILES}"):
        client.infer("fmnist_image", [image_input([test_images[0][0]] * (MAX_FILES + 1))])
    with pytest.raises(InferenceServerException, match=r"image_file\[0\]"):
        client.infer("fmnist_image", [image_input([b"not an image at all"])])
    with pytest.raises(InferenceServerException, match="parameter invert must be auto, yes or no"):
        client.infer("fmnist_image", [image_input(test_images[0][:1])], parameters={"invert": "sideways"})
    big = post(url, b"x" * ((1 << 20) + 1), model="fmnist_image")
    assert big.status_code == 413 and "error" in big.json()


def test_unknown_models_and_health_answers_over_plain_http(url):
    r = httpx.get(f"http://{url}/v2/models/resnet50")
    assert r.status_code == 400 and r.json()["error"] == (
        "unknown model 'resnet50': this server has encoder, decoder, classifier, vae_encoder, vae_decoder, fmnist_image"
    )
    assert httpx.get(f"http://{url}/v2/health/live").status_code == 200
    assert httpx.get(f"http://{url}/v2/models/resnet50/ready").status_code == 400
    assert "/v2/models/{name}/infer" in httpx.get(f"http://{url}/metrics").text


def test_the_readmes_tritonclient_example_runs(url, test_images, tmp_path, monkeypatch, capsys):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### The Open Inference Protocol", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    for name, data in zip(("shirt.png", "boot.png"), test_images[0], strict=False):
        (tmp_path / name).write_bytes(data)
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace("localhost:8000", url), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert " r1\n" in printed and "'name': 'encoder'" in printed, printed

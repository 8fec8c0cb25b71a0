"""The Open Inference Protocol (KServe V2) over REST, beside ``/v1``: what Triton, KServe, MLServer
and their clients (``tritonclient``, the KServe SDK) speak.

Routes: ``GET /v2`` (server metadata), ``/v2/health/live``, ``/v2/health/ready``,
``/v2/models/{name}`` (metadata), ``/v2/models/{name}/ready`` and ``POST /v2/models/{name}/infer``.

Models:

- each graph of the bundle (``classifier``, ``encoder``, ``decoder``, ``vae_encoder``,
  ``vae_decoder``): FP32 tensors in and out, with the names, shapes and types of the graph itself
  (the manifest's ``graphs`` entry names them, the ONNX file gives shapes; ``-1`` is any size).
  ``classifier`` asked for ``probabilities`` only, and ``encoder``, go through the server's
  micro-batchers; every other call runs the graph directly, in a worker thread;
- ``fmnist_image``: a ``BYTES`` input ``image_file`` of shape ``[N]``, N encoded image files (PNG,
  JPEG, ...: what ``/v1/classify`` takes), preprocessed exactly as ``/v1/classify`` does (request
  parameter ``invert``: auto, yes or no), and one FP32 output ``probabilities`` [N, 10] from the
  classifier's micro-batcher: the same numbers ``/v1/classify`` answers.

Tensors come as JSON ``data`` (flat or nested, row-major) or with the binary tensor data extension
(``binary_data_size`` per input, the bytes after the JSON, whose length the
``Inference-Header-Content-Length`` header gives; ``BYTES`` elements each a 4-byte little-endian
length and the bytes). Outputs are JSON unless asked for in binary (``binary_data`` on an output,
or ``binary_data_output`` on the request, as ``tritonclient`` sends by default). The request's
``id`` comes back in the answer. Every error is a 400 with ``{"error": "<one line>"}``; the server's
limits hold (body size, images per request, pixels per image).
https://kserve.github.io/website/docs/concepts/architecture/data-plane/v2-protocol
https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_binary_data.md

These routes follow that specification rather than this server's OpenAPI schema (a binary body
cannot be described there), so they are left out of ``/openapi.json``.
"""

from __future__ import annotations

import functools
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from fmnist.errors import InputError
from fmnist.runtime import images
from fmnist.runtime.images import INVERT_CHOICES
from fmnist.serve.dependencies import read_body, serving

router = APIRouter(prefix="/v2", include_in_schema=False)

HEADER_LENGTH = "inference-header-content-length"
EXTENSIONS = ["binary_tensor_data"]
IMAGE_MODEL = "fmnist_image"
IMAGE_INPUT = "image_file"
# Graphs whose output comes from a micro-batcher: graph -> (batcher, the output it gives).
BATCHED = {"classifier": ("classify", "probabilities"), "encoder": ("encode", "latent")}
# Images with more pixels are decoded in a worker thread, as for /v1 uploads.
DECODE_INLINE_PIXELS = 256 * 256
NUMPY = {"FP32": np.dtype("<f4")}


@dataclass(frozen=True)
class Tensor:
    """A tensor's metadata: its name, V2 datatype and shape (-1: any size)."""

    name: str
    datatype: str
    shape: list[int]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


@dataclass(frozen=True)
class Model:
    """A V2 model: a graph of the bundle, or the image model."""

    name: str
    platform: str
    inputs: list[Tensor]
    outputs: list[Tensor]


# --------------------------------------------------------------------------- the models


def _in_service(request: Request) -> tuple[Any, dict[str, Any]]:
    """(the model, its batchers) of the bundle in service, read once per request (a rollout never
    mixes two bundles in one answer); (None, {}) until the bundle answers."""
    if getattr(request.app.state, "served", None) is None:
        return None, {}
    current = serving(request)
    return current.model, current.batchers


def _graph_model(model: Any, name: str) -> Model:
    """Graph ``name`` as the bundle declares it (manifest names), shapes and types from the file."""
    declared = model.manifest["graphs"][name]
    session = model.session(name)

    def tensors(args, names: list[str]) -> list[Tensor]:
        by_name = {a.name: a for a in args}
        return [Tensor(n, _datatype(by_name[n].type), _dims(by_name[n].shape)) for n in names]

    return Model(
        name,
        "onnxruntime_onnx",
        tensors(session.get_inputs(), declared["inputs"]),
        tensors(session.get_outputs(), declared["outputs"]),
    )


def _image_model(classifier: Model) -> Model:
    probabilities = next(t for t in classifier.outputs if t.name == BATCHED["classifier"][1])
    return Model(IMAGE_MODEL, "fmnist", [Tensor(IMAGE_INPUT, "BYTES", [-1])], [probabilities])


def _datatype(onnx_type: str) -> str:
    if onnx_type != "tensor(float)":  # the bundle contract: every tensor float32
        raise InputError(f"graph tensor of type {onnx_type} is not served over V2")
    return "FP32"


def _dims(shape: list) -> list[int]:
    return [d if isinstance(d, int) and d >= 0 else -1 for d in shape]


@functools.lru_cache(maxsize=4)  # per bundle object: a reloaded bundle is a new one
def models_of(model: Any) -> dict[str, Model]:
    """Every V2 model of a loaded bundle, by name: its graphs, and the image model."""
    found = {name: _graph_model(model, name) for name in model.manifest.get("graphs", {})}
    if "classifier" in found:
        found[IMAGE_MODEL] = _image_model(found["classifier"])
    return found


def find_model(request: Request, name: str) -> Model:
    """The V2 model ``name`` of the bundle in service; InputError (400) when unknown or not ready."""
    return _find(*_in_service(request), name)


def _find(model: Any, batchers: dict[str, Any], name: str) -> Model:
    if model is None or not batchers:
        raise InputError("the model is not loaded yet: retry when /v2/health/ready answers 200")
    found = models_of(model)
    if name not in found:
        raise InputError(f"unknown model {name[:60]!r}: this server has {', '.join(found)}")
    return found[name]


# --------------------------------------------------------------------------- health and metadata


@router.get("")
async def server_metadata() -> dict[str, Any]:
    """Server metadata: name, version, extensions."""
    from fmnist import __version__

    return {"name": "fmnist", "version": __version__, "extensions": EXTENSIONS}


@router.get("/health/live")
async def live() -> Response:
    return Response(status_code=200)


@router.get("/health/ready")
async def ready(request: Request) -> Response:
    model, batchers = _in_service(request)
    if model is None or not batchers:
        return JSONResponse({"error": "model not loaded"}, 400)
    return Response(status_code=200)


@router.get("/models/{name}")
async def model_metadata(name: str, request: Request) -> dict[str, Any]:
    m = find_model(request, name)
    return {
        "name": m.name,
        "versions": [],
        "platform": m.platform,
        "inputs": [t.metadata() for t in m.inputs],
        "outputs": [t.metadata() for t in m.outputs],
    }


@router.get("/models/{name}/ready")
async def model_ready(name: str, request: Request) -> Response:
    find_model(request, name)  # 400 when unknown or not loaded
    return Response(status_code=200)


# --------------------------------------------------------------------------- inference


async def infer(request: Request) -> Response:
    """Run the model named in the path on the request's tensors (JSON or binary); answer its outputs.

    A plain Starlette route, dispatched past FastAPI's router (``fmnist.serve.direct``): FastAPI's
    parameter solving and routing would cost more than the rest of the protocol's handling (the
    image model must keep up with /v1/classify)."""
    model, batchers = _in_service(request)  # read once: the whole request runs on one bundle
    m = _find(model, batchers, request.path_params["name"])
    header, binary = split_body(await read_body(request), request.headers.get(HEADER_LENGTH))
    inputs = read_inputs(header, binary, m)
    wanted = requested_outputs(header, m)
    parameters = header.get("parameters") or {}
    if m.name == IMAGE_MODEL:
        settings = request.app.state.settings
        x = await decode_images(inputs[IMAGE_INPUT], _invert(parameters), settings.max_files, settings.max_pixels)
        outputs = await _run(model, batchers, "classifier", x, [t.name for t in m.outputs])
    else:
        outputs = await _run(model, batchers, m.name, inputs[m.inputs[0].name], list(wanted))
    answer = {"model_name": m.name, "outputs": [_output(n, outputs[n]) for n in wanted]}
    if "id" in header:
        answer = {"id": header["id"], **answer}
    return encode_answer(answer, outputs, wanted)


INFER = Route("/v2/models/{name}/infer", infer, methods=["POST"], include_in_schema=False)
router.routes.append(INFER)


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """(the JSON request, the binary tensor bytes after it)."""
    if header_length is None:
        head, rest = body, b""
    else:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise InputError(f"Inference-Header-Content-Length {header_length[:20]!r} is not a length within the body")
        head, rest = body[: int(header_length)], body[int(header_length) :]
    try:
        request = json.loads(head)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"malformed JSON inference request: {e}") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise InputError('an inference request is a JSON object with an "inputs" list')
    if "id" in request and not isinstance(request["id"], str):
        raise InputError('"id" must be a string')
    return request, rest


def read_inputs(header: dict[str, Any], binary: bytes, m: Model) -> dict[str, Any]:
    """Each declared input of ``m`` by name: an FP32 array of its shape, or a list of bytes."""
    declared = {t.name: t for t in m.inputs}
    given, offset = {}, 0
    for entry in header["inputs"]:
        if not isinstance(entry, dict):
            raise InputError("each input must be a JSON object")
        name = entry.get("name")
        if name not in declared:
            raise InputError(f"model {m.name} has no input {str(name)[:60]!r}; its input is {', '.join(declared)}")
        if name in given:
            raise InputError(f"input {name} is given twice")
        size = (entry.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InputError(f"input {name}: binary_data_size {size!r} runs past the end of the body")
            raw, offset = binary[offset : offset + size], offset + size
        else:
            raw = None
        given[name] = _tensor(entry, declared[name], raw)
    if offset != len(binary):
        raise InputError(f"{len(binary) - offset} bytes after the tensors' binary data")
    missing = [n for n in declared if n not in given]
    if missing:
        raise InputError(f"missing input {', '.join(missing)} of model {m.name}")
    return given


def _tensor(entry: dict[str, Any], want: Tensor, raw: bytes | None):
    """One input's value: checked against its declared datatype and shape."""
    shape, datatype = entry.get("shape"), entry.get("datatype")
    if datatype != want.datatype:
        raise InputError(f"input {want.name} must be {want.datatype}, not {str(datatype)[:20]}")
    if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise InputError(f"input {want.name}: shape must be a list of non-negative integers")
    if len(shape) != len(want.shape) or any(w not in (-1, d) for w, d in zip(want.shape, shape, strict=True)):
        raise InputError(f"input {want.name} has shape {shape}, the model takes {want.shape} (-1: any size)")
    if shape[0] == 0:
        raise InputError(f"input {want.name} is empty: send at least one item")
    count = math.prod(shape)
    if datatype == "BYTES":
        items = _bytes_elements(raw, want.name) if raw is not None else _json_bytes(entry, want.name)
        if len(items) != count:
            raise InputError(f"input {want.name}: shape {shape} holds {count} item(s), the data {len(items)}")
        return items
    if raw is not None:
        if len(raw) != count * NUMPY[datatype].itemsize:
            raise InputError(f"input {want.name}: {len(raw)} bytes of binary data for shape {shape} of {datatype}")
        return np.frombuffer(raw, NUMPY[datatype]).reshape(shape)
    try:
        array = np.asarray(entry.get("data"), dtype=NUMPY[datatype])
    except (TypeError, ValueError):
        raise InputError(f"input {want.name}: data must be numbers (a flat or nested list)") from None
    if array.size != count:
        raise InputError(f"input {want.name}: shape {shape} holds {count} value(s), the data {array.size}")
    return array.reshape(shape)


def _bytes_elements(raw: bytes, name: str) -> list[bytes]:
    """A binary BYTES tensor: each element a 4-byte little-endian length, then that many bytes."""
    items, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise InputError(f"input {name}: truncated BYTES element length")
        (length,) = struct.unpack_from("<I", raw, pos)
        if pos + 4 + length > len(raw):
            raise InputError(f"input {name}: a BYTES element runs past its binary data")
        items.append(raw[pos + 4 : pos + 4 + length])
        pos += 4 + length
    return items


def _json_bytes(entry: dict[str, Any], name: str) -> list[bytes]:
    data = entry.get("data")
    if isinstance(data, list) and all(isinstance(d, str) for d in data):
        raise InputError(
            f"input {name}: encoded image files do not fit JSON strings; send them with the binary "
            "tensor data extension (tritonclient's default, binary_data=True)"
        )
    raise InputError(f"input {name}: BYTES data must be sent as binary data")


def requested_outputs(header: dict[str, Any], m: Model) -> dict[str, bool]:
    """Output name -> in binary, in the order asked (all outputs when none are named)."""
    parameters = header.get("parameters") or {}
    default_binary = parameters.get("binary_data_output") is True
    names = [t.name for t in m.outputs]
    asked = header.get("outputs")
    if asked is None:
        return dict.fromkeys(names, default_binary)
    if not isinstance(asked, list) or not all(isinstance(o, dict) for o in asked):
        raise InputError('"outputs" must be a list of objects')
    wanted = {}
    for entry in asked:
        name = entry.get("name")
        if name not in names:
            raise InputError(f"model {m.name} has no output {str(name)[:60]!r}; its outputs are {', '.join(names)}")
        wanted[name] = (entry.get("parameters") or {}).get("binary_data", default_binary) is True
    return wanted


def _invert(parameters: dict[str, Any]) -> str:
    invert = parameters.get("invert", "auto")
    if invert not in INVERT_CHOICES:
        raise InputError(f"parameter invert must be auto, yes or no, not {str(invert)[:20]!r}")
    return invert


async def decode_images(files: list[bytes], invert: str, max_files: int, max_pixels: int) -> np.ndarray:
    """Encoded image files -> [k,28,28], preprocessed as /v1/classify's uploads are."""
    if len(files) > max_files:
        raise InputError(f"too many images: at most {max_files} per request")
    arrays = []
    for i, data in enumerate(files):
        label = f"{IMAGE_INPUT}[{i}]"
        image = images.open_image(data, label)  # the header only
        images.check_size(image, label, max_pixels)
        if image.width * image.height > DECODE_INLINE_PIXELS:
            arrays.append(await run_in_threadpool(_decode, image, label, invert))
        else:
            arrays.append(_decode(image, label, invert))
    return np.stack(arrays)


def _decode(image, label: str, invert: str) -> np.ndarray:
    return images.preprocess(images.decode(image, label), invert)


async def _run(model: Any, batchers: dict[str, Any], graph: str, x: np.ndarray, wanted: list[str]) -> dict:
    """The ``wanted`` outputs of ``graph`` on ``x``: through its micro-batcher when that gives
    them, else one direct run of the graph in a worker thread."""
    batched = BATCHED.get(graph)
    if batched is not None and wanted == [batched[1]]:
        images_in = x.reshape(len(x), 28, 28)  # the batchers take [k,28,28]
        return {batched[1]: np.asarray(await batchers[batched[0]](images_in))}
    return await run_in_threadpool(model.run, graph, np.ascontiguousarray(x, np.float32), *wanted)


def _output(name: str, array: np.ndarray) -> dict[str, Any]:
    return {"name": name, "datatype": "FP32", "shape": list(array.shape)}


def encode_answer(answer: dict[str, Any], arrays: dict[str, np.ndarray], binary: dict[str, bool]) -> Response:
    """JSON, or JSON then the binary outputs with ``Inference-Header-Content-Length``."""
    chunks = []
    for out in answer["outputs"]:
        array = np.ascontiguousarray(arrays[out["name"]], NUMPY["FP32"])
        if binary[out["name"]]:
            chunk = array.tobytes()
            out["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            out["data"] = array.ravel().tolist()
    head = json.dumps(answer, separators=(",", ":")).encode()
    if not chunks:
        return Response(head, media_type="application/json")
    return Response(
        b"".join([head, *chunks]),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(head))},
    )

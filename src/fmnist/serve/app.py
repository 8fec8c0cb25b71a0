"""The HTTP API: ``create_app(model_or_bundle_dir, settings)`` builds the FastAPI application.

Routes (schema at ``/openapi.json``, browsable at ``/docs``):

- ``POST /v1/classify``, ``/v1/encode``, ``/v1/reconstruct``: multipart uploads in the field
  ``file`` (repeat it for several images), preprocessed like the CLI (``invert`` as a query or
  form parameter, the form field first when both are sent); results come back in upload order.
- ``POST /v1/generate``: JSON ``{"n", "sampler", "seed", "format"}``.
- ``GET /healthz``, ``/readyz``, ``/v1/model``, ``/metrics``.

Images come back in one of three ``format``s: ``png`` (one PNG grid, ``image/png``, as the CLI
writes), ``list`` (JSON nested lists of floats in [0,1], shape [28,28] per image) or
``png_base64`` (JSON, one base64 28x28 grey PNG per image). Without ``format`` the answer is
``png`` when the ``Accept`` header names ``image/png``, else ``list``.

Every client error is a 4xx with the body ``{"error": "<one line>"}``; a 500 means a bug.
"""

import base64
import gc
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from fmnist.errors import InputError
from fmnist.runtime import images
from fmnist.runtime.bundle import Bundle
from fmnist.runtime.images import INVERT_CHOICES
from fmnist.serve import v2
from fmnist.serve.batching import MicroBatcher
from fmnist.serve.metrics import CONTENT_TYPE, Metrics
from fmnist.serve.middleware import BodyLimit, Observe
from fmnist.serve.multipart import parse_multipart
from fmnist.serve.schemas import (
    ERRORS,
    PNG_RESPONSE,
    ClassifyResponse,
    EncodeResponse,
    ErrorResponse,
    ImageFormat,
    ImagesResponse,
    generate_request,
    upload_body,
)
from fmnist.serve.settings import Settings, from_env

log = logging.getLogger("fmnist.serve")

# Images with more pixels are decoded in a worker thread so they cannot stall the event loop
# (a 17 kB PNG can hold 12000x12000 pixels and take seconds to decode).
_DECODE_INLINE_PIXELS = 256 * 256
# Concurrency comes from many requests at once, so each onnxruntime call gets one thread.
SERVER_THREADS = 1


def load_bundle(bundle_dir: str | Path | None, provider: str) -> Bundle:
    """The bundle as the server runs it: verified now, one onnxruntime thread per call."""
    return Bundle(bundle_dir, provider, threads=SERVER_THREADS)


def create_app(model_or_bundle_dir: Any = None, settings: Settings | None = None) -> FastAPI:
    """Build the API around a loaded ``Bundle`` (or anything with its interface) or a bundle folder.

    A folder (or None: ``resolve_bundle_dir(None)``) is loaded and verified at startup, in the
    lifespan, so ``/readyz`` only turns ready once the model answers.
    """
    settings = settings or Settings()
    metrics = Metrics()
    state: dict[str, Any] = {"model": None, "ready": False, "batchers": {}}
    if model_or_bundle_dir is None or isinstance(model_or_bundle_dir, (str, Path)):
        bundle_dir = model_or_bundle_dir
    else:
        state["model"], bundle_dir = model_or_bundle_dir, None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if state["model"] is None:
            state["model"] = await run_in_threadpool(load_bundle, bundle_dir, settings.provider)
        model = state["model"]
        # First runs create sessions and allocate; do them before declaring ready.
        probe = np.zeros((1, 28, 28), np.float32)
        for fn in (model.classify, model.encode, model.reconstruct):
            await run_in_threadpool(fn, probe)
        ops = {"classify": model.classify, "encode": model.encode, "reconstruct": model.reconstruct}
        for op, fn in ops.items():
            if settings.batching:
                batcher = MicroBatcher(
                    fn,
                    settings.max_batch,
                    settings.max_wait_ms,
                    name=op,
                    on_batch=lambda size, op=op: metrics.observe_batch(op, size),
                )
                await batcher.start()
                state["batchers"][op] = batcher
            else:
                state["batchers"][op] = _direct(fn, lambda size, op=op: metrics.observe_batch(op, size))
        # The model, FastAPI and the batchers are long-lived: moved out of the collector's view, the
        # full collections that come every second or so under load no longer walk them (they set the p99).
        gc.collect()
        gc.freeze()
        state["ready"] = True
        app.state.model, app.state.batchers = model, state["batchers"]  # what the /v2 router reads
        log.info("fmnist serve: model ready (provider %s)", getattr(model, "provider", "?"))
        try:
            yield
        finally:
            gc.unfreeze()  # an app embedded in a longer-lived process (tests) leaves it as it was
            state["ready"] = False
            app.state.model, app.state.batchers = None, {}
            metrics.close()
            for batcher in state["batchers"].values():
                if isinstance(batcher, MicroBatcher):
                    await batcher.stop()

    # /docs and /redoc load their scripts and styles from the package, not from a CDN: they work offline.
    app = FastAPIOffline(
        title="fmnist",
        summary="Fashion-MNIST autoencoder, classifier and generator served from an ONNX bundle.",
        version=_package_version(),
        lifespan=lifespan,
    )
    app.state.settings, app.state.metrics, app.state.fmnist = settings, metrics, state
    # Innermost first: BodyLimit inside Observe, so 413s are counted.
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(Observe, metrics=metrics)
    _add_error_handlers(app)
    app.include_router(v2.router)  # the Open Inference Protocol (KServe V2) beside /v1

    async def read_uploads(request: Request) -> tuple[list[str], np.ndarray]:
        """The ``file`` uploads of a multipart request, decoded to [k,28,28] in upload order."""
        content_type = request.headers.get("content-type", "")
        kind = content_type.split(";")[0].strip().lower() or "no content type"  # case-insensitive (RFC 9110)
        if kind != "multipart/form-data":
            raise HTTPException(415, f"expected multipart/form-data with `file` fields, not {kind}")
        files, fields = parse_multipart(await request.body(), content_type, settings.max_files)
        if not files:
            raise InputError("no `file` field: upload images as multipart field `file`")
        # both checked when sent; the form field wins (upload_body documents it)
        for source, value in (("query", request.query_params.get("invert")), ("form", fields.get("invert"))):
            if value is not None and value not in INVERT_CHOICES:
                raise InputError(f"invert ({source}) must be auto, yes or no, not {value[:20]!r}")
        invert = fields.get("invert") or request.query_params.get("invert") or "auto"
        names, arrays = [], []
        for name, data in files:
            label = name or "upload"  # what error messages call it
            image = images.open_image(data, label)  # the header only
            images.check_size(image, label, settings.max_pixels)
            if image.width * image.height > _DECODE_INLINE_PIXELS:
                image = await run_in_threadpool(_decode, image, label, invert)
            else:
                image = _decode(image, label, invert)
            names.append(name)
            arrays.append(image)
        return names, np.stack(arrays)

    # --- model routes

    @app.post(
        "/v1/classify",
        response_model=ClassifyResponse,
        responses=ERRORS,
        openapi_extra=upload_body(settings.max_files),
        tags=["model"],
    )
    async def classify(request: Request) -> Response:
        """Classify one or more uploaded images; results in upload order."""
        names, x = await read_uploads(request)
        probs = await state["batchers"]["classify"](x)  # [k,10]
        labels = probs.argmax(1)
        class_names = state["model"].class_names
        results = [
            {
                "filename": name,
                "label": int(label),
                "class": class_names[label],
                "probability": float(p[label]),
                "probabilities": p.tolist(),
            }
            for name, label, p in zip(names, labels, probs, strict=True)
        ]
        return JSONResponse({"results": results})

    @app.post(
        "/v1/encode",
        response_model=EncodeResponse,
        responses=ERRORS,
        openapi_extra=upload_body(settings.max_files),
        tags=["model"],
    )
    async def encode(request: Request) -> Response:
        """Latent vectors [d] of the uploaded images, in upload order."""
        names, x = await read_uploads(request)
        z = await state["batchers"]["encode"](x)  # [k,d]
        results = [{"filename": n, "latent": row.tolist()} for n, row in zip(names, z, strict=True)]
        return JSONResponse({"latent_dim": int(z.shape[1]), "results": results})

    @app.post(
        "/v1/reconstruct",
        response_model=ImagesResponse,
        responses={**ERRORS, **PNG_RESPONSE},
        openapi_extra=upload_body(settings.max_files),
        tags=["model"],
    )
    async def reconstruct(
        request: Request,
        format: ImageFormat | None = Query(None, description="png, list or png_base64; default from Accept."),
    ) -> Response:
        """Autoencoder reconstructions of the uploaded images, in upload order."""
        names, x = await read_uploads(request)
        y = await state["batchers"]["reconstruct"](x)  # [k,28,28]
        return await _images_response(y, names, format, request)

    GenerateRequest = generate_request(settings.max_generate)

    @app.post(
        "/v1/generate",
        response_model=ImagesResponse,
        responses={**ERRORS, **PNG_RESPONSE},
        tags=["model"],
        dependencies=[Depends(_require_json)],
    )
    async def generate(body: GenerateRequest, request: Request) -> Response:  # type: ignore[valid-type]
        """New images from the chosen latent sampler."""
        x = await run_in_threadpool(state["model"].generate, body.n, body.sampler, body.seed)
        return await _images_response(x, None, body.format, request)

    # --- service routes

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["service"], responses={503: {"model": ErrorResponse}})
    async def readyz() -> Response:
        """The bundle is loaded, verified and has answered a first call."""
        if not state["ready"]:
            return JSONResponse({"error": "model not loaded"}, 503)
        model = state["model"]
        return JSONResponse({"status": "ready", "provider": getattr(model, "provider", None)})

    @app.get("/v1/model", tags=["model"])
    async def model_info() -> dict[str, Any]:
        """The bundle's manifest, without the file hashes."""
        return {k: v for k, v in state["model"].manifest.items() if k != "files"}

    @app.get(
        "/metrics",
        tags=["service"],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {}}}},
    )
    async def prometheus() -> Response:
        """Prometheus text format: requests, latency and batch-size histograms."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return app


def _decode(image, label: str, invert: str) -> np.ndarray:
    return images.preprocess(images.decode(image, label), invert)


async def _require_json(request: Request) -> None:
    """415 unless the body is declared JSON (FastAPI would answer 422 for a body it ignores)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type != "application/json":
        raise HTTPException(415, f"expected application/json, not {content_type or 'no content type'}")


def _direct(fn, on_batch):
    """Batching off: one model call per request, on the event loop like a plain endpoint."""

    async def call(x: np.ndarray) -> np.ndarray:
        y = fn(x)
        on_batch(len(x))
        return y

    return call


async def _images_response(x: np.ndarray, names: list | None, format: str | None, request: Request) -> Response:
    """[k,28,28] images as a PNG grid or JSON, per ``format`` or else the Accept header."""
    if format is None:
        format = "png" if "image/png" in request.headers.get("accept", "") else "list"
    if format == "png":
        return Response(await run_in_threadpool(images.to_png, x), media_type="image/png")
    if format == "list":
        items = [{"image": image.tolist()} for image in x]
    else:
        # one 28x28 PNG per image (no grid padding)
        items = [{"png": base64.b64encode(images.png_bytes(images.to_uint8(image))).decode()} for image in x]
    if names is not None:
        for item, name in zip(items, names, strict=True):
            item["filename"] = name
    return JSONResponse({"results": items})


def _add_error_handlers(app: FastAPI) -> None:
    """Every error answers ``{"error": "<one line>"}``."""

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError) -> Response:
        return JSONResponse({"error": str(exc)}, 400)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return JSONResponse({"error": _validation_message(exc)}, 422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def disconnected(request: Request, exc: ClientDisconnect) -> Response:
        # Nobody reads this; 499 (nginx's "client closed request") keeps it out of the 5xx count.
        return JSONResponse({"error": "client disconnected"}, 499)


def _validation_message(exc: RequestValidationError) -> str:
    """FastAPI's error list as one line: ``body.n: Input should be less than or equal to 1024``."""
    parts = []
    for err in exc.errors()[:5]:
        if err.get("type") == "json_invalid":
            parts.append(
                f"malformed JSON body: {err.get('ctx', {}).get('error', 'decode error')} at character {err['loc'][-1]}"
            )
            continue
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else err.get("msg", "invalid"))
    return "; ".join(parts) or "invalid request"


def _package_version() -> str:
    from fmnist import __version__

    return __version__


def create_app_from_env() -> FastAPI:
    """The app of one `fmnist serve --workers N` worker process (a uvicorn factory)."""
    bundle_dir, settings = from_env()
    return create_app(bundle_dir, settings)

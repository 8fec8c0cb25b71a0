"""``POST /v1/classify``, ``/v1/encode`` and ``/v1/reconstruct``: model answers for uploaded images.

Each takes multipart uploads in the field ``file`` (repeat it for several images), preprocessed
like the CLI; results come back in upload order."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from fmnist.runtime import images
from fmnist.serve.dependencies import read_uploads, serving
from fmnist.serve.direct import RequestOnlyRoute
from fmnist.serve.responses import images_response
from fmnist.serve.schemas import (
    ERRORS,
    PNG_RESPONSE,
    ClassifyResponse,
    EncodeResponse,
    ImageFormat,
    ImagesResponse,
    upload_body,
)
from fmnist.serve.settings import Settings


def router(settings: Settings) -> APIRouter:
    """The upload routes; their documented body allows up to ``settings.max_files`` images."""
    routes = APIRouter(tags=["model"])
    upload = {"methods": ["POST"], "responses": ERRORS, "openapi_extra": upload_body(settings.max_files)}
    fast = upload | {"route_class_override": RequestOnlyRoute}
    routes.add_api_route("/v1/classify", classify, response_model=ClassifyResponse, **fast)
    routes.add_api_route("/v1/encode", encode, response_model=EncodeResponse, **fast)
    images_out = upload | {"responses": ERRORS | PNG_RESPONSE}
    routes.add_api_route("/v1/reconstruct", reconstruct, response_model=ImagesResponse, **images_out)
    return routes


async def classify(request: Request) -> Response:
    """Classify one or more uploaded images; results in upload order."""
    uploads = await read_uploads(request)
    bundle = serving(request)
    probs = await bundle.batchers["classify"](uploads.images)  # [k,10]
    labels = probs.argmax(1)
    class_names = bundle.model.class_names
    results = [
        {
            "filename": name,
            "label": int(label),
            "class": class_names[label],
            "probability": float(p[label]),
            "probabilities": p.tolist(),
            "no_garment": images.is_blank(x),
        }
        for name, label, p, x in zip(uploads.names, labels, probs, uploads.images, strict=True)
    ]
    return JSONResponse({"results": results})


async def encode(request: Request) -> Response:
    """Latent vectors [d] of the uploaded images, in upload order."""
    uploads = await read_uploads(request)
    z = await serving(request).batchers["encode"](uploads.images)  # [k,d]
    results = [{"filename": n, "latent": row.tolist()} for n, row in zip(uploads.names, z, strict=True)]
    return JSONResponse({"latent_dim": int(z.shape[1]), "results": results})


async def reconstruct(
    request: Request,
    format: ImageFormat | None = Query(None, description="png, list or png_base64; default from Accept."),
) -> Response:
    """Autoencoder reconstructions of the uploaded images, in upload order."""
    uploads = await read_uploads(request)
    y = await serving(request).batchers["reconstruct"](uploads.images)  # [k,28,28]
    return await images_response(y, uploads.names, format, request)

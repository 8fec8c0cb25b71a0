"""``GET /healthz``, ``/readyz`` (the probes), ``/v1/model`` (the bundle's manifest) and ``/metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from fmnist.serve.dependencies import serving
from fmnist.serve.metrics import CONTENT_TYPE
from fmnist.serve.schemas import ErrorResponse

router = APIRouter()


@router.get("/healthz", tags=["service"])
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", tags=["service"], responses={503: {"model": ErrorResponse}})
async def readyz(request: Request) -> Response:
    """The bundle is loaded, verified and has answered a first call."""
    if not request.app.state.ready:
        return JSONResponse({"error": "model not loaded"}, 503)
    model = request.app.state.served.model
    return JSONResponse({"status": "ready", "provider": getattr(model, "provider", None)})


@router.get("/v1/model", tags=["model"])
async def model_info(request: Request) -> dict[str, Any]:
    """The bundle's manifest, without the file hashes, and ``bundle_id``: the id ``x-fmnist-bundle`` names."""
    bundle = serving(request)
    return {k: v for k, v in bundle.model.manifest.items() if k != "files"} | {"bundle_id": bundle.bundle_id}


@router.get("/metrics", tags=["service"], response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
async def prometheus(request: Request) -> Response:
    """Prometheus text format: requests, latency and batch-size histograms."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)

"""Images as the API returns them: one PNG grid, or JSON with nested lists or base64 PNGs."""

from __future__ import annotations

import base64

import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from fmnist.runtime import images


async def images_response(
    x: np.ndarray, names: list | None, format: str | None, request: Request, scale: int = 1
) -> Response:
    """[k,28,28] images as a PNG grid (each pixel ``scale`` x ``scale``) or JSON, per ``format``,
    else the Accept header."""
    if format is None:
        format = "png" if "image/png" in request.headers.get("accept", "") else "list"
    if format == "png":
        return Response(await run_in_threadpool(images.to_png, x, None, scale), media_type="image/png")
    if format == "list":
        items = [{"image": image.tolist()} for image in x]
    else:
        # one 28x28 PNG per image (no grid padding)
        items = [{"png": base64.b64encode(images.png_bytes(images.to_uint8(image))).decode()} for image in x]
    if names is not None:
        for item, name in zip(items, names, strict=True):
            item["filename"] = name
    return JSONResponse({"results": items})

"""What several routes need from a request: the uploaded images (awaited by the upload routes,
which skip FastAPI's parameter solving for speed; it works as a ``Depends`` too), a JSON content
type (a ``Depends`` of ``/v1/generate``), and the bundle in service."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from fmnist.errors import InputError
from fmnist.runtime import images
from fmnist.runtime.images import INVERT_CHOICES
from fmnist.serve.multipart import parse_multipart
from fmnist.serve.served import Served

# Images with more pixels are decoded in a worker thread so they cannot stall the event loop
# (a 17 kB PNG can hold 12000x12000 pixels and take seconds to decode).
_DECODE_INLINE_PIXELS = 256 * 256


@dataclass(frozen=True)
class Uploads:
    """The ``file`` fields of an upload request: their file names and images [k,28,28], in order."""

    names: list[str | None]
    images: np.ndarray


async def read_uploads(request: Request) -> Uploads:
    """The ``file`` uploads of a multipart request, decoded and preprocessed like the CLI's."""
    content_type = request.headers.get("content-type", "")
    kind = content_type.split(";")[0].strip().lower() or "no content type"  # case-insensitive (RFC 9110)
    if kind != "multipart/form-data":
        raise HTTPException(415, f"expected multipart/form-data with `file` fields, not {kind}")
    settings = request.app.state.settings
    files, fields = parse_multipart(await read_body(request), content_type, settings.max_files)
    if not files:
        raise InputError("no `file` field: upload images as multipart field `file`")
    query = request.query_params.get("invert") if request.scope["query_string"] else None  # parsed only if sent
    invert = _invert(query, fields.get("invert"))
    names, arrays = [], []
    for name, data in files:
        label = name or "upload"  # what error messages call it
        image = images.open_image(data, label)  # the header only
        images.check_size(image, label, settings.max_pixels)
        if image.width * image.height > _DECODE_INLINE_PIXELS:
            arrays.append(await run_in_threadpool(_decode, image, label, invert))
        else:
            arrays.append(_decode(image, label, invert))
        names.append(name)
    return Uploads(names, np.stack(arrays))


async def read_body(request: Request) -> bytes:
    """The whole body, as ``request.body()`` reads it, without its stream machinery (a fifth of the
    cost of reading a one-image upload, which comes in one message). The routes dispatched past the
    router (serve/direct.py) read their bodies with it; nothing reads a body twice."""
    chunks = []
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _invert(query: str | None, form: str | None) -> str:
    """``invert`` from the query or the form field: both checked when sent, the form field wins
    (``schemas.upload_body`` documents it)."""
    for source, value in (("query", query), ("form", form)):
        if value is not None and value not in INVERT_CHOICES:
            raise InputError(f"invert ({source}) must be auto, yes or no, not {value[:20]!r}")
    return form or query or "auto"


def _decode(image, label: str, invert: str) -> np.ndarray:
    return images.preprocess(images.decode(image, label), invert)


async def require_json(request: Request) -> None:
    """415 unless the body is declared JSON (FastAPI would answer 422 for a body it ignores)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type != "application/json":
        raise HTTPException(415, f"expected application/json, not {content_type or 'no content type'}")


def serving(request: Request) -> Served:
    """The bundle in service now, marked on the request for its ``x-fmnist-bundle`` header. Read it
    only right before using it: a rollout may replace it while a request awaits."""
    current = request.app.state.served
    request.state.bundle = current.header
    return current

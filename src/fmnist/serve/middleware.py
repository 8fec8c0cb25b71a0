"""ASGI middleware: the request body limit (413 before the body is read), and per request its
metrics, its ``x-request-id`` and ``x-fmnist-bundle`` headers and its JSON log line."""

import logging
import random
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fmnist.serve.logs import LOGGER, request_record

log = logging.getLogger(LOGGER)


class _BodyTooLarge(HTTPException):
    def __init__(self, limit: int, size: int | None = None) -> None:
        got = f"of {size} bytes " if size is not None else ""
        super().__init__(
            413,
            f"request body {got}is over the limit of {limit} bytes",
            headers={"connection": "close"},
        )


class BodyLimit:
    """413 for bodies over ``limit`` bytes: up front from Content-Length, without reading the
    body, else as soon as the streamed bytes (chunked uploads) pass the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope["headers"]:
            if name == b"content-length":
                size = int(value) if value.isdigit() else None
                if size is not None and size > self.limit:
                    return await _error(send, _BodyTooLarge(self.limit, size))
                break
        seen = 0
        limit = self.limit

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


def _serving(state: Any) -> str | None:
    served = state.served
    return served.header if served is not None else None


async def _error(send: Send, exc: HTTPException) -> None:
    body = JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)
    await body({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:  # pragma: no cover - a JSONResponse never reads
    return {"type": "http.disconnect"}


class Observe:
    """Count every request by route template and status and time it to its last byte; name on every
    answer the bundle that gave it (``x-fmnist-bundle``: the one a model route used, else the one in
    service) and the request (``x-request-id``: the client's, when usable, else a new one); with
    ``--log-format json``, log it as one object."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app, self.state, self.metrics = app, state, state.metrics
        self.log_requests = state.settings.log_format == "json"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500  # if the app raises before answering, ServerErrorMiddleware sends a 500
        request_id = _request_id(scope["headers"])
        bundle = None

        async def send_status(message: Message) -> None:
            nonlocal status, bundle
            if message["type"] == "http.response.start":
                status = message["status"]
                bundle = scope.get("state", {}).get("bundle") or _serving(self.state)
                headers = [*message.get("headers", ()), (b"x-request-id", request_id)]
                if bundle is not None:
                    headers.append((b"x-fmnist-bundle", bundle.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "(unmatched)")
            seconds = time.perf_counter() - start
            self.metrics.observe_request(route, scope["method"], status, seconds)
            if self.log_requests:
                request_record(log, _fields(scope, route, status, seconds, bundle, request_id))


def _request_id(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The request's ``x-request-id`` when it is 1-128 visible ASCII characters (it goes into logs
    and headers as it is), else 32 new random hex digits (as a uuid4's, without ``uuid4``'s cost,
    a system call per request: an id need not be unguessable)."""
    for name, value in headers:
        if name == b"x-request-id":
            if 0 < len(value) <= 128 and all(33 <= c <= 126 for c in value):
                return value
            break
    return b"%032x" % random.getrandbits(128)


def _fields(scope: Scope, route: str, status: int, seconds: float, bundle: str | None, request_id: bytes) -> dict:
    client = scope.get("client")
    return {
        "route": route,
        "path": scope["path"],
        "method": scope["method"],
        "status": status,
        "latency_ms": round(seconds * 1000, 3),
        "bundle": bundle.split(";")[0] if bundle else None,
        "request_id": request_id.decode(),
        "client": f"{client[0]}:{client[1]}" if client else None,
    }

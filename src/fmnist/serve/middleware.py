"""ASGI middleware: the request body limit (413 before the body is read) and the request metrics."""

import time

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fmnist.serve.metrics import Metrics


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


async def _error(send: Send, exc: HTTPException) -> None:
    body = JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)
    await body({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:  # pragma: no cover - a JSONResponse never reads
    return {"type": "http.disconnect"}


class Observe:
    """Count every request by route template and status and time it to its last byte."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500  # if the app raises before answering, ServerErrorMiddleware sends a 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            self.metrics.observe_request(
                getattr(route, "path", "(unmatched)"),
                scope["method"],
                status,
                time.perf_counter() - start,
            )

"""Every error answers ``{"error": "<one line>"}``: a 4xx for the client's, a 500 for a bug."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from fmnist.errors import InputError


async def input_error(request: Request, exc: InputError) -> Response:
    return JSONResponse({"error": str(exc)}, 400)


async def validation_error(request: Request, exc: RequestValidationError) -> Response:
    return JSONResponse({"error": validation_message(exc)}, 422)


async def http_error(request: Request, exc: HTTPException) -> Response:
    return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=exc.headers)


async def disconnected(request: Request, exc: ClientDisconnect) -> Response:
    # Nobody reads this; 499 (nginx's "client closed request") keeps it out of the 5xx count.
    return JSONResponse({"error": "client disconnected"}, 499)


async def internal_error(request: Request, exc: Exception) -> Response:
    # Starlette's ServerErrorMiddleware sends this, then re-raises for uvicorn to log the traceback.
    return JSONResponse(
        {"error": f"internal error ({exc.__class__.__name__}): the server's log has the traceback"}, 500
    )


def add_error_handlers(app: FastAPI) -> None:
    for exc, handler in (
        (Exception, internal_error),
        (InputError, input_error),
        (RequestValidationError, validation_error),
        (HTTPException, http_error),
        (ClientDisconnect, disconnected),
    ):
        app.add_exception_handler(exc, handler)


def validation_message(exc: RequestValidationError) -> str:
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

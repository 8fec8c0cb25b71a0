"""Request-only routes: declared to FastAPI like any other (the schema, ``/docs``, 405 for another
method), but a request for one goes straight to its endpoint, past FastAPI's router.

Their endpoints take the ``Request`` alone and read it themselves (the upload routes). On the
busiest route, ``/v1/classify``, FastAPI's parameter solving cost about a sixth of a request's CPU,
and its routing (every route matched in turn, the effective-route bookkeeping, two exit stacks per
request) about a seventh more; neither served the answer. Errors are answered by the app's own
exception handlers, as on the router's path.
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send


class RequestOnlyRoute(APIRoute):
    """A route whose endpoint is called with the ``Request`` alone (no parameter solving); a POST to
    its exact path is dispatched by ``DirectRoutes``."""

    def get_route_handler(self):
        return self.endpoint


class DirectRoutes:
    """The innermost middleware: a POST to the exact path of a ``RequestOnlyRoute`` of ``routes`` (those
    of a router included without a prefix) runs its endpoint here; everything else goes on to
    FastAPI's router.

    ``scope["route"]`` is set as the router sets it (the metrics count requests by its template). The
    app's exception handlers but the 500 one answer errors, as FastAPI's ``ExceptionMiddleware`` does
    on the router's path; anything else goes up to ``ServerErrorMiddleware`` (a 500, logged).
    """

    def __init__(self, app: ASGIApp, fastapi_app: Any, routes: list) -> None:
        self.app = app
        self.routes = {r.path: r for r in routes if isinstance(r, RequestOnlyRoute) and "POST" in r.methods}
        handlers = {k: v for k, v in fastapi_app.exception_handlers.items() if k not in (500, Exception)}
        self.answer = ExceptionMiddleware(self._endpoint, handlers=handlers, debug=fastapi_app.debug)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None or scope.get("root_path"):  # a root path: the router's matching strips it
            return await self.app(scope, receive, send)
        scope["route"], scope["endpoint"], scope["path_params"] = route, route.endpoint, {}
        await self.answer(scope, receive, send)

    @staticmethod
    async def _endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        response = await scope["endpoint"](Request(scope, receive, send))
        await response(scope, receive, send)

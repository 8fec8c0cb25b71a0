"""Routes dispatched directly: declared to FastAPI like any other (the schema, ``/docs``, 405 for
another method), but a request for one goes straight to its endpoint, past FastAPI's router.

Their endpoints take the ``Request`` alone and read it themselves (the upload routes, the Open
Inference Protocol's ``infer``). On the busiest route, ``/v1/classify``, FastAPI's parameter
solving cost about a sixth of a request's CPU, and its routing (every route tried in turn, the
effective-route bookkeeping, two exit stacks per request) about a seventh more; neither served the
answer. Errors are answered by the app's own exception handlers, as on the router's path.
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send


class RequestOnlyRoute(APIRoute):
    """A FastAPI route whose endpoint is called with the ``Request`` alone (no parameter solving)."""

    def get_route_handler(self):
        return self.endpoint


class DirectRoutes:
    """The innermost middleware: a request that one of ``routes`` matches fully (path and method,
    as the router matches them) runs that route's endpoint here, called with the ``Request`` alone;
    everything else goes on to FastAPI's router. ``routes``: ``RequestOnlyRoute``s and plain
    Starlette ``Route``s of functions, of routers included without a prefix; other FastAPI routes
    among them are left to the router (their endpoints need its parameter solving).

    ``scope["route"]`` is set as the router sets it (the metrics count requests by its template). The
    app's exception handlers but the 500 one answer errors, as FastAPI's ``ExceptionMiddleware`` does
    on the router's path; anything else goes up to ``ServerErrorMiddleware`` (a 500, logged).
    """

    def __init__(self, app: ASGIApp, fastapi_app: Any, routes: list[BaseRoute]) -> None:
        self.app = app
        self.routes = [r for r in routes if isinstance(r, RequestOnlyRoute) or not isinstance(r, APIRoute)]
        self.methods = {method for route in self.routes for method in route.methods}
        handlers = {k: v for k, v in fastapi_app.exception_handlers.items() if k not in (500, Exception)}
        self.answer = ExceptionMiddleware(self._endpoint, handlers=handlers, debug=fastapi_app.debug)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in self.methods:
            for route in self.routes:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child_scope)
                    scope["route"] = route
                    return await self.answer(scope, receive, send)
        await self.app(scope, receive, send)

    @staticmethod
    async def _endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        response = await scope["endpoint"](Request(scope, receive, send))
        await response(scope, receive, send)

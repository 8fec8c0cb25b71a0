"""The request path's shortcuts: request-only routes dispatched past FastAPI's router (answers,
errors, the route in the scope as the router sets it), and an answer's head written with its body."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Route

from fmnist.errors import InputError
from fmnist.serve.connections import HeadWithBody
from fmnist.serve.direct import DirectRoutes, RequestOnlyRoute
from fmnist.serve.error_handlers import add_error_handlers


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    if body == b"bad":
        raise InputError("bad input")
    if body == b"teapot":
        raise HTTPException(418, "short and stout")
    if body == b"bug":
        raise RuntimeError("a bug")
    return JSONResponse({"body": body.decode(), "route": request.scope["route"].path, **request.path_params})


async def with_query(request: Request, q: str = "") -> JSONResponse:  # needs FastAPI's parameter solving
    return JSONResponse({"q": q})


def app_and_direct() -> tuple[FastAPI, DirectRoutes, list]:
    app = FastAPI()
    add_error_handlers(app)
    routes = APIRouter()
    routes.add_api_route("/echo", echo, methods=["POST"], route_class_override=RequestOnlyRoute)
    routes.add_api_route("/query", with_query, methods=["POST"])
    routes.routes.append(Route("/items/{name}/echo", echo, methods=["POST"]))
    app.include_router(routes)
    passed_on = []

    async def router(scope, receive, send):  # stands for FastAPI's router
        passed_on.append((scope["method"], scope["path"]))

    return app, DirectRoutes(router, fastapi_app=app, routes=routes.routes), passed_on


def call(direct: DirectRoutes, method: str, path: str, body: bytes, root_path: str = "") -> list[dict]:
    scope = {"type": "http", "method": method, "path": path, "root_path": root_path, "headers": [],
             "query_string": b"", "state": {}}  # fmt: skip
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(direct(scope, receive, send))
    return sent


def test_a_post_to_a_request_only_route_runs_its_endpoint_with_the_route_in_the_scope():
    _, direct, passed_on = app_and_direct()
    sent = call(direct, "POST", "/echo", b"hi")
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == b'{"body":"hi","route":"/echo"}'
    sent = call(direct, "POST", "/items/x1/echo", b"hi")  # a plain Starlette route, with a path parameter
    assert sent[1]["body"] == b'{"body":"hi","route":"/items/{name}/echo","name":"x1"}'
    sent = call(direct, "POST", "/api/echo", b"hi", root_path="/api")  # the root path is not the route's
    assert sent[1]["body"] == b'{"body":"hi","route":"/echo"}'
    assert passed_on == []


def test_other_methods_paths_and_fastapi_routes_go_on_to_the_router():
    _, direct, passed_on = app_and_direct()
    assert call(direct, "GET", "/echo", b"") == []
    assert call(direct, "POST", "/echo/", b"") == []
    assert call(direct, "POST", "/other", b"") == []
    assert call(direct, "POST", "/query", b"") == []
    assert passed_on == [("GET", "/echo"), ("POST", "/echo/"), ("POST", "/other"), ("POST", "/query")]


def test_errors_are_answered_by_the_apps_handlers_and_bugs_go_up():
    _, direct, _ = app_and_direct()
    bad = call(direct, "POST", "/echo", b"bad")
    assert (bad[0]["status"], bad[1]["body"]) == (400, b'{"error":"bad input"}')
    teapot = call(direct, "POST", "/echo", b"teapot")
    assert (teapot[0]["status"], teapot[1]["body"]) == (418, b'{"error":"short and stout"}')
    try:
        call(direct, "POST", "/echo", b"bug")
    except RuntimeError as e:  # for ServerErrorMiddleware: a logged 500
        assert str(e) == "a bug"
    else:
        raise AssertionError("a bug in an endpoint was swallowed")


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info {name}"


class FakeCycle:
    response_started = False


def test_the_head_goes_out_with_the_body_in_one_write():
    async def run() -> list[bytes]:
        transport, cycle = FakeTransport(), FakeCycle()
        held = HeadWithBody(transport, cycle, asyncio.get_running_loop())
        held.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # before the answer starts: at once
        assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
        cycle.response_started = True
        held.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert len(transport.writes) == 1  # the head waits
        held.write(b"body")
        held.write(b"more")
        await asyncio.sleep(0)
        assert held.get_extra_info("peername") == "info peername"
        return transport.writes

    assert asyncio.run(run()) == [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\nbody", b"more"]


def test_a_head_without_body_bytes_goes_out_at_the_next_turn_or_on_close():
    async def run(close: bool) -> list[bytes]:
        transport, cycle = FakeTransport(), FakeCycle()
        held = HeadWithBody(transport, cycle, asyncio.get_running_loop())
        cycle.response_started = True
        held.write(b"HTTP/1.1 200 OK\r\n\r\n")  # an answer to HEAD, or a stream's first chunk not ready
        if close:
            held.close()
            assert transport.closed
        await asyncio.sleep(0)
        held.write(b"later")
        return transport.writes

    assert asyncio.run(run(False)) == [b"HTTP/1.1 200 OK\r\n\r\n", b"later"]
    assert asyncio.run(run(True))[0] == b"HTTP/1.1 200 OK\r\n\r\n"

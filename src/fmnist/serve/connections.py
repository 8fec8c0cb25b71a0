"""Connections that cannot hold the server: deadlines for a request's headers and body, a cap on
open connections, and a bounded drain on SIGTERM.

uvicorn closes idle keep-alive connections, but a connection that opens and then sends its
headers or its body slowly, or never (slowloris), is held forever; enough of them exhaust the
process's file descriptors and nobody gets an answer. ``GuardedProtocol`` is uvicorn's httptools
protocol with per-connection timers:

- headers: ``header_timeout`` seconds from the connection's opening (or its last answer) to the
  end of the next request's headers, and at most ``MAX_HEADER_BYTES`` of them;
- body: ``body_timeout`` seconds from the end of the headers to the end of the body;
- a connection past its deadline gets 408 (431 for oversized headers) and is closed; one that has
  sent nothing of a request is closed without an answer.

The cap (``Guard.max_connections``) sits below the open-file limit, so ``accept()`` never fails:
a connection past the cap gets 503 as soon as its headers are in (it has one second for them),
and one past ``Guard.ceiling``, the last descriptors, is closed at once.

On SIGTERM requests in flight finish and their connections close after the answer; a request still
sending its headers or body, or one whose bytes have arrived but not been read yet, gets
``shutdown_drain`` seconds to be answered (with ``connection: close``), then 503 and a closed
connection, so its handler sees a disconnect and ends normally instead of being cancelled with a
traceback. Only connections with nothing of a request on them are closed at once (uvicorn closes
every idle one, which resets a request that was on its way).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fmnist.errors import ConfigError
from fmnist.runtime.sessions import notice
from fmnist.serve.settings import ConnectionSettings, ServerSettings

log = logging.getLogger("fmnist.serve")

MAX_HEADER_BYTES = 64 * 1024  # a request line and headers larger than this get 431
RESERVED_FDS = 64  # descriptors kept for everything but connections: bundle files, logs, the event loop
OVER_CAP_HEADER_S = 1.0  # a connection past the cap has this long to send the headers of its 503
SHUTDOWN_GRACE_S = 1.0  # after the drain, how long handlers get to finish before uvicorn cancels them


@dataclass(frozen=True)
class Guard:
    """The limits one server process enforces (``ConnectionSettings`` fitted to its fd limit)."""

    header_timeout: float
    body_timeout: float
    shutdown_drain: float
    max_connections: int  # past it: 503
    ceiling: int  # past it: closed at once


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (workers inherit it); the new soft limit."""
    try:
        import resource
    except ImportError:  # not a Unix: no limit to raise, and select-free event loops have room
        return 65536
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # e.g. macOS caps the soft limit below an infinite hard one
            pass
    return soft


def fit_guard(settings: ConnectionSettings, fd_limit: int) -> Guard:
    """The cap and ceiling for an open-file limit of ``fd_limit``: the ceiling leaves RESERVED_FDS,
    and the cap a tenth of the rest, for connections past it to be accepted and answered 503."""
    ceiling = fd_limit - RESERVED_FDS
    room = ceiling - max(ceiling // 10, 1)
    if room < 16:
        raise ConfigError(f"the open-file limit ({fd_limit}) is too low to serve: raise it (ulimit -n) to 256 or more")
    cap = settings.max_connections
    if cap > room:
        notice(f"--max-connections {cap} is over what the open-file limit ({fd_limit}) allows; using {room}")
        cap = room
    return Guard(settings.header_timeout, settings.body_timeout, settings.shutdown_drain, cap, ceiling)


def uvicorn_options(server: ServerSettings, connections: ConnectionSettings) -> dict[str, Any]:
    """uvicorn's keyword arguments for these settings: the guarded protocol and the shutdown bound.

    Raises the open-file limit first (see ``raise_fd_limit``), as the cap depends on it.
    """
    guard = fit_guard(connections, raise_fd_limit())
    return dataclasses.asdict(server) | {
        "http": functools.partial(GuardedProtocol, guard=guard),
        "timeout_graceful_shutdown": guard.shutdown_drain + SHUTDOWN_GRACE_S,
    }


def _response(status: int, reason: bytes, message: str, extra: bytes = b"") -> bytes:
    body = json.dumps({"error": message}).encode()
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n%s\r\n%s"
        % (status, reason, len(body), extra, body)
    )


async def _busy(scope, receive, send) -> None:
    """The app of a connection past the cap: 503, and the connection closes."""
    body = json.dumps({"error": "server busy: too many open connections; retry later"}).encode()
    headers = [(b"content-type", b"application/json"), (b"connection", b"close"), (b"retry-after", b"1")]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body deadlines, a connection cap and a drain."""

    def __init__(self, *args: Any, guard: Guard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = guard
        self._timer = None
        self._waiting_for: str | None = None  # "headers", "body" or None (a request in flight)
        self._header_bytes = 0
        self._head_tail = b""  # the last bytes of a head still coming in
        self._request_begun = False  # some bytes of the awaited request have come
        self._draining = False  # the server is shutting down: the next answer closes the connection

    # --- timers

    def _arm(self, waiting_for: str, seconds: float) -> None:
        self._disarm()
        self._waiting_for = waiting_for
        self._timer = self.loop.call_later(seconds, self._deadline)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waiting_for = None

    def _deadline(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._waiting_for == "body" and self.pipeline:  # queued behind a request in flight: not its fault
            self._arm("body", self.guard.body_timeout)
            return
        if self._waiting_for == "headers":
            self._close(408, b"Request Timeout", f"request headers not received within {self.guard.header_timeout:g} s")
        else:
            self._close(408, b"Request Timeout", f"request body not received within {self.guard.body_timeout:g} s")

    def _close(self, status: int, reason: bytes, message: str, extra: bytes = b"") -> None:
        """Answer ``status`` when the awaited request has begun and has no answer yet, then close.

        A handler whose request is cut short sees a disconnect once uvicorn notices the close, and
        its own answer goes nowhere."""
        if self.cycle is not None and not self.cycle.response_complete:  # its body, or in the drain
            answer = not self.cycle.response_started
        else:  # its headers (waiting for them, or in the drain)
            answer = self._request_begun and self._waiting_for in ("headers", "drain")
        self._disarm()
        if answer:
            self.transport.write(_response(status, reason, message, extra))
        self.transport.close()

    # --- uvicorn's protocol hooks

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        open_now = len(self.connections)
        if open_now > self.guard.ceiling:  # the last descriptors: no room even to answer
            transport.abort()
            return
        if open_now > self.guard.max_connections:
            self.app = _busy  # on_headers_complete runs self.app
            self._arm("headers", min(self.guard.header_timeout, OVER_CAP_HEADER_S))
        else:
            self._arm("headers", self.guard.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._waiting_for in ("headers", "drain"):
            self._request_begun = True
            if not self._head_fits(data):
                return
        super().data_received(data)

    def _head_fits(self, data: bytes) -> bool:
        """Count the bytes of ``data`` up to the end of the request's head; past MAX_HEADER_BYTES,
        431 and close. Counted before parsing, so the chunk that completes the head counts too."""
        joined = self._head_tail + data if self._head_tail else data  # the end may straddle two chunks
        end = joined.find(b"\r\n\r\n")
        self._header_bytes += len(data) if end < 0 else end + 4 - len(self._head_tail)
        self._head_tail = joined[-3:] if end < 0 else b""
        if self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
            self._close(431, b"Request Header Fields Too Large", f"request headers over {MAX_HEADER_BYTES} bytes")
        return not self.transport.is_closing()

    def on_headers_complete(self) -> None:
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not previous:  # a new request (not an upgrade): its answer leaves in one write
            self.cycle.transport = HeadWithBody(self.transport, self.cycle, self.loop)
        self._header_bytes = 0
        if self._draining:  # answered, then closed; the drain's deadline stays armed
            if self.cycle is not None:
                self.cycle.keep_alive = False
            return
        self._arm("body", self.guard.body_timeout)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._waiting_for in ("body", "drain"):  # the request is in flight now: it finishes
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self._waiting_for != "body":
            self._request_begun = False
            self._arm("headers", self.guard.header_timeout)

    def shutdown(self) -> None:
        """SIGTERM: a request in flight finishes; one begun or waiting unread gets the drain, then 503;
        a connection with nothing of a request on it closes now."""
        self._draining = True
        in_flight = self.cycle is not None and not self.cycle.response_complete
        if in_flight and self._waiting_for != "body":
            super().shutdown()  # its answer closes the connection
            return
        if in_flight or self._request_begun or _unread(self.transport):
            if self.cycle is not None:
                self.cycle.keep_alive = False
            self._disarm()
            self._waiting_for = "drain"
            self._timer = self.loop.call_later(self.guard.shutdown_drain, self._drained)
            return
        super().shutdown()

    def _drained(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self._close(503, b"Service Unavailable", "server shutting down", b"retry-after: 1\r\n")


class HeadWithBody:
    """The connection's transport as one request's cycle sees it: the head of the answer (the status
    line and headers uvicorn writes when the app starts its response) is held and goes out with the
    first bytes of the body, in one write: one send() and one TCP segment where uvicorn makes two,
    and a client woken once. A head still held at the event loop's next turn (a streamed body whose
    first chunk is not ready, an answer to HEAD) goes out alone."""

    __slots__ = ("_transport", "_cycle", "_loop", "_head", "_head_seen")

    def __init__(self, transport: Any, cycle: Any, loop: Any) -> None:
        self._transport, self._cycle, self._loop = transport, cycle, loop
        self._head: bytes | None = None
        self._head_seen = False

    def write(self, data: bytes) -> None:
        if self._head is not None:
            data, self._head = self._head + data, None
        elif self._cycle.response_started and not self._head_seen:  # not a 100 Continue: the head
            self._head, self._head_seen = data, True
            self._loop.call_soon(self._flush)
            return
        self._transport.write(data)

    def _flush(self) -> None:
        if self._head is not None and not self._transport.is_closing():
            self._transport.write(self._head)
        self._head = None

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, ...: the transport's
        return getattr(self._transport, name)


def _unread(transport) -> bool:
    """Bytes wait in the connection's socket that the event loop has not read yet (a request that
    arrived with the signal): a close now would answer them with a reset."""
    sock = transport.get_extra_info("socket")
    if sock is None or transport.is_closing() or not hasattr(socket, "MSG_DONTWAIT"):
        return False
    try:
        with socket.socket(fileno=os.dup(sock.fileno())) as peek:
            return bool(peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except OSError:  # nothing there (EAGAIN), or the socket is gone
        return False

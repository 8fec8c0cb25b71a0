"""How ``fmnist serve`` runs its processes: the listening socket, one server process or a parent with
``--workers N``, and what SIGTERM, SIGINT and SIGHUP do to them.

The socket is bound here, before any worker starts, so a port already taken is one line and exit
code 2 whatever the worker count. Every server process is a ``DrainingServer``: uvicorn's server
whose shutdown also answers the connections that were queued in the socket's accept backlog when
the signal came (closing a listening socket resets them) and, through
:class:`fmnist.serve.connections.GuardedProtocol`, requests whose bytes had arrived but were not
read yet.

With ``--workers N`` the parent (``Supervisor``) owns no connection: on SIGTERM or SIGINT it closes
its copy of the socket, so that the last worker to stop is the one that empties the backlog, sends
SIGTERM to every worker and waits for each to finish its drain; SIGHUP is passed on to every worker
(each reloads its bundle) and restarts none. A worker that dies on its own is replaced; one that
fails at start-up stops the server. uvicorn's own supervisor does neither of the first two: it
restarts every worker on SIGHUP, and its SIGTERM loses requests queued in the shared backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from fmnist.errors import ConfigError

# The listening socket travels to the spawned workers (as uvicorn's own supervisor sends it).
multiprocessing.allow_connection_pickling()

log = logging.getLogger("uvicorn.error")  # where uvicorn's own start and stop lines go

# Past the drain and the handlers' grace, how long the parent waits for a worker before killing it.
WORKER_EXIT_MARGIN_S = 10.0
POLL_S = 0.2  # the parent's signal and liveness checks
FORWARDED = tuple(getattr(signal, name) for name in ("SIGHUP",) if hasattr(signal, name))  # none on Windows
STOPPING = (signal.SIGTERM, signal.SIGINT)


def listen(host: str, port: int) -> socket.socket:
    """The bound listening socket for ``host:port``; a port in use is a ConfigError naming it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is already in use: stop the process holding it, "
                "or choose another with --port (0 picks a free one)"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror or e}): check --host and --port") from None
    sock.set_inheritable(True)
    return sock


def announce(sock: socket.socket, workers: int) -> None:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    log.info("Uvicorn running on http://%s:%d (%d worker%s; Press CTRL+C to quit)", shown, port, workers,
             "" if workers == 1 else "s")  # fmt: skip


class DrainingServer(uvicorn.Server):
    """uvicorn's server whose shutdown first accepts what waits in the listening socket's backlog."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # A duplicate keeps each listening socket open past uvicorn's close, so the connections in
        # its backlog are taken and answered rather than reset.
        held = [sock.dup() for sock in sockets or []]
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        try:
            for sock in held:
                await self._accept_backlog(sock)
        finally:
            for sock in held:
                sock.close()
        await super().shutdown(sockets)  # shuts every connection down, the accepted ones too

    async def _accept_backlog(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        config = self.config
        listener.setblocking(False)
        # At most a full backlog: clients that keep reconnecting must not hold the shutdown open.
        for _ in range(config.backlog):
            try:
                conn, _ = listener.accept()
            except OSError:  # nothing queued (EAGAIN), or the socket is gone
                return
            conn.setblocking(False)
            await loop.connect_accepted_socket(
                lambda: config.http_protocol_class(
                    config=config, server_state=self.server_state, app_state=self.lifespan.state
                ),
                sock=conn,
            )


def serve_one(config: uvicorn.Config, sock: socket.socket) -> None:
    """Serve in this process until SIGTERM or SIGINT; exit code 3 when the app fails to start."""
    server = DrainingServer(config)
    announce(sock, 1)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def _worker(config: uvicorn.Config, sock: socket.socket) -> None:  # pragma: no cover - in the child
    """One worker process: SIGHUP ignored until the app installs its handler (a reload, not an exit)."""
    for sig in FORWARDED:
        signal.signal(sig, signal.SIG_IGN)
    config.configure_logging()
    server = DrainingServer(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


class Supervisor:
    """``workers`` processes serving ``sock``; SIGTERM/SIGINT drain them all, SIGHUP reaches them all."""

    def __init__(self, config: uvicorn.Config, sock: socket.socket, workers: int) -> None:
        self.config, self.sock, self.count = config, sock, workers
        self.processes: list[multiprocessing.process.BaseProcess] = []
        self.signals: list[int] = []
        self.stopping = False
        self.exit_code = 0

    def _start(self) -> multiprocessing.process.BaseProcess:
        process = multiprocessing.get_context("spawn").Process(
            target=_worker, args=(self.config, self.sock), name="fmnist-worker"
        )
        process.start()
        return process

    def run(self) -> int:
        """Start the workers and supervise them; the exit code (3 when a worker failed to start)."""
        previous = {sig: signal.signal(sig, self._queue) for sig in (*STOPPING, *FORWARDED)}
        try:
            announce(self.sock, self.count)
            log.info("Started parent process [%d]", os.getpid())
            self.processes = [self._start() for _ in range(self.count)]
            while not self.stopping:
                time.sleep(POLL_S)
                self._handle_signals()
                self._replace_dead()
            self._stop_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.info("Stopping parent process [%d]", os.getpid())
        return self.exit_code

    def _queue(self, sig: int, frame) -> None:
        self.signals.append(sig)

    def _handle_signals(self) -> None:
        while self.signals:
            sig = self.signals.pop(0)
            if sig in STOPPING:
                log.info("Received %s: draining %d worker(s)", signal.Signals(sig).name, len(self.processes))
                self.stopping = True
                return
            pids = [p.pid for p in self.processes if p.is_alive()]
            for pid in pids:
                _signal(pid, sig)
            log.info("Passed %s on to workers %s", signal.Signals(sig).name, pids)

    def _replace_dead(self) -> None:
        for i, process in enumerate(self.processes):
            if process.is_alive() or self.stopping:
                continue
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                log.error("Worker [%d] failed to start; stopping the server", process.pid)
                self.stopping, self.exit_code = True, STARTUP_FAILURE
                return
            log.warning("Worker [%d] ended (exit code %s); starting another", process.pid, process.exitcode)
            self.processes[i] = self._start()

    def _stop_all(self) -> None:
        """Close the parent's copy of the socket, SIGTERM every worker, wait for each drain to end."""
        self.sock.close()
        for process in self.processes:
            if process.is_alive():
                _signal(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.timeout_graceful_shutdown + WORKER_EXIT_MARGIN_S
        for process in self.processes:
            process.join(max(deadline - time.monotonic(), 0))
            if process.is_alive():
                log.error("Worker [%d] did not finish its drain in time; killing it", process.pid)
                process.kill()
                process.join()


def _signal(pid: int | None, sig: int) -> None:
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
        os.kill(pid, sig)


def run_server(app: Any, sock: socket.socket, workers: int = 1, **options: Any) -> None:
    """``uvicorn.run`` on a bound socket: the app in this process, or (``app`` an import string)
    ``workers`` processes under a ``Supervisor``. Returns once the server has drained."""
    config = uvicorn.Config(app, workers=workers, **options)
    if workers == 1:
        serve_one(config, sock)
        return
    code = Supervisor(config, sock, workers).run()
    if code:
        sys.exit(code)

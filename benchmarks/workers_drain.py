"""SIGTERM in the middle of a burst: every request sent before the signal gets an answer.

Starts ``fmnist serve --workers N`` (and, for comparison, one process), fires ``--requests``
classify requests from ``--concurrency`` clients, and sends SIGTERM to the server (the parent
process) once ``--signal-at`` of them are answered. Each request is counted by what happened to it
and by whether it was written before the signal:

- ``200`` / ``503``: answered (503 is the drain's answer to a request still sending its body);
- ``other``: another status;
- ``refused``: the connection was refused, so nothing was sent (possible only after the signal);
- ``lost``: sent, then the connection closed without an answer;
- ``reset``: sent, then the connection was reset.

The bar: ``lost`` and ``reset`` are 0 for the requests sent before the signal, and the server exits
by itself. Clients keep going after the signal (their requests count apart). ``--connections``
``keep-alive`` reuses each client's connection (answers with ``connection: close`` make it
reconnect); ``fresh`` opens one per request, so requests also wait in the listening socket's
backlog when the signal comes. ``tests/integration/test_workers_drain.py`` runs the same burst.

Usage::

    PYTHONPATH=src python benchmarks/workers_drain.py [--artifacts DIR] [--workers 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.serve_load import classify_request, free_port, start_process  # noqa: E402

OUTCOMES = ("200", "503", "other", "refused", "lost", "reset")


@dataclass
class Tally:
    """Requests by outcome, before and after the signal."""

    before: collections.Counter = field(default_factory=collections.Counter)
    after: collections.Counter = field(default_factory=collections.Counter)
    signalled: bool = False

    def count(self, outcome: str, sent_before: bool) -> None:
        (self.before if sent_before else self.after)[outcome] += 1

    @property
    def failed_before(self) -> int:
        """Requests sent before the signal that got no answer."""
        return self.before["lost"] + self.before["reset"] + self.before["refused"]

    def line(self) -> str:
        def fmt(c):
            return " ".join(f"{k}={c[k]}" for k in OUTCOMES if c[k]) or "none"

        return f"before the signal: {fmt(self.before)} | after: {fmt(self.after)}"


async def _answer(reader: asyncio.StreamReader) -> tuple[str, bool]:
    """(outcome, the server closes the connection) of one HTTP response."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"^content-length: *(\d+)", head, re.I | re.M).group(1))
    await reader.readexactly(length)
    status = head[9:12].decode()
    closes = re.search(rb"^connection: *close", head, re.I | re.M) is not None
    return (status if status in ("200", "503") else "other"), closes


async def burst(port: int, total: int, concurrency: int, signal_at: int, on_signal, fresh: bool) -> Tally:
    """``total`` classify requests from ``concurrency`` clients; ``on_signal()`` once ``signal_at``
    are answered. Every request is tallied (see the module docstring)."""
    request = classify_request(port)
    tally = Tally()
    issued = answered = 0

    async def client() -> None:
        nonlocal issued, answered
        writer = reader = None
        while issued < total:
            issued += 1
            if writer is None:
                before = not tally.signalled
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    tally.count("refused", before)
                    continue
            before = not tally.signalled
            writer.write(request)
            try:
                outcome, closes = await _answer(reader)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, AttributeError):
                outcome, closes = "lost", True
            except OSError:
                outcome, closes = "reset", True
            tally.count(outcome, before)
            if outcome in ("200", "503"):
                answered += 1
                if answered == signal_at:
                    tally.signalled = True
                    on_signal()
            if closes or fresh:
                writer.close()
                writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return tally


def start(bundle: str | None, workers: int, port: int, extra: tuple[str, ...] = (), log=subprocess.PIPE):
    """``fmnist serve`` in a new session (so a killpg takes every worker), ready to answer; its
    output goes to ``log`` (a pipe, or an open file)."""
    cmd = [sys.executable, "-m", "fmnist", "serve", "--port", str(port), "--workers", str(workers),
           "--provider", "cpu", "--log-level", "warning", *extra]  # fmt: skip
    if bundle:
        cmd += ["--artifacts", bundle]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    url = f"http://127.0.0.1:{port}/readyz"
    return start_process(cmd, env, url, "fmnist serve", 120, stdout=log, stderr=subprocess.STDOUT)


def kill(proc: subprocess.Popen) -> None:
    """The whole process group, whatever state it is in."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def sigterm_under_burst(
    bundle: str | None, workers: int, total: int, concurrency: int, signal_at: int, fresh: bool
) -> tuple[Tally, int | None, str]:
    """(the tally, the server's exit status or None if it hung, its output) of one run."""
    port = free_port()
    proc = start(bundle, workers, port)
    try:
        tally = asyncio.run(burst(port, total, concurrency, signal_at, lambda: proc.send_signal(signal.SIGTERM), fresh))
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            code = None
    finally:
        kill(proc)
    return tally, code, proc.stdout.read().decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", default=None, help="bundle (default: the bundled one)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--signal-at", type=int, default=1500, help="answered requests before SIGTERM")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"# fmnist serve: SIGTERM after {args.signal_at} of {args.requests} classify requests, "
          f"{args.concurrency} clients; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(a shared, busy machine: counts matter here, not times)")  # fmt: skip
    failures = 0
    for round_ in range(args.rounds):
        for workers in (args.workers, 1):
            for fresh in (False, True):
                tally, code, output = sigterm_under_burst(
                    args.artifacts, workers, args.requests, args.concurrency, args.signal_at, fresh
                )
                mode = "fresh connections" if fresh else "keep-alive"
                hung = "" if code is not None else " HUNG"
                print(f"round {round_ + 1} workers={workers} {mode:17s} exit={code}{hung} {tally.line()}")
                failures += tally.failed_before + (code is None) + ("Traceback" in output)
                if "Traceback" in output:
                    print(output[-2000:])
    print(f"verdict: {'PASS' if failures == 0 else 'FAIL'} ({failures} request(s) sent before SIGTERM unanswered)")


if __name__ == "__main__":
    main()

"""The process model of ``fmnist serve``: SIGTERM under a burst loses no request sent before it, with
``--workers 2`` as with one process; SIGHUP to the parent reaches every worker and restarts none; a
port in use is one line and exit code 2.

The burst is ``benchmarks/workers_drain.py``'s; only counts are asserted, never times, so a loaded
machine makes the test slower, not flaky.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from serve_fakes import free_port

from benchmarks.workers_drain import burst, kill, start

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("fresh", [False, True], ids=["keep-alive", "fresh-connections"])
def test_sigterm_under_a_burst_answers_every_request_sent_before_it(toy_bundle, fresh):
    """Requests sent after the signal are not held to it: one written on a keep-alive connection
    as the server closes it idle is lost in any HTTP/1.1 server (clients retry those)."""
    port = free_port()
    proc = start(str(toy_bundle), 2, port)
    try:
        tally = asyncio.run(burst(port, 3000, 100, 1500, lambda: proc.send_signal(signal.SIGTERM), fresh))
        code = proc.wait(120)
        output = proc.stdout.read().decode()
    finally:
        kill(proc)
    assert tally.signalled
    sent_before = sum(tally.before.values())
    assert sent_before >= 1500
    assert tally.failed_before == 0, tally.line()
    assert tally.before["200"] + tally.before["503"] == sent_before, tally.line()
    assert code == 0, output
    assert "Traceback" not in output and "ERROR" not in output, output


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (the workers, and multiprocessing's resource tracker)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(pid):
            found.add(int(stat.parent.name))
    return found


def test_sighup_reaches_every_worker_and_restarts_none(toy_bundle, tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = start(str(toy_bundle), 2, port, ("--log-level", "info"), log=out)
    try:
        before = children(proc.pid)
        assert len(before) >= 2
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while "Passed SIGHUP" not in log.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.2)
        for _ in range(4):
            r = httpx.get(f"http://127.0.0.1:{port}/readyz", headers={"connection": "close"})
            assert r.status_code == 200
        assert children(proc.pid) == before  # the same workers: none restarted
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        kill(proc)
    text = log.read_text()
    passed = re.search(r"Passed SIGHUP on to workers \[(\d+), (\d+)\]", text)
    assert passed and {int(pid) for pid in passed.groups()} <= before, text
    assert "Traceback" not in text, text


def test_a_worker_that_dies_is_replaced(toy_bundle):
    port = free_port()
    proc = start(str(toy_bundle), 2, port)
    try:
        workers = {pid for pid in children(proc.pid) if "multiprocessing.spawn" in _cmdline(pid)}
        assert len(workers) == 2
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while True:
            now = {pid for pid in children(proc.pid) if "multiprocessing.spawn" in _cmdline(pid)}
            if len(now) == 2 and victim not in now:
                break
            assert time.monotonic() < deadline and proc.poll() is None, now
            time.sleep(0.2)
        for _ in range(4):  # new connections: both workers take some
            r = httpx.get(f"http://127.0.0.1:{port}/readyz", headers={"connection": "close"}, timeout=30)
            assert r.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        kill(proc)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_line_and_exit_code_2(toy_bundle, workers):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "fmnist", "serve", "--artifacts", str(toy_bundle), "--port", str(port),
             "--workers", workers, "--provider", "cpu"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"fmnist: error: port {port} on 127.0.0.1 is already in use: stop the process holding it, "
        "or choose another with --port (0 picks a free one)"
    ]

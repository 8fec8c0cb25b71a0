"""The processes tests start (servers, databases, CLI runs), and how they are stopped whatever happens.

Start one with :func:`start` (or :func:`running`, :func:`serve` for ``fmnist serve``): it gets its own
session and process group, so :func:`stop` ends its workers with it (``os.killpg``), SIGKILL after a
grace period. Every process a test run starts, through this module or not, inherits ``RUN_ENV`` in its
environment, naming the pytest process that owns it; that finds them wherever they end up (another
group, an orphan of a killed parent). tests/conftest.py uses it so that:

- a test that leaves a process running fails at teardown, and the process is stopped (:func:`left_by`);
- an interrupted run (Ctrl-C, SIGTERM, SIGHUP) stops what is left at its end (:func:`end_run`);
- the next run stops the processes, and removes the scratch folder, of a run that was killed
  outright (SIGKILL: no teardown ran) (:func:`reap_stale`).

Deadlines are failure bounds, stretched on a loaded machine (:func:`scaled`): wait on conditions
(:func:`wait_for`, :func:`wait_ready`), never sleep for a fixed time and hope.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

RUN_ENV = "PYTEST_FMNIST_RUN"  # not FMNIST_*: tests that start a clean environment drop those
PATIENCE_ENV = "FMNIST_TEST_PATIENCE"  # a factor on every deadline, for a machine slower than its load says
# A pytest-xdist worker's controller, beside RUN_ENV (which stays the worker's own PID-START, as a
# run's always is: an older checkout's test run on the same machine takes it for a live run)
CONTROLLER_ENV = "PYTEST_FMNIST_CONTROLLER"
WORKER = "+"  # joins them in the name this module gives a worker's run: CONTROLLER+WORKER
CONTROLLER_FILE = "controller"  # in a worker's scratch folder: its controller's run
# Runs see only the processes of runs in their own scope: the hygiene tests' inner runs get one of
# their own, so that no other test run on the machine reaps what they leave before they look.
SCOPE_ENV = "PYTEST_FMNIST_SCOPE"


# --------------------------------------------------------------------------- /proc


def _stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (state, ppid, pgrp, ...), or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # the command name, in parentheses, may hold spaces


def alive(pid: int) -> bool:
    """Running or sleeping: neither gone nor a zombie waiting for its parent."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def run_id(pid: int) -> str | None:
    """PID and start time: names one process, whatever reuses its number later."""
    fields = _stat(pid)
    return None if fields is None else f"{pid}-{fields[19]}"


def _pids() -> Iterator[int]:
    return (int(name) for name in os.listdir("/proc") if name.isdigit())


def _read(path: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return b""
    try:
        return os.read(fd, 1 << 20)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _variable(environ: bytes, name: str) -> str | None:
    key = f"\0{name}=".encode()
    at = environ.find(key)
    return None if at < 0 else environ[at + len(key) :].split(b"\0", 1)[0].decode()


def marked() -> dict[int, str]:
    """Every live process carrying ``RUN_ENV`` in this run's scope (``SCOPE_ENV``), other than this
    one: pid -> the run that started it (CONTROLLER+WORKER for a pytest-xdist worker's)."""
    found, scope = {}, os.environ.get(SCOPE_ENV, "")
    for pid in _pids():
        environ = b"\0" + _read(f"/proc/{pid}/environ")
        run = _variable(environ, RUN_ENV)
        if run is not None and (_variable(environ, SCOPE_ENV) or "") == scope and pid != os.getpid() and alive(pid):
            controller = _variable(environ, CONTROLLER_ENV)
            found[pid] = f"{controller}{WORKER}{run}" if controller else run
    return found


def group(pgid: int) -> list[int]:
    """The live members of process group ``pgid``."""
    return [pid for pid in _pids() if (f := _stat(pid)) and f[2] == str(pgid) and f[0] not in ("Z", "X")]


def children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid``."""
    return [p for p in _pids() if (f := _stat(p)) and f[1] == str(pid) and f[0] not in ("Z", "X")]


def command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


# --------------------------------------------------------------------------- deadlines


def scaled(seconds: float) -> float:
    """A failure bound of ``seconds`` on an idle machine, stretched by the load (runnable tasks per
    core) and by ``$FMNIST_TEST_PATIENCE``: a busy machine makes a test slower, never failed."""
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    return seconds * max(1.0, load) * float(os.environ.get(PATIENCE_ENV) or 1)


def wait_for(condition: Callable[[], object], seconds: float, what: str, proc: subprocess.Popen | None = None):
    """Poll ``condition`` until it returns something true (which is returned); fail naming ``what``
    after ``scaled(seconds)``, or as soon as ``proc`` exits, with its output."""
    deadline = time.monotonic() + scaled(seconds)
    while True:
        if result := condition():
            return result
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited ({proc.returncode}) first:\n{output(proc)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {scaled(seconds):.0f} s")
        time.sleep(0.05)


def gone(pids: list[int], seconds: float) -> list[int]:
    """Wait up to ``seconds`` for these processes to end; those still alive."""
    deadline = time.monotonic() + seconds
    while (left := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def terminate(pids: list[int], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL for what is left after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        pids = gone(pids, grace)


# --------------------------------------------------------------------------- one process group


def start(cmd: list, *, env: dict | None = None, **popen) -> subprocess.Popen:
    """``cmd`` in a new session and process group; output piped (stderr into stdout) unless given."""
    env = dict(os.environ if env is None else env)
    for name in (RUN_ENV, CONTROLLER_ENV, SCOPE_ENV):
        if name in os.environ:
            env[name] = os.environ[name]
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, **popen}
    return subprocess.Popen([str(c) for c in cmd], env=env, start_new_session=True, **popen)


def output(proc: subprocess.Popen, timeout: float = 10.0) -> str:
    """What an exited process printed (its piped stdout), once."""
    if proc.stdout is None or proc.stdout.closed:
        return ""
    try:
        out = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:  # a grandchild outside the group holds the pipe
        return "(output not read: the pipe is still open)"
    return out.decode(errors="replace") if isinstance(out, bytes) else out or ""


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 15.0) -> str:
    """Send ``sig`` to the whole process group, SIGKILL it after ``scaled(grace)`` seconds, and wait
    until no member is left; what it printed. Safe to call again, and on an exited process."""
    pgid = proc.pid  # start_new_session: the leader's pid is the group's id
    if proc.poll() is None or group(pgid):  # else the number may belong to another group by now
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        if left := gone(group(pgid), scaled(grace)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            gone(left, scaled(grace))
    proc.wait()
    return output(proc)


@contextlib.contextmanager
def running(cmd: list, **kwargs) -> Iterator[subprocess.Popen]:
    """:func:`start`, and :func:`stop` whatever happens in the block."""
    proc = start(cmd, **kwargs)
    try:
        yield proc
    finally:
        stop(proc)


# --------------------------------------------------------------------------- fmnist serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(proc: subprocess.Popen, url: str, seconds: float = 60) -> None:
    """Poll ``url``/readyz until it answers 200."""
    import httpx

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/readyz", headers={"connection": "close"}).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, seconds, f"{url} ready", proc)


@dataclass(frozen=True)
class Server:
    proc: subprocess.Popen
    url: str
    port: int


def serve_command(bundle: Path, port: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "fmnist", "serve", "--artifacts", str(bundle), "--port", str(port),
            "--provider", "cpu", *args]  # fmt: skip


@contextlib.contextmanager
def serve(bundle: Path, *args: str, env: dict | None = None, **popen) -> Iterator[Server]:
    """``fmnist serve --artifacts BUNDLE ARGS`` of this checkout on a free port, ready; stopped (its
    whole group) whatever happens."""
    port = free_port()
    env = {**(os.environ if env is None else env), "PYTHONPATH": os.pathsep.join(sys.path)}
    with running(serve_command(bundle, port, *args), env=env, **popen) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_ready(proc, url)
        yield Server(proc, url, port)


# --------------------------------------------------------------------------- a test run


@functools.cache  # one folder for the whole run, whatever a test later does to $TMPDIR
def registry() -> Path:
    """The per-user folder holding one scratch folder per test run, named by the run."""
    folder = Path(tempfile.gettempdir()) / f"fmnist-tests-{os.getuid()}"
    folder.mkdir(mode=0o711, exist_ok=True)  # others may pass through (a server run as another user)
    if folder.stat().st_uid != os.getuid():
        raise RuntimeError(f"{folder} belongs to another user: set TMPDIR to a folder of yours")
    return folder


def begin_run(controller: str | None = None) -> str:
    """Mark this process, and so everything it starts, as one test run; its scratch folder. A
    pytest-xdist worker's run is named inside its ``controller``'s: the controller's :func:`end_run`
    then stops what a worker that was killed left running, and the worker's processes are stale
    once either of them is gone."""
    me = run_id(os.getpid())
    os.environ[RUN_ENV] = me
    folder = registry() / me
    folder.mkdir(mode=0o711, exist_ok=True)
    if controller:
        os.environ[CONTROLLER_ENV] = controller
        (folder / CONTROLLER_FILE).write_text(controller)
    else:  # a pytest that a worker's test starts is a run of its own
        os.environ.pop(CONTROLLER_ENV, None)
    return me


def current() -> str:
    """This process's run, as :func:`marked` names it."""
    controller, me = os.environ.get(CONTROLLER_ENV), os.environ.get(RUN_ENV, "")
    return f"{controller}{WORKER}{me}" if controller else me


def _folder_run(folder: Path) -> str:
    """The run whose scratch folder this is, as :func:`marked` names it."""
    try:
        return f"{(folder / CONTROLLER_FILE).read_text()}{WORKER}{folder.name}"
    except OSError:
        return folder.name


def scratch(prefix: str) -> Path:
    """A new folder in this run's scratch folder, which the next run removes if this one cannot."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=registry() / os.environ[RUN_ENV]))


def _within(run: str, me: str) -> bool:
    """``run`` is ``me`` or one of its pytest-xdist workers."""
    return run == me or run.startswith(me + WORKER)


def own_processes() -> list[int]:
    me = current()
    return [pid for pid, run in marked().items() if me and _within(run, me)]


def left_by(before: set[int], grace: float = 10.0) -> list[str]:
    """Processes of this run started since ``before`` and still running after ``grace`` seconds,
    stopped; their commands."""
    new = gone([p for p in own_processes() if p not in before], scaled(grace))
    commands = [f"{pid}: {command(pid)}" for pid in new]
    terminate(new)
    return commands


def end_run() -> list[str]:
    """Stop every process of this run still running, remove its scratch folder; their commands."""
    left = left_by(set(), grace=0)
    me = current()
    for folder in registry().iterdir():
        if _within(_folder_run(folder), me):
            shutil.rmtree(folder, ignore_errors=True)
    return left


def _owner_alive(run: str) -> bool:
    """The pytest process named by ``run`` is alive, and so is its controller if it is a worker."""
    for owner in run.split(WORKER):
        pid = owner.split("-", 1)[0]
        if not (pid.isdigit() and run_id(int(pid)) == owner):
            return False
    return True


def reap_stale() -> list[str]:
    """Stop the processes of runs whose pytest is gone, and remove their scratch folders; their commands."""
    stale = [pid for pid, run in marked().items() if not _owner_alive(run)]
    commands = [f"{pid}: {command(pid)}" for pid in stale]
    terminate(stale)
    for folder in registry().iterdir():
        if not _owner_alive(_folder_run(folder)):
            shutil.rmtree(folder, ignore_errors=True)
    return commands

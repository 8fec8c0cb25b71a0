"""A test run leaves nothing running: interrupted (SIGTERM, SIGINT), killed outright (the next run
cleans up), or with a test that forgets a process. Each case runs pytest on a small test file in a
subprocess, with this suite's conftest, and looks at the processes afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests import servers
from tests.conftest import ROOT

# A server and its worker (one process group, as `fmnist serve --workers 2`), and a process started
# without tests/servers.py; their pids and the run's scratch folder go to $HYGIENE_OUT; then it waits.
HOLDS = """
import json, os, subprocess, sys, time
from tests import servers

SLEEP = [sys.executable, "-c", "import time; time.sleep(600)"]
PARENT = [sys.executable, "-c", "import subprocess, sys, time; subprocess.Popen(sys.argv[1:]); time.sleep(600)", *SLEEP]

def test_holds_processes():
    with servers.running(PARENT) as proc:
        worker = servers.wait_for(lambda: [p for p in servers.group(proc.pid) if p != proc.pid], 60, "the worker")
        plain = subprocess.Popen(SLEEP)
        scratch = servers.scratch("db-")
        pids = [proc.pid, *worker, plain.pid]
        out = os.environ["HYGIENE_OUT"]
        with open(out + ".tmp", "w") as f:
            json.dump({"pids": pids, "scratch": str(scratch)}, f)
        os.rename(out + ".tmp", out)
        time.sleep(600)
"""

# As an in-process `fmnist train` does: it takes SIGINT/SIGTERM while it trains, stops, and returns.
TRAINS = """
import os, time
from fmnist.errors import Interrupted
from fmnist.training.signals import stop_on_signals

def test_trains_in_process():
    try:
        with stop_on_signals():
            open(os.environ["HYGIENE_OUT"], "w").close()
            time.sleep(600)
    except Interrupted:
        pass

def test_after_it():
    open(os.environ["HYGIENE_OUT"] + ".after", "w").close()
"""

LEAKS = """
import subprocess, sys

def test_forgets_a_process():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
"""


def pytest_run(tmp_path: Path, source: str, *args: str, **env: str) -> subprocess.Popen:
    """pytest ``ARGS`` on ``source`` with this suite's conftest, in its own process group."""
    test = tmp_path / f"test_inner_{len(list(tmp_path.glob('test_inner_*')))}.py"
    test.write_text(textwrap.dedent(source))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
           "-c", tmp_path / "pytest.ini", "--rootdir", tmp_path, *args, test]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), servers.SCOPE_ENV: str(tmp_path), **env}
    return servers.start(cmd, cwd=ROOT, env=env, preexec_fn=interruptible)


def interruptible() -> None:
    """SIGINT as a terminal gives it: a run started in the background of a script inherits it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finish(run: subprocess.Popen) -> str:
    """Its output once it has ended by itself (stopped if it has not, after a deadline)."""
    try:
        run.wait(servers.scaled(120))
    finally:
        log = servers.stop(run)
    return log


def started(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, list[int], Path]:
    """The HOLDS run (pytest ``ARGS``), once its processes run: it, their pids, its scratch folder."""
    out = tmp_path / "held.json"
    run = pytest_run(tmp_path, HOLDS, *args, HYGIENE_OUT=str(out))
    servers.wait_for(out.exists, 120, "the inner test's processes", run)
    held = json.loads(out.read_text())
    assert all(servers.alive(p) for p in held["pids"]) and Path(held["scratch"]).is_dir()
    return run, held["pids"], Path(held["scratch"])


PARALLEL = ("-n", "2")  # pytest-xdist's workers, as the suite runs: the processes are a worker's


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "args"),
    [(signal.SIGTERM, ()), (signal.SIGINT, ()), (signal.SIGTERM, PARALLEL)],
    ids=["SIGTERM", "SIGINT", "SIGTERM-parallel"],
)
def test_an_interrupted_run_stops_every_process_it_started(tmp_path, sig, args):
    run, pids, scratch = started(tmp_path, *args)
    try:
        run.send_signal(sig)  # to pytest alone, as `kill` does: the servers are in other groups
        run.wait(servers.scaled(60))
        log = servers.output(run)
        assert run.returncode == 2, log  # pytest's "interrupted"
        assert "KeyboardInterrupt" in log or "stopped by" in log, log
        assert [p for p in pids if servers.alive(p)] == [], log
        assert not scratch.parent.exists(), "the run's scratch folder outlived it"
    finally:
        servers.stop(run)
        servers.terminate(pids)


@pytest.mark.slow
def test_a_signal_taken_by_in_process_training_still_ends_the_run(tmp_path):
    out = tmp_path / "training"
    run = pytest_run(tmp_path, TRAINS, HYGIENE_OUT=str(out))
    servers.wait_for(out.exists, 120, "the inner test training", run)
    run.send_signal(signal.SIGTERM)
    log = finish(run)
    assert run.returncode == 2 and "stopped by SIGTERM" in log, log
    assert not Path(f"{out}.after").exists(), "the run went on after the signal"


@pytest.mark.slow
@pytest.mark.parametrize("args", [(), PARALLEL], ids=["serial", "parallel"])
def test_a_run_killed_outright_is_cleaned_up_by_the_next(tmp_path, args):
    run, pids, scratch = started(tmp_path, *args)
    try:
        workers = servers.children(run.pid) if args else []  # pytest-xdist's, killed with it
        assert len(workers) == (2 if args else 0), workers
        for pid in (run.pid, *workers):
            os.kill(pid, signal.SIGKILL)
        run.wait()
        assert all(servers.alive(p) for p in pids)  # nothing ran after SIGKILL
        servers.reap_stale()  # as any other test run on the machine starts: not in the killed run's scope
        assert all(servers.alive(p) for p in pids)
        after = pytest_run(tmp_path, "def test_nothing():\n    pass\n", *args)
        log = finish(after)
        assert after.returncode == 0, log
        assert "stopped, left by an earlier test run that was killed" in log, log
        assert servers.gone(pids, servers.scaled(10)) == []
        assert not scratch.parent.exists()
    finally:
        servers.terminate(pids)


@pytest.mark.slow
def test_what_a_killed_worker_left_is_stopped_by_its_controller(tmp_path):
    """A pytest-xdist worker killed outright (as the out-of-memory killer does) runs no teardown: the
    controller, whose run names the worker's, stops its processes at the end."""
    run, pids, scratch = started(tmp_path, *PARALLEL)
    try:
        os.kill(int(scratch.parent.name.split("-")[0]), signal.SIGKILL)  # the worker's run: PID-START
        log = finish(run)
        assert run.returncode == 1 and "crashed" in log, log
        assert servers.gone(pids, servers.scaled(10)) == [], log
        assert not scratch.parent.exists(), "the worker's scratch folder outlived the run"
    finally:
        servers.terminate(pids)


@pytest.mark.slow
def test_a_test_that_leaves_a_process_running_fails_and_the_process_is_stopped(tmp_path):
    run = pytest_run(tmp_path, LEAKS)
    log = finish(run)
    assert run.returncode == 1, log
    assert "left running, now stopped" in log and "time.sleep(600)" in log, log
    assert "1 passed, 1 error" in log, log


def test_stop_ends_the_whole_group_even_when_the_leader_ignores_sigterm():
    stubborn = "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    stubborn += "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); time.sleep(600)"
    proc = servers.start([sys.executable, "-c", stubborn])
    members = servers.wait_for(lambda: len(servers.group(proc.pid)) == 2 and servers.group(proc.pid), 60, "2 members")
    servers.stop(proc, grace=1)
    assert proc.returncode == -signal.SIGKILL
    assert [p for p in members if servers.alive(p)] == []

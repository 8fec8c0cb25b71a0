"""Shared fixtures, and the run's process hygiene. Nothing here downloads: the data comes from
$FMNIST_DATA or ../shared/data.

Hygiene (tests/servers.py): SIGTERM and SIGHUP end a run like Ctrl-C, so every teardown runs; a test
that leaves a process running errors at its teardown; what is left at the end is stopped; a run
killed outright (SIGKILL) has its processes and scratch folder removed by the next run. The same
holds for a run on pytest-xdist's workers (pyproject.toml's addopts): each worker is a run named
inside its controller's, which stops at its end what a worker left.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests import servers

# small, fast training settings shared by the tests that train on the real data
TINY = ["--limit-train", "2000", "--batch-size", "100", "--lr", "0.01", "--no-progress"]

ROOT = Path(__file__).resolve().parents[1]
# Absolute, and exported so: tests that change folder, and the processes they start elsewhere,
# find the data that a relative FMNIST_DATA (the README's ../shared/data) named from the start folder.
DATA_DIR = Path(os.environ.get("FMNIST_DATA") or ROOT.parent / "shared" / "data").resolve()
os.environ["FMNIST_DATA"] = str(DATA_DIR)


_interrupted = False
_session = None


def _stop_after_this_test(signum: int) -> None:
    if _session is not None:
        _session.shouldstop = f"stopped by {signal.Signals(signum).name}"


def _interrupt(signum, frame):
    """A signal that ends the run as Ctrl-C does: pytest then tears every fixture down. Once: a
    second one during the teardowns is ignored, so they finish (SIGKILL still ends the run)."""
    _stop_after_this_test(signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


def _watch_training_signals() -> None:
    """An in-process `fmnist train` or `tune` takes SIGINT and SIGTERM while it trains: it stops and
    exits 130/143, which fails the test but not the run. Such a signal now also ends the run after it."""
    try:
        from fmnist.training import signals
    except ImportError:  # the base install: no training
        return
    take = signals._raise

    def _raise(signum, frame):
        _stop_after_this_test(signum)
        take(signum, frame)

    signals._raise = _raise


def share_the_cores(workers: int) -> None:
    """Each pytest-xdist worker, and what it starts, gets its share of the cores for the math
    libraries' threads (they read these when loaded, so the controller sets them before the workers
    start). With two threads each, two workers' OpenBLAS threads spin waiting for the core the other
    holds: an eigh of numpy's took 10 times the CPU time on the loaded machine."""
    threads = str(max(1, len(os.sched_getaffinity(0)) // workers))
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, threads)


def pytest_configure(config):
    worker = hasattr(config, "workerinput")  # a pytest-xdist worker (not a pytest a test starts)
    servers.begin_run(controller=os.environ.get(servers.RUN_ENV) if worker else None)
    if getattr(config.option, "dist", "no") != "no" and not worker:
        share_the_cores(len(config.option.tx))
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is not signal.SIG_IGN:  # as under nohup: left ignored
                signal.signal(sig, _interrupt)


def pytest_sessionstart(session):
    global _session
    _session = session
    _watch_training_signals()
    for line in servers.reap_stale():
        print(f"stopped, left by an earlier test run that was killed: {line}")


def pytest_keyboard_interrupt(excinfo):
    global _interrupted
    _interrupted = True  # the teardowns that follow stop what they started; end_run the rest


@pytest.hookimpl(trylast=True)  # after pytest's own, which tears the fixtures down
def pytest_sessionfinish(session):
    for line in servers.end_run():
        print(f"stopped at the end of the run, left by a fixture: {line}")


# This file's fixtures of the real data and of models trained on it: a test using one, directly or
# through another fixture, is slow (a module may define its own, cheap `data_dir`).
REAL_DATA = ("data_dir", "tiny_run", "tiny_bundle")


def uses_real_data(item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    found = (info.name2fixturedefs.get(name) for name in REAL_DATA)
    return any(defs and defs[-1].func.__module__ == __name__ for defs in found)


# The longest modules first (benchmarks/results/2026-12-02/suite_full.txt): pytest-xdist's workers
# take a module at a time in collection order, so a long one taken last would keep one worker busy
# alone at the end. test_export, the first user of the trained fixtures, starts while the other
# worker takes test_training_processes (which trains its own); their later users find them made.
LONGEST_FIRST = (
    "test_training_processes",
    "test_export",
    "test_default_bundle",
    "test_postgres",
    "test_tuning",
    "test_hygiene",
    "test_deploy",
    "test_base_install",
    "test_inference_trained",
    "test_training",
    "test_report",
    "test_run_safety",
    "test_server",
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if uses_real_data(item):
            item.add_marker(pytest.mark.slow)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: a module's order kept


@pytest.fixture(autouse=True)
def no_process_left():
    """A test stops every process it starts (whole groups: a server's workers too), whatever happens."""
    before = set(servers.own_processes())
    yield
    if _interrupted:
        return
    if left := servers.left_by(before):
        pytest.fail("left running, now stopped:\n" + "\n".join(left), pytrace=False)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    raw = DATA_DIR / "FashionMNIST" / "raw"
    if not (raw / "t10k-images-idx3-ubyte").exists():
        pytest.fail(f"Fashion-MNIST not found under {raw}: set FMNIST_DATA to the folder holding FashionMNIST/raw")
    return DATA_DIR


def made_once(request, tmp_path_factory, name: str, make) -> Path:
    """The folder ``name`` that ``make(folder)`` fills, made once per test run: under pytest-xdist
    the first worker to ask makes it in the folder all workers share, the others wait for it (a
    file lock) and take it as it is. Tests read it; one that changes it copies it first."""
    base = tmp_path_factory.getbasetemp()
    if hasattr(request.config, "workerinput"):
        base = base.parent  # the controller's: each worker's own is a folder in it
    folder, done = base / name, base / f"{name}.done"
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a worker that failed to make it left this
            make(folder)
            done.touch()
    return folder


def cli(*args) -> None:
    """``fmnist ARGS`` in this process, which must succeed."""
    from fmnist.cli.app import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="session")
def tiny_run(request, tmp_path_factory, data_dir) -> Path:
    """AE, head, classifier and VAE trained once for 3 epochs on 2,000 images, in the smallest
    architecture (the seed's: a fraction of the default's cost in training, export and evaluation)."""
    args = ["train", "--model", "all", "--arch", "seed", "--data-dir", data_dir, "--epochs", "3"]
    args += ["--iw-samples", "4", *TINY]
    return made_once(request, tmp_path_factory, "tiny-run", lambda run: cli(*args, "--run-dir", run))


@pytest.fixture(scope="session")
def tiny_bundle(request, tmp_path_factory, tiny_run, data_dir) -> Path:
    """The tiny run exported once (small KDE)."""
    args = ["export", "--run-dir", tiny_run, "--data-dir", data_dir, "--kde-points", "400"]
    return made_once(request, tmp_path_factory, "tiny-bundle", lambda out: cli(*args, "--out", out))


@pytest.fixture(scope="session")
def toy_bundle(tmp_path_factory) -> Path:
    """The fixed-weight toy bundle of tests/toybundle.py (no torch, no training); read-only."""
    from tests.toybundle import build_toy_bundle

    return build_toy_bundle(tmp_path_factory.mktemp("toy") / "bundle")


@pytest.fixture
def no_default_data(monkeypatch, tmp_path):
    """Neither $FMNIST_DATA nor the per-user cache holds the data: only a folder a run recorded does."""
    monkeypatch.delenv("FMNIST_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))

"""A study shared through a real PostgreSQL server: a worker killed mid-trial, workers started together.

The server is a throwaway one (initdb in a temporary folder, a free port on 127.0.0.1); it runs as
the ``postgres`` user when the tests run as root, since the server refuses root.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fmnist.cli.app import app
from tests import servers

TRAIN_TINY = ["--limit-train", "300", "--batch-size", "100", "--epochs", "1", "--no-progress"]
TINY = [*TRAIN_TINY, "--no-plots"]
pytestmark = pytest.mark.slow


def postgres_bindir() -> Path | None:
    if shutil.which("pg_config") is None:
        return None
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
    folder = Path(out.stdout.strip())
    return folder if (folder / "initdb").is_file() and (folder / "postgres").is_file() else None


@dataclass(frozen=True)
class Server:
    port: int

    def connect(self, database: str = "postgres"):
        import psycopg

        return psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname={database}", autocommit=True)

    def database(self, name: str) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        with self.connect() as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def accepts(self) -> bool:
        try:
            self.connect().close()
        except Exception:  # not started yet
            return False
        return True


@pytest.fixture(scope="module")
def postgres():
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL not installed: no initdb and postgres in `pg_config --bindir` (apt install postgresql)")
    pytest.importorskip("psycopg", reason='the PostgreSQL driver is an extra: pip install "fmnist[postgres]"')
    as_server: list[str] = []
    # Not pytest's tmp_path: the server's user must reach it. A run killed outright leaves it to the next.
    folder = servers.scratch("pg-")
    if os.geteuid() == 0:
        try:
            shutil.chown(folder, "postgres")
        except LookupError:
            pytest.skip("running as root and there is no `postgres` user to run the server as")
        as_server = ["runuser", "-u", "postgres", "--"]
    data, server = folder / "data", Server(servers.free_port())
    initdb = [*as_server, bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync"]
    subprocess.run(initdb, check=True, capture_output=True, timeout=servers.scaled(120))
    options = ["-c", "listen_addresses=127.0.0.1", "-p", server.port, "-k", folder, "-c", "fsync=off"]
    with open(folder / "log", "wb") as log:  # a file, not a pipe nobody reads while the tests run
        proc = servers.start([*as_server, bindir / "postgres", "-D", data, *options], stdout=log)
    try:
        servers.wait_for(server.accepts, 60, "PostgreSQL accepting connections", proc)
        yield server
    finally:
        servers.stop(proc, signal.SIGINT)  # PostgreSQL's fast shutdown: clients disconnected
        shutil.rmtree(folder, ignore_errors=True)


def tune(url: str, run_dir: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "fmnist.cli", "tune", "ae", "--storage", url, "--run-dir", str(run_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return servers.start([*cmd, *TINY, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=servers.scaled(timeout))
    except subprocess.TimeoutExpired:
        servers.stop(proc, signal.SIGKILL)
        pytest.fail(f"fmnist tune still running after {servers.scaled(timeout):.0f} s")


@contextlib.contextmanager
def stopped_at_the_end(procs: list[subprocess.Popen]):
    """The processes, each stopped (its whole group) when the block ends, whatever happens."""
    try:
        yield procs
    finally:
        for proc in procs:
            servers.stop(proc, signal.SIGKILL)


def running_trial_of(server: Server, database: str, pid: int) -> int | None:
    """A RUNNING trial of process ``pid`` whose heartbeat has started: the process is mid-trial."""
    query = (
        "SELECT t.number FROM trials t "
        "JOIN trial_user_attributes a ON a.trial_id = t.trial_id AND a.key = 'worker' "
        "JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
        "WHERE t.state = 'RUNNING' AND a.value_json LIKE %s"
    )
    try:
        with server.connect(database) as c:
            row = c.execute(query, (f'%:{pid}"',)).fetchone()
    except Exception:  # tables not created yet
        return None
    return row[0] if row else None


def test_a_worker_killed_mid_trial_is_marked_failed_and_the_study_goes_on(postgres, data_dir, tmp_path):
    import optuna
    from optuna.trial import TrialState

    url = postgres.database("killed")
    args = ["--trials", "2", "--epochs", "2", "--heartbeat", "1"]
    with stopped_at_the_end([tune(url, tmp_path / f"w{i}", *args) for i in range(2)]) as (victim, survivor):

        def mid_trial() -> list[int] | None:
            number = running_trial_of(postgres, "killed", victim.pid)
            return None if number is None else [number]

        (killed,) = servers.wait_for(mid_trial, 240, "the first worker mid-trial", victim)
        servers.stop(victim, signal.SIGKILL)
        _, err = finish(survivor)
        assert survivor.returncode == 0, err[-3000:]
    time.sleep(2.5)  # past the killed trial's grace period (2 heartbeats)
    with stopped_at_the_end([tune(url, tmp_path / "w2", "--trials", "1", "--heartbeat", "1")]) as (rerun,):
        _, err = finish(rerun)
        assert rerun.returncode == 0, err[-3000:]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = optuna.load_study(study_name="fmnist-ae", storage=url).trials
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # unique, none skipped
    assert trials[killed].state == TrialState.FAIL
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) >= 3 and {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.FAIL}
    assert len({t.user_attrs["worker"] for t in complete}) >= 2  # both live workers ran trials

    best = optuna.load_study(study_name="fmnist-ae", storage=url).best_trial.params
    args = ["train", "--model", "ae", "--from-study", "--storage", url, "--run-dir", tmp_path / "best"]
    result = CliRunner().invoke(app, [str(a) for a in [*args, "--data-dir", data_dir, *TRAIN_TINY]])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "best" / "config.json").read_text())
    assert {k: config[k] for k in best} == best


def test_workers_started_together_on_a_fresh_database_all_start(postgres, tmp_path):
    """Table and study creation raced: "relation already exists" or "type already exists" and exit 2."""
    for attempt in range(2):
        url = postgres.database(f"together{attempt}")
        with stopped_at_the_end([tune(url, tmp_path / f"{attempt}-{i}", "--trials", "0") for i in range(3)]) as workers:
            for worker in workers:
                _, err = finish(worker)
                assert worker.returncode == 0, err[-3000:]


def _open_when_all_are_ready(barrier, url: str) -> None:
    from fmnist.training import tuning

    barrier.wait()
    tuning.open_shared_study(url, "fmnist-ae", "ae", {}, heartbeat=5)  # an error: exit code 1, traceback on stderr


@pytest.mark.skipif(
    not os.environ.get("FMNIST_RACE_TEST"),
    reason="8 processes importing the training stack at once take minutes on 2 cores; FMNIST_RACE_TEST=1 runs it",
)
def test_processes_opening_one_fresh_study_at_once_all_get_it(postgres):
    """The same race far tighter than whole commands can start: started processes, released together
    by a barrier (without the creation lock about half of such rounds of 8 failed). Spawned, not
    forked: a fork of this process, which has run torch's thread pools, can hang in the child."""
    import multiprocessing

    import optuna

    ctx = multiprocessing.get_context("spawn")
    for attempt in range(5):
        url = postgres.database(f"forked{attempt}")
        barrier = ctx.Barrier(8)
        workers = [ctx.Process(target=_open_when_all_are_ready, args=(barrier, url)) for _ in range(8)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(120)
        assert [w.exitcode for w in workers] == [0] * 8
        assert optuna.get_all_study_names(url) == ["fmnist-ae"]

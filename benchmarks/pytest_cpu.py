"""A pytest plugin for benchmarks/suite_time.sh: each test's CPU time (this process and the children
it waited for) and wall time, per pytest-xdist worker, written to ``$SUITE_CPU.WORKER``; the script
sums them per worker (do the workers end together?) and lists the costliest tests by CPU."""

from __future__ import annotations

import os
import resource
import time

import pytest

_rows: list[tuple[float, float, str]] = []


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    cpu, wall = _cpu(), time.monotonic()
    yield
    _rows.append((_cpu() - cpu, time.monotonic() - wall, item.nodeid))


def pytest_sessionfinish(session):
    out = os.environ.get("SUITE_CPU")
    if out and _rows:
        with open(f"{out}.{os.environ.get('PYTEST_XDIST_WORKER', 'main')}", "w") as f:
            f.writelines(f"{cpu:8.2f} {wall:8.2f} {nodeid}\n" for cpu, wall, nodeid in _rows)

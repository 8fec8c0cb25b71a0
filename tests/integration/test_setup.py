"""The README's set-up commands as written: `FMNIST_DATA=../shared/data pytest` from the checkout."""

from __future__ import annotations

import os
import sys

import pytest

from tests import servers
from tests.conftest import ROOT


@pytest.mark.slow
def test_a_relative_fmnist_data_reaches_tests_that_change_folder(data_dir):
    """The relative path once meant nothing to the tests that run in a temporary folder."""
    test = "tests/integration/test_default_bundle.py::test_generate_and_classify_work_right_after_installing"
    env = {**os.environ, "FMNIST_DATA": os.path.relpath(data_dir, ROOT)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test]
    with servers.running(cmd, cwd=ROOT, env=env) as run:
        out = run.communicate(timeout=servers.scaled(600))[0].decode()
    assert run.returncode == 0, out[-3000:]
    assert "1 passed" in out

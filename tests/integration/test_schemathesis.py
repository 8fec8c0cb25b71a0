"""The OpenAPI schema and the handlers agree: schemathesis (``st run --checks all``) against a real
``fmnist serve`` on the toy bundle, a bounded number of examples per route.

What it checks, both ways: a request the schema calls valid is answered 2xx (so the schema is no
looser than the handlers), one it calls invalid is refused with a 4xx (so the handlers are no
looser than the schema), never a 5xx, and every answer's status, content type and body are the
documented ones. The only exclusions are the two written down, with their reasons, in
``schemathesis_hooks.py``: an uploaded ``file`` is made a real PNG in valid cases (a schema cannot
say "an image"), and integral floats in valid JSON bodies are sent as integers (JSON Schema's
``integer`` includes ``1e3``, which the server's strict types refuse on purpose).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency: pip install -e '.[dev]'")

from test_connections import start_serve, stop  # noqa: E402

EXAMPLES = 20  # per route and phase; about 250 requests in all


@pytest.mark.slow
def test_schemathesis_finds_no_disagreement_between_schema_and_server(toy_bundle, tmp_path):
    # small limits keep the answers small (a 1,024-image JSON list takes seconds to check)
    proc, url = start_serve(toy_bundle, "--max-generate", "16", "--max-files", "4")
    try:
        here = Path(__file__).parent
        r = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json", "--checks", "all",
             "--max-examples", str(EXAMPLES), "--seed", "1", "--workers", "1", "--phases", "examples,coverage,fuzzing",
             "--generation-database", "none", "--no-color", "--report-dir", str(tmp_path / "report"),
             "--request-timeout", "10"],
            env={**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
                 "PYTHONPATH": os.pathsep.join([str(here), *sys.path])},
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip
    finally:
        log = stop(proc)
    assert r.returncode == 0, r.stdout[-8000:] + r.stderr[-2000:]
    assert "Traceback" not in log, log

"""The packages keep to their jobs: the runtime runs a bundle and knows nothing of the server, the
command line or the training stack."""

import subprocess
import sys

RUNTIME = ("bundle", "evaluation", "images", "sampling", "sessions")


def test_the_runtime_imports_neither_the_server_nor_the_cli_nor_the_training_stack():
    imports = "; ".join(f"import fmnist.runtime.{m}" for m in RUNTIME)
    probe = (
        f"import sys; {imports}\n"
        "bad = sorted({m.split('.')[0] if not m.startswith('fmnist.') else '.'.join(m.split('.')[:2])\n"
        "              for m in sys.modules}\n"
        "             & {'fmnist.serve', 'fmnist.cli', 'fmnist.training', 'fmnist.export', 'fmnist.analysis',\n"
        "                'torch', 'lightning', 'sklearn', 'joblib', 'optuna', 'matplotlib', 'typer', 'click',\n"
        "                'fastapi', 'pydantic', 'starlette', 'prometheus_client'})\n"
        "print(bad)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_serve_settings_do_not_import_fastapi():
    """``fmnist --help`` builds the serve flags from the settings: that must not load the server."""
    probe = "import sys, fmnist.serve.settings; print(sorted(m for m in ('fastapi', 'numpy') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"

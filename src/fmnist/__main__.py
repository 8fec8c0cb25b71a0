"""The ``fmnist`` command (and ``python -m fmnist``).

The inference commands go straight to their argparse parser, so they never import typer (whose
per-parameter set-up costs more than the model run): ``fmnist classify one.png`` then starts in
about a quarter of a second. Everything else goes to the Typer app in :mod:`fmnist.cli.app`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import NoReturn


def main(argv: list[str] | None = None) -> None:
    """Run the command in ``argv`` (None: this process's arguments, as the ``fmnist`` script and
    ``python -m fmnist`` call it; an inference command then ends the process itself, _exit_now)."""
    program = argv is None
    argv = sys.argv[1:] if argv is None else argv
    from fmnist.cli.inference import COMMANDS, run

    if argv and argv[0] in COMMANDS:
        code = run(argv)
        if program:
            _exit_now(code)
        sys.exit(code)
    from fmnist.cli.app import app

    app(argv, prog_name="fmnist")


def _exit_now(code: int) -> NoReturn:
    """End the process with ``code`` once its output is flushed, without the interpreter's teardown:
    freeing onnxruntime's sessions and thread pools, numpy and every module one by one takes 40-60 ms,
    a fifth of an inference command's cold start, for memory the system takes back at once. An
    inference command leaves nothing to finish (its files are closed, its decoding processes ended)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader gone away, a closed stream
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()

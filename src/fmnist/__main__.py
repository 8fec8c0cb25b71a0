"""The ``fmnist`` command (and ``python -m fmnist``).

The inference commands go straight to their argparse parser, so they never import typer (whose
per-parameter set-up costs more than the model run): ``fmnist classify one.png`` then starts in
about a quarter of a second. Everything else goes to the Typer app in :mod:`fmnist.cli.app`.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    from fmnist.cli.inference import COMMANDS, run

    if argv and argv[0] in COMMANDS:
        sys.exit(run(argv))
    from fmnist.cli.app import app

    app(argv, prog_name="fmnist")


if __name__ == "__main__":
    main()

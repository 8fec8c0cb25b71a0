"""CONTRACT STUB (issue 7): ``fmnist serve`` (FastAPI under uvicorn).

``register(app)`` adds the ``serve`` command to the Typer app.
"""

import typer


def register(app: typer.Typer) -> None:
    pass

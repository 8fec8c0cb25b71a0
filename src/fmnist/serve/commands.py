"""CONTRACT STUB (issue 6): the inference commands generate, classify, reconstruct, encode, evaluate.

``register(app)`` adds them to the Typer app; numpy/onnxruntime/Pillow are imported inside the
command bodies so ``fmnist --help`` stays fast.
"""

import typer


def register(app: typer.Typer) -> None:
    pass

"""The ``fmnist`` command line: ``app`` (the Typer app: training, tuning, export, report),
``inference`` (the argparse inference commands) and ``serve`` (``fmnist serve``).

Nothing is imported here: ``fmnist classify`` reaches ``fmnist.cli.inference`` without typer.
"""

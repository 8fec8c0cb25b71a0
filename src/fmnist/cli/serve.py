"""``fmnist serve``: the HTTP API (:mod:`fmnist.serve.app`) under uvicorn.

Every flag but ``--artifacts`` is made from a field of ``Settings``, ``ServerSettings`` or
``ConnectionSettings``, so a
new setting is a new flag and cannot be dropped on the way to the app. uvicorn, FastAPI and
onnxruntime are imported inside the command so ``fmnist --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from fmnist.cli.flags import Command, flag_parameters
from fmnist.errors import report_errors
from fmnist.serve.settings import ConnectionSettings, ServerSettings, Settings

# The rich help panel of each dataclass's flags.
PANELS = {Settings: "App", ServerSettings: "Server", ConnectionSettings: "Connections"}

Artifacts = Annotated[
    Path | None,
    typer.Option(
        "--artifacts",
        help=r"Bundle folder. \[default: $FMNIST_ARTIFACTS, else ./artifacts if it holds a bundle, else the "
        "bundled one]",
    ),
]


def pick(cls: type, values: dict[str, Any]) -> Any:
    """An instance of ``cls`` from the flag values that are its fields (validated by ``cls``)."""
    return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)})


def serve(artifacts: Path | None = None, **values: Any) -> None:
    """Serve the bundle over HTTP: classify, encode, reconstruct, generate, health and metrics.

    API schema at /openapi.json and /docs once running.
    """
    run(artifacts, pick(Settings, values), pick(ServerSettings, values), pick(ConnectionSettings, values))


def run(artifacts: Path | None, settings: Settings, server: ServerSettings, connections: ConnectionSettings) -> None:
    """Serve on ``server.host:server.port``: in this process with the bundle loaded here, or under a
    parent with ``server.workers`` processes (:mod:`fmnist.serve.processes`)."""
    from fmnist.artifacts import resolve_bundle_dir
    from fmnist.runtime.sessions import notice
    from fmnist.serve import processes
    from fmnist.serve import settings as settings_env
    from fmnist.serve.app import create_app, load_bundle
    from fmnist.serve.connections import uvicorn_options
    from fmnist.serve.keys import open_notice
    from fmnist.serve.logs import log_config

    bundle_dir = resolve_bundle_dir(artifacts)
    if warning := open_notice(server.host, settings.api_key_file):
        notice(warning)
    # Loaded and verified here, not in the lifespan, so a broken bundle is one line and exit code 2
    # (sessions start later, on first use).
    bundle = load_bundle(bundle_dir, settings.provider)
    options = uvicorn_options(server, connections) | {"log_config": log_config(settings.log_format, server.log_level)}
    # Bound before any worker starts: a port in use is one line and exit code 2 (ConfigError).
    sock = processes.listen(server.host, server.port)
    if server.workers == 1:
        del options["workers"]
        processes.run_server(create_app(bundle, settings, source=bundle_dir), sock, **options)
        return
    from fmnist.serve.metrics import multiprocess_dir

    settings_env.to_env(str(bundle_dir), settings)
    # Set before the workers start, so each one's metrics go to files that /metrics sums.
    with multiprocess_dir():
        processes.run_server("fmnist.serve.app:create_app_from_env", sock, factory=True, **options)


def register(app: typer.Typer) -> None:
    """Add ``fmnist serve`` to the Typer app, with the flags of the settings dataclasses."""
    command = report_errors(serve)
    artifacts = inspect.Parameter("artifacts", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Artifacts)
    flags = (p for cls, panel in PANELS.items() for p in flag_parameters(cls, panel=panel))
    command.__signature__ = inspect.Signature([artifacts, *flags], return_annotation=None)
    app.command("serve", cls=Command)(command)

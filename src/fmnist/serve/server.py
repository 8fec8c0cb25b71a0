"""``fmnist serve``: the HTTP API (``fmnist.serve.app``) under uvicorn.

``register(app)`` adds the command to the Typer app; uvicorn, FastAPI and onnxruntime are
imported inside it so ``fmnist --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fmnist.errors import ConfigError, report_errors
from fmnist.serve.settings import Settings

# Concurrency comes from many requests at once: one onnxruntime thread per call halved the CPU
# per single-image call (122 -> 58 us) against the default busy-waiting pair.
SERVER_THREADS = 1

_D = Settings()
# Seconds SIGTERM waits for in-flight requests before closing their connections.
GRACEFUL_SHUTDOWN_S = 30


def register(app: typer.Typer) -> None:
    @app.command()
    @report_errors
    def serve(
        artifacts: Annotated[
            Path | None,
            typer.Option(
                "--artifacts",
                help="Bundle folder. (default: $FMNIST_ARTIFACTS, else ./artifacts if it holds a bundle, "
                "else the bundled one)",
            ),
        ] = None,
        provider: Annotated[str, typer.Option("--provider", help="onnxruntime provider: auto, cpu or cuda.")] = "auto",
        host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
        workers: Annotated[int, typer.Option("--workers", help="Server processes (each loads the bundle).")] = 1,
        batching: Annotated[
            bool,
            typer.Option("--batching/--no-batching", help="Gather concurrent requests into one model call."),
        ] = _D.batching,
        max_batch: Annotated[int, typer.Option("--max-batch", help="Most images per batched call.")] = _D.max_batch,
        max_wait_ms: Annotated[
            float,
            typer.Option("--max-wait-ms", help="Longest a request waits for others to join its batch."),
        ] = _D.max_wait_ms,
        max_body_bytes: Annotated[
            int,
            typer.Option("--max-body-bytes", help="Larger request bodies are refused with 413."),
        ] = _D.max_body_bytes,
        max_files: Annotated[int, typer.Option("--max-files", help="Most images per request.")] = _D.max_files,
        max_pixels: Annotated[
            int, typer.Option("--max-pixels", help="Largest image (width x height) accepted.")
        ] = _D.max_pixels,
        max_generate: Annotated[
            int, typer.Option("--max-generate", help="Largest n for /v1/generate.")
        ] = _D.max_generate,
        access_log: Annotated[
            bool,
            typer.Option("--access-log/--no-access-log", help="Log every request (costs throughput)."),
        ] = False,
        log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
    ) -> None:
        """Serve the bundle over HTTP: classify, encode, reconstruct, generate, health and metrics.

        API schema at /openapi.json and /docs once running.
        """
        import uvicorn

        from fmnist.artifacts import load_manifest, resolve_bundle_dir
        from fmnist.serve import settings as settings_mod
        from fmnist.serve.inference import MAX_GENERATE

        if workers < 1:
            raise ConfigError(f"--workers must be >= 1, not {workers}")
        settings = Settings(
            batching=batching,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            max_body_bytes=max_body_bytes,
            max_files=max_files,
            max_generate=max_generate,
            provider=provider,
        )
        if max_generate > MAX_GENERATE:
            raise ConfigError(f"--max-generate must be at most {MAX_GENERATE}, not {max_generate}")
        bundle_dir = resolve_bundle_dir(artifacts)
        run = dict(
            host=host,
            port=port,
            access_log=access_log,
            log_level=log_level,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        if workers == 1:
            from fmnist.serve.app import create_app
            from fmnist.serve.inference import Model

            # Load here, not in the lifespan, so a broken bundle is one line and exit code 2.
            uvicorn.run(create_app(Model(bundle_dir, provider, threads=SERVER_THREADS), settings), **run)
        else:
            load_manifest(bundle_dir)  # fail before starting workers that would all fail
            settings_mod.to_env(str(bundle_dir), settings)
            uvicorn.run("fmnist.serve.app:create_app_from_env", factory=True, workers=workers, **run)

"""The HTTP API: ``create_app(model_or_bundle_dir, settings)`` builds the FastAPI application.

Routes (schema at ``/openapi.json``, browsable at ``/docs``), in :mod:`fmnist.serve.routes`:

- ``POST /v1/classify``, ``/v1/encode``, ``/v1/reconstruct``: multipart uploads in the field
  ``file`` (repeat it for several images), preprocessed like the CLI (``invert`` as a query or
  form parameter, the form field first when both are sent); results come back in upload order.
- ``POST /v1/generate``: JSON ``{"n", "sampler", "seed", "format"}``.
- ``GET /healthz``, ``/readyz``, ``/v1/model``, ``/metrics``.

Images come back in one of three ``format``s: ``png`` (one PNG grid, ``image/png``, as the CLI
writes), ``list`` (JSON nested lists of floats in [0,1], shape [28,28] per image) or
``png_base64`` (JSON, one base64 28x28 grey PNG per image). Without ``format`` the answer is
``png`` when the ``Accept`` header names ``image/png``, else ``list``.

Every client error is a 4xx with the body ``{"error": "<one line>"}``; a 500 means a bug.

``app.state`` holds ``settings``, ``metrics``, ``keys``, ``ready``, ``rollout`` and the bundle in
service: ``served`` (model, batchers and id as one object, :mod:`fmnist.serve.served`), and the
same ``model`` and ``batchers`` (op name -> batcher) on their own.
"""

from __future__ import annotations

import functools
import gc
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from fmnist.artifacts import resolve_bundle_dir
from fmnist.runtime.bundle import Bundle
from fmnist.serve import served, v2
from fmnist.serve.direct import DirectRoutes
from fmnist.serve.error_handlers import add_error_handlers
from fmnist.serve.keys import Keys, RequireKey
from fmnist.serve.metrics import Metrics
from fmnist.serve.middleware import BodyLimit, Observe
from fmnist.serve.rollout import Rollout
from fmnist.serve.routes import generate, images, service
from fmnist.serve.settings import Settings, from_env

log = logging.getLogger("fmnist.serve")

# Concurrency comes from many requests at once, so each onnxruntime call gets one thread.
SERVER_THREADS = 1


def load_bundle(bundle_dir: str | Path | None, provider: str) -> Bundle:
    """The bundle as the server runs it: verified now, one onnxruntime thread per call. A link is
    followed first, so the sessions come from the version it named when verified, whatever the link
    names by the time they are created."""
    folder = resolve_bundle_dir(bundle_dir)
    return Bundle(folder.resolve() if folder.is_symlink() else folder, provider, threads=SERVER_THREADS, lazy=False)


def create_app(
    model_or_bundle_dir: Any = None, settings: Settings | None = None, source: str | Path | None = None
) -> FastAPI:
    """Build the API around a loaded ``Bundle`` (or anything with its interface) or a bundle folder.

    A folder (or None: ``resolve_bundle_dir(None)``) is loaded and verified at startup, in the
    lifespan, so ``/readyz`` only turns ready once the model answers. SIGHUP and ``--watch``
    reload from ``source``: the folder given, else a loaded model's ``folder`` (none: no reloads).
    """
    settings = settings or Settings()
    # /docs and /redoc load their scripts and styles from the package, not from a CDN: they work offline.
    app = FastAPIOffline(
        title="fmnist",
        summary="Fashion-MNIST autoencoder, classifier and generator served from an ONNX bundle.",
        version=_package_version(),
        lifespan=_lifespan(model_or_bundle_dir, source),
        # FastAPI's own OpenTelemetry looks up its providers on every request; the server's
        # metrics are its Prometheus ones.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings, app.state.metrics = settings, Metrics()
    served.install(app.state, None)
    app.state.ready = False
    app.state.keys = Keys(settings.api_key_file)
    # Innermost first: the direct dispatch of the busy routes (past FastAPI's router), the key check
    # inside BodyLimit (an oversized body is refused unread, key or not), all inside Observe, so
    # 401s and 413s are counted and carry the request's id.
    uploads = images.router(settings)
    app.add_middleware(DirectRoutes, fastapi_app=app, routes=[*uploads.routes, v2.INFER])
    app.add_middleware(RequireKey, state=app.state)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(Observe, state=app.state)
    add_error_handlers(app)
    app.include_router(uploads)
    app.include_router(generate.router(settings))
    app.include_router(service.router)
    app.include_router(v2.router)  # the Open Inference Protocol (KServe V2) beside /v1
    return app


def _lifespan(model_or_bundle_dir: Any, source: str | Path | None):
    """Load (a folder), warm up and start serving the model before turning ready; take new bundles
    while serving (:mod:`fmnist.serve.rollout`); drain at the end."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings = app.state.settings
        model, path = await _model_and_path(model_or_bundle_dir, source, settings.provider)
        await run_in_threadpool(served.warm_up, model)
        served.install(app.state, await served.start(model, settings, app.state.metrics))
        # The model, FastAPI and the batchers are long-lived: moved out of the collector's view, the
        # full collections that come every second or so under load no longer walk them (they set the p99).
        gc.collect()
        gc.freeze()
        app.state.ready = True
        provider = getattr(model, "provider", "?")
        log.info("fmnist serve: model ready (provider %s, bundle %s)", provider, app.state.served.header)
        rollout = app.state.rollout = Rollout(
            app.state, path, functools.partial(load_bundle, provider=settings.provider)
        )
        try:
            async with rollout.running(settings.watch_interval if settings.watch else None):
                yield
        finally:
            gc.unfreeze()  # an app embedded in a longer-lived process (tests) leaves it as it was
            app.state.ready = False
            app.state.metrics.close()
            await served.stop(app.state.served)

    return lifespan


async def _model_and_path(model: Any, source: str | Path | None, provider: str) -> tuple[Any, Path | None]:
    """The model (loaded here from a folder) and the path reloads read (None: no reloads)."""
    if model is None or isinstance(model, (str, Path)):
        path = resolve_bundle_dir(model)
        return await run_in_threadpool(load_bundle, path, provider), Path(source or path)
    folder = source or getattr(model, "folder", None)
    return model, Path(folder) if folder else None


def _package_version() -> str:
    from fmnist import __version__

    return __version__


def create_app_from_env() -> FastAPI:
    """The app of one `fmnist serve --workers N` worker process (a uvicorn factory)."""
    bundle_dir, settings = from_env()
    return create_app(bundle_dir, settings)

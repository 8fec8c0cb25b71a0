"""The bundle being served: the model, its batchers and its id, started and stopped as one.

A request reads ``app.state.served`` (see ``install``) once, when it hands its images to a
batcher, and uses that object to the end (its class names, the ``x-fmnist-bundle`` header), so a rollout that replaces
``app.state.served`` meanwhile never mixes two bundles in one answer or one micro-batch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from fmnist.runtime.sampling import SAMPLERS
from fmnist.serve.batching import MicroBatcher
from fmnist.serve.metrics import Metrics
from fmnist.serve.settings import Settings

OPS = ("classify", "encode", "reconstruct")  # the batched model functions, by route


@dataclass(frozen=True)
class Served:
    """One bundle in service: ``batchers`` maps an op of OPS to an awaitable ``f(x [k,28,28])``."""

    model: Any
    batchers: dict[str, Any]
    bundle_id: str  # short id of the manifest
    created: str  # the manifest's creation time

    @property
    def header(self) -> str:
        """The ``x-fmnist-bundle`` value: ``3fa9c1d2e4b5; created=2026-12-01T10:00:00+0000``."""
        return f"{self.bundle_id}; created={self.created}"


def bundle_id(manifest: dict[str, Any]) -> str:
    """12 hex digits of the sha256 of the manifest (canonical JSON): it names the files' hashes, so
    two bundles with different weights never share an id."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:12]


def warm_up(model: Any) -> None:
    """Run every graph the server uses once: creates the sessions (a bundle is ready only once it
    has answered) and holds them, so the bundle keeps serving after its folder is replaced."""
    probe = np.zeros((1, 28, 28), np.float32)
    for op in OPS:
        getattr(model, op)(probe)
    for sampler in SAMPLERS:
        model.generate(1, sampler, 0)


async def start(model: Any, settings: Settings, metrics: Metrics) -> Served:
    """``model`` (warmed up already) with a started batcher per op."""
    batchers = {}
    for op in OPS:
        fn = getattr(model, op)

        def on_batch(size: int, op: str = op) -> None:
            metrics.observe_batch(op, size)

        if settings.batching:
            batchers[op] = MicroBatcher(fn, settings.max_batch, settings.max_wait_ms, name=op, on_batch=on_batch)
            await batchers[op].start()
        else:
            batchers[op] = _direct(fn, on_batch)
    manifest = getattr(model, "manifest", {})
    created = str(manifest.get("created", "unknown")).encode("ascii", "replace").decode()  # a header is ASCII
    return Served(model, batchers, bundle_id(manifest), created)


def install(state: Any, served: Served | None) -> None:
    """Put ``served`` in service on the app's ``state``: ``state.served``, and its ``model`` and
    ``batchers`` as ``state.model`` and ``state.batchers`` for code that wants only those. Set
    together, with no await between, so a request reading them sees one bundle."""
    state.served = served
    state.model, state.batchers = (served.model, served.batchers) if served else (None, {})


async def stop(served: Served) -> None:
    """Let every call already queued on ``served``'s batchers finish, then stop them."""
    for batcher in served.batchers.values():
        if isinstance(batcher, MicroBatcher):
            await batcher.drain()


def _direct(fn, on_batch):
    """Batching off: one model call per request, on the event loop like a plain endpoint."""

    async def call(x: np.ndarray) -> np.ndarray:
        y = fn(x)
        on_batch(len(x))
        return y

    return call

"""A new bundle without a restart: on SIGHUP, and with ``--watch`` when the bundle path changes.

The new bundle is loaded, verified (manifest schema, hashes, graph shapes) and warmed up beside
the one in service, off the event loop; only then does ``app.state.served`` point at it. Requests
that already handed their images to the old bundle's batchers get the old bundle's answers (the
old batchers drain, then stop), and every later request the new one's. A bundle that fails is
refused with one log line, counted, and the old one keeps serving; ``/readyz`` never changes.

The watcher compares, every ``--watch-interval`` seconds, where the path leads (``fmnist
export`` swaps a link to a new version folder) and the manifest's bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from fmnist import artifacts
from fmnist.errors import BundleError
from fmnist.runtime.sessions import first_line
from fmnist.serve import served

log = logging.getLogger("fmnist.serve")


def signature(path: Path) -> tuple[str, str]:
    """Where ``path`` leads and a hash of its manifest: either changes when a bundle is swapped in."""
    target = os.path.realpath(path)
    try:  # as the loader reads it: a pipe or a link to /dev/zero swapped in must not hang or fill memory
        manifest = hashlib.sha256(artifacts.read_file(Path(target), artifacts.MANIFEST, artifacts.MAX_MANIFEST_BYTES))
    except BundleError as e:
        return target, f"unreadable: {e}"
    return target, manifest.hexdigest()


class Rollout:
    """Replaces the bundle in service on ``app.state`` with the one now at ``path``.

    Args:
        state: the app's state (``served``, ``settings``, ``metrics``, ``keys``).
        path: the bundle path as the operator named it (a link is followed anew on every reload);
            None (a model given as an object, in tests): no reloads.
        load: ``load(path) -> model``, verifying; run in a thread.
    """

    def __init__(self, state: Any, path: Path | None, load) -> None:
        self.state, self.path, self.load = state, path, load
        self._lock = asyncio.Lock()  # one reload at a time
        self._seen = signature(path) if path is not None else None
        self._tasks: set[asyncio.Task] = set()

    async def reload(self, why: str) -> bool:
        """Load, verify and warm up the bundle at ``path``; swap it in if it differs. True when the
        bundle at ``path`` is the one in service afterwards."""
        async with self._lock:
            state = self.state
            keys = getattr(state, "keys", None)
            if keys is not None:
                await run_in_threadpool(keys.reload)
            old = state.served
            try:
                model = await run_in_threadpool(self._verified, self.path)
            except Exception as e:  # noqa: BLE001 (any failure refuses the bundle; the old one serves on)
                state.metrics.observe_reload(ok=False)
                log.error(
                    "fmnist serve: %s: bundle at %s refused (%s); still serving %s",
                    why, self.path, first_line(e), old.bundle_id,
                )  # fmt: skip
                return False
            new = await served.start(model, state.settings, state.metrics)
            state.metrics.observe_reload(ok=True)
            if new.bundle_id == old.bundle_id:
                await served.stop(new)
                log.info("fmnist serve: %s: bundle %s unchanged", why, old.bundle_id)
                return True
            served.install(state, new)
            log.info("fmnist serve: %s: now serving bundle %s (was %s)", why, new.header, old.bundle_id)
            await served.stop(old)
            return True

    def _verified(self, path: Path) -> Any:
        model = self.load(path)
        served.warm_up(model)
        return model

    def schedule(self, why: str) -> None:
        """Start a reload from a signal handler (the event loop's thread), keeping the task alive."""
        task = asyncio.get_running_loop().create_task(self.reload(why))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def watch(self, interval: float) -> None:
        """Reload whenever ``signature(path)`` changes; a refused bundle is not retried until it does."""
        first = True
        while True:
            await asyncio.sleep(interval)
            if first:  # the bundle in service, not the path's: a swap during start-up is seen, not lost
                first, in_service = False, getattr(self.state, "served", None)
                folder = getattr(in_service.model, "folder", None) if in_service is not None else None
                if folder is not None:
                    self._seen = await run_in_threadpool(signature, Path(folder))
            now = await run_in_threadpool(signature, self.path)
            if now != self._seen:
                self._seen = now
                await self.reload("watch")

    @contextlib.asynccontextmanager
    async def running(self, watch_interval: float | None):
        """Reload on SIGHUP (where this thread may take signals) and, given an interval, on change."""
        if self.path is None:
            yield self
            return
        hangup = _on_hangup(lambda: self.schedule("SIGHUP"))
        watcher = asyncio.get_running_loop().create_task(self.watch(watch_interval)) if watch_interval else None
        try:
            yield self
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            if hangup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            for task in list(self._tasks):
                task.cancel()


def _on_hangup(callback) -> bool:
    """Call ``callback`` on SIGHUP; False where signals cannot be taken here (not the main thread
    of a process, e.g. a server in a test's thread, or no SIGHUP on this platform)."""
    if not hasattr(signal, "SIGHUP"):
        return False
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, callback)
    except (ValueError, RuntimeError):
        return False
    return True

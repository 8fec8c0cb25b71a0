"""Dynamic micro-batching: concurrent requests share one onnxruntime call.

Each caller awaits ``batcher(x)`` with its own images ``x`` [k,28,28]. A single loop task takes
the waiting calls in arrival order, concatenates them up to ``max_batch`` images, runs ``fn`` once
in a dedicated thread (onnxruntime releases the GIL, so the event loop keeps parsing requests
meanwhile) and hands every caller back exactly its own rows, by offset. A batch is sent as soon as
it is full or its oldest call has waited ``max_wait_ms``; calls that queued up while the previous
batch ran have already waited, so under load batches form without any added delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class MicroBatcher:
    """Gather concurrent calls of ``fn(x [N,...]) -> y [N,...]`` into fewer, larger calls.

    Args:
        fn: a function of a batch whose i-th output row depends on the i-th input row only.
        max_batch: most rows per call of ``fn``; one call larger than this runs alone.
        max_wait_ms: longest a call waits for others to join it.
        on_batch: called with the rows of every batch run (for the batch-size histogram).
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        max_batch: int = 64,
        max_wait_ms: float = 1.0,
        on_batch: Callable[[int], None] | None = None,
        name: str = "batch",
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, not {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, not {max_wait_ms}")
        self.fn, self.max_batch, self.max_wait = fn, max_batch, max_wait_ms / 1000
        self.on_batch, self.name = on_batch, name
        self._pending: deque[tuple[np.ndarray, asyncio.Future, float]] = deque()
        self._pending_rows = 0
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Start the batching task on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"fmnist-{self.name}")
        self._wake = asyncio.Event()  # set while calls are pending
        self._ready = asyncio.Event()  # set when a full batch is pending or the wait is over
        self._idle = asyncio.Event()  # set while nothing is pending or running
        self._idle.set()
        self._task = self._loop.create_task(self._run(), name=f"fmnist-{self.name}")

    async def stop(self) -> None:
        """Stop the task; calls still pending fail (a drained server has none)."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        while self._pending:
            _, fut, _ = self._pending.popleft()
            if not fut.done():
                fut.set_exception(RuntimeError("the server is shutting down"))
        self._executor.shutdown(wait=True)

    async def drain(self) -> None:
        """Answer every call already made, then stop (a rollout retires a bundle's batchers so)."""
        if self._task is not None and not self._task.done():
            await self._idle.wait()
        await self.stop()

    async def __call__(self, x: np.ndarray) -> np.ndarray:
        if self._task is None or self._task.done():
            raise RuntimeError(f"batcher {self.name!r} is not running")
        fut = self._loop.create_future()
        self._pending.append((x, fut, time.monotonic()))
        self._pending_rows += len(x)
        self._idle.clear()
        self._wake.set()
        if self._pending_rows >= self.max_batch:
            self._ready.set()
        return await fut

    def _take(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        """Pop calls in arrival order until the next one would overflow ``max_batch``."""
        batch, rows = [], 0
        while self._pending and (not batch or rows + len(self._pending[0][0]) <= self.max_batch):
            x, fut, _ = self._pending.popleft()
            self._pending_rows -= len(x)
            if fut.cancelled():  # the caller went away (cancelled task): skip its rows
                continue
            batch.append((x, fut))
            rows += len(x)
        if not self._pending:
            self._wake.clear()
        return batch

    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._idle.set()
            await self._wake.wait()
            if self._pending_rows < self.max_batch and self.max_wait > 0:
                delay = self._pending[0][2] + self.max_wait - time.monotonic()
                if delay > 0:
                    self._ready.clear()
                    timer = self._loop.call_later(delay, self._ready.set)
                    await self._ready.wait()
                    timer.cancel()
            batch = self._take()
            if not batch:
                continue
            xs = batch[0][0] if len(batch) == 1 else np.concatenate([x for x, _ in batch])
            try:
                ys = await self._loop.run_in_executor(self._executor, self.fn, xs)
                if len(ys) != len(xs):
                    raise RuntimeError(f"{self.name}: {len(xs)} inputs gave {len(ys)} outputs")
            except asyncio.CancelledError:  # stop() during a batch: its callers must not hang
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(RuntimeError("the server is shutting down"))
                raise
            except Exception as e:  # every caller of this batch gets the error
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            if self.on_batch is not None:
                self.on_batch(len(xs))
            offset = 0
            for x, fut in batch:
                if not fut.done():
                    fut.set_result(ys[offset : offset + len(x)])
                offset += len(x)

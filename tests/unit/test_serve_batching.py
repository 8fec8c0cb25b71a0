"""The micro-batcher: every caller gets its own rows back, batches respect their limits."""

import asyncio
import time

import numpy as np
import pytest

from fmnist.serve.batching import MicroBatcher


class Recorder:
    """fn(x) = 2x + 1, recording the rows of every call; optionally slow."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.sizes: list[int] = []
        self.delay, self.fail = delay, fail

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.sizes.append(len(x))
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise ValueError("model broke")
        return 2 * x + 1


async def _with_batcher(fn, coro, **kwargs):
    batcher = MicroBatcher(fn, **kwargs)
    await batcher.start()
    try:
        return await coro(batcher)
    finally:
        await batcher.stop()


def test_concurrent_callers_get_their_own_rows():
    fn = Recorder(delay=0.005)
    seen: list[int] = []

    async def run(batcher):
        # caller i sends (i % 3) + 1 rows, each filled with a value unique to (caller, row)
        inputs = [np.full(((i % 3) + 1, 4), i * 10 + np.arange((i % 3) + 1)[:, None], np.float32) for i in range(50)]
        outputs = await asyncio.gather(*(batcher(x) for x in inputs))
        for x, y in zip(inputs, outputs, strict=True):
            np.testing.assert_array_equal(y, 2 * x + 1)

    asyncio.run(_with_batcher(fn, run, max_batch=16, max_wait_ms=2, on_batch=seen.append))
    assert sum(fn.sizes) == sum((i % 3) + 1 for i in range(50))
    assert max(fn.sizes) > 3, "concurrent calls were not batched"
    assert max(fn.sizes) <= 16
    assert seen == fn.sizes


def test_oversized_call_runs_alone_and_limits_hold():
    fn = Recorder()

    async def run(batcher):
        big, small = np.ones((10, 2), np.float32), np.zeros((3, 2), np.float32)
        y_big, y_small = await asyncio.gather(batcher(big), batcher(small))
        np.testing.assert_array_equal(y_big, 3 * big)
        np.testing.assert_array_equal(y_small, small + 1)

    asyncio.run(_with_batcher(fn, run, max_batch=4, max_wait_ms=5))
    assert fn.sizes == [10, 3]


def test_max_wait_gathers_late_callers():
    fn = Recorder()

    async def run(batcher):
        async def late(x):
            await asyncio.sleep(0.01)
            return await batcher(x)

        a, b = np.zeros((1, 1), np.float32), np.ones((1, 1), np.float32)
        return await asyncio.gather(batcher(a), late(b))

    ya, yb = asyncio.run(_with_batcher(fn, run, max_batch=8, max_wait_ms=200))
    assert fn.sizes == [2]  # the second caller came 10 ms later and joined the first
    assert ya.tolist() == [[1.0]] and yb.tolist() == [[3.0]]


def test_no_wait_runs_at_once_and_queued_calls_form_the_next_batch():
    fn = Recorder(delay=0.05)

    async def run(batcher):
        first = asyncio.ensure_future(batcher(np.zeros((1, 1), np.float32)))
        await asyncio.sleep(0.01)  # the first batch is running now
        rest = [batcher(np.full((1, 1), i, np.float32)) for i in range(5)]
        return await asyncio.gather(first, *rest)

    outs = asyncio.run(_with_batcher(fn, run, max_batch=8, max_wait_ms=0))
    assert fn.sizes == [1, 5]
    assert [o.item() for o in outs] == [1, 1, 3, 5, 7, 9]


def test_error_reaches_every_caller_of_the_batch_and_the_batcher_survives():
    fn = Recorder(fail=True)

    async def run(batcher):
        results = await asyncio.gather(
            *(batcher(np.zeros((1, 1), np.float32)) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, ValueError) for r in results)
        fn.fail = False
        return await batcher(np.ones((1, 1), np.float32))

    y = asyncio.run(_with_batcher(fn, run, max_batch=8, max_wait_ms=5))
    assert y.item() == 3.0


def test_cancelled_caller_is_skipped():
    fn = Recorder()

    async def run(batcher):
        gone = asyncio.ensure_future(batcher(np.zeros((1, 1), np.float32)))
        kept = asyncio.ensure_future(batcher(np.ones((1, 1), np.float32)))
        await asyncio.sleep(0)
        gone.cancel()
        return await kept

    y = asyncio.run(_with_batcher(fn, run, max_batch=8, max_wait_ms=20))
    assert y.item() == 3.0 and fn.sizes == [1]


def test_stopped_batcher_refuses_calls_and_bad_limits_are_errors():
    async def run():
        batcher = MicroBatcher(Recorder(), max_batch=2, max_wait_ms=0)
        await batcher.start()
        await batcher.stop()
        with pytest.raises(RuntimeError, match="not running"):
            await batcher(np.zeros((1, 1), np.float32))

    asyncio.run(run())
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(Recorder(), max_batch=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        MicroBatcher(Recorder(), max_wait_ms=-1)


def test_drain_answers_every_queued_call_then_stops():
    async def main():
        fn = Recorder(delay=0.01)
        batcher = MicroBatcher(fn, max_batch=2, max_wait_ms=1)
        await batcher.start()
        calls = [asyncio.ensure_future(batcher(np.full((1, 3), i, np.float32))) for i in range(7)]
        await asyncio.sleep(0)  # every call queued
        await batcher.drain()
        results = [c.result() for c in calls]
        with pytest.raises(RuntimeError, match="not running"):
            await batcher(np.zeros((1, 3), np.float32))
        return fn.sizes, results

    sizes, results = asyncio.run(main())
    assert sum(sizes) == 7 and max(sizes) <= 2
    for i, y in enumerate(results):
        np.testing.assert_array_equal(y, np.full((1, 3), 2 * i + 1, np.float32))

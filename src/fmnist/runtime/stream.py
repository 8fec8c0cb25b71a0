"""Many image files through a model at the machine's pace, in bounded memory.

Paths go in chunks to a pool of processes that decode and preprocess them (``load_image``) while
the main process runs batched onnxruntime calls on what has come back; at most a few chunks per
process are in flight, so memory does not grow with the number of files, and results come back in
input order. A handful of files are decoded in-process: a pool would only add its start-up.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import signal
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fmnist.errors import FmnistError, InputError, print_error
from fmnist.runtime.images import SIZE, load_image
from fmnist.runtime.signals import STOP_SIGNALS, held, unblock

CHUNK = 64  # paths per task: amortises the pickling, small enough for the first results to come soon
BATCH = 256  # images per onnxruntime call
IN_FLIGHT = 4  # chunks queued per process: work waiting for each while the model runs


def default_jobs() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def decode_chunk(paths: list[Path], invert: str, max_pixels: int | None, flag: str | None = None) -> tuple:
    """(positions of the readable paths, their images (k, 28, 28) float32, one-line errors for the
    others); ``flag`` names the option of ``max_pixels`` in the over-size message."""
    readable, images, errors = [], [], []
    for i, path in enumerate(paths):
        try:
            images.append(load_image(path, invert, max_pixels, flag))
            readable.append(i)
        except InputError as e:
            errors.append(str(e))
    stacked = np.stack(images) if images else np.zeros((0, SIZE, SIZE), np.float32)
    return readable, stacked, errors


@contextlib.contextmanager
def decoding(paths: list[Path], jobs: int, *options) -> Iterator[Iterator[tuple]]:
    """(readable paths, their images, errors) of ``decode_chunk`` over ``paths`` in chunks of
    CHUNK, in order; ``jobs`` processes at a time, started on entry with their first chunks
    sent (so that they decode while the caller sets up its model), ended on exit."""
    ranges = ((start, min(start + CHUNK, len(paths))) for start in range(0, len(paths), CHUNK))
    with contextlib.ExitStack() as stack:
        if size := pool_size(paths, jobs):
            results = _in_order(stack.enter_context(_pool(size, paths, options)), ranges)
        else:
            results = ((task, decode_chunk(paths[slice(*task)], *options)) for task in ranges)
        yield (([paths[start + i] for i in readable], x, errors) for (start, _), (readable, x, errors) in results)


def pool_size(paths: list[Path], jobs: int) -> int:
    """How many processes decode ``paths``: none for one chunk (a pool would only add its
    start-up) or ``jobs`` 1, else ``jobs`` or one per chunk when that is fewer."""
    return 0 if jobs <= 1 or len(paths) <= CHUNK else min(jobs, -(-len(paths) // CHUNK))


class _Worker(NamedTuple):
    process: object  # multiprocessing's Process
    tasks: object  # Connection: (start, stop) ranges of the paths, to it
    results: object  # Connection: decode_chunk's results, from it


def _work(tasks, results, paths: list[Path], options: tuple, inherited: list) -> None:
    """A decoding process: ranges of ``paths`` in, their ``decode_chunk`` out, until the parent
    is gone (its end of ``tasks`` closed, or ``results`` no longer read)."""
    _worker_start(inherited)
    with contextlib.suppress(EOFError, OSError):
        while True:
            task = tasks.recv()
            try:
                result = decode_chunk(paths[slice(*task)], *options)
            except Exception as e:  # noqa: BLE001 (a bug, or no memory: the parent raises it)
                result = f"{type(e).__name__}: {e}"
            results.send(result)


def _worker_start(inherited: list) -> None:
    """Ctrl-C reaches the whole process group: the parent reports it, the workers just stop. A
    parent that dies takes its workers with it: on Linux at once (the parent-death signal),
    elsewhere when they next read or write a pipe, whose other ends only the parent holds (the
    ``inherited`` ends of fork, its and the earlier workers', are closed here)."""
    for connection in inherited:
        connection.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler, copied by fork
    unblock(STOP_SIGNALS)  # blocked by _pool until now
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1  # noqa: N806 (prctl's name)
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@contextlib.contextmanager
def _pool(jobs: int, paths: list[Path], options: tuple) -> Iterator[list[_Worker]]:
    """``jobs`` decoding processes, each with a pipe of tasks in and one of results out, ended
    on the way out whatever happens.

    Not multiprocessing.Pool: its three threads in this process took CPU from the decoders (its
    worker handler wakes, and polls, on every result that comes), and every path would be pickled
    twice. Here a task is a range of ``paths``, which the workers have from the start, and the
    results are read by the thread that uses them.

    fork: the workers start in milliseconds with numpy and Pillow already imported, before any
    onnxruntime session exists (no runtime thread is forked mid-work). Ctrl-C and SIGTERM are
    held while they start: a worker must not run the parent's handlers before _worker_start
    replaces them, and the parent must not stop half-way through; a signal that came meanwhile
    is raised once they are started, inside the ``try`` that ends them.
    """
    import multiprocessing

    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    workers: list[_Worker] = []
    try:
        try:
            with held():
                for _ in range(jobs):
                    workers.append(_start_worker(context, paths, options, workers))
        except OSError as e:  # out of processes or file descriptors: --jobs 500, say
            why = e.strerror or e
            raise FmnistError(f"cannot start {jobs} decoding processes ({why}); give a lower --jobs") from None
        yield workers
    finally:
        for worker in workers:
            worker.tasks.close()
            worker.process.kill()
        for worker in workers:
            worker.process.join()
            worker.process.close()
            worker.results.close()


def _start_worker(context, paths: list[Path], options: tuple, earlier: list[_Worker]) -> _Worker:
    """One decoding process and its two pipes. The child's ends are closed here once it holds
    them; under fork, the child closes the ends of this process that it was given (``earlier``
    workers' and its own)."""
    mine, its = [], []
    try:
        tasks_in, tasks = context.Pipe(duplex=False)
        mine.append(tasks)
        its.append(tasks_in)
        results, results_out = context.Pipe(duplex=False)
        mine.append(results)
        its.append(results_out)
        forked = context.get_start_method() == "fork"
        inherited = [end for w in earlier for end in (w.tasks, w.results)] + mine if forked else []
        process = context.Process(target=_work, args=(tasks_in, results_out, paths, options, inherited), daemon=True)
        process.start()
    except BaseException:
        for end in mine:
            end.close()
        raise
    finally:
        for end in its:
            end.close()
    _widen(results)
    return _Worker(process, tasks, results)


def _widen(connection) -> None:
    """Room in a result pipe for a few chunks (Linux: 1 MiB, from 64 KiB), so that a worker does
    not wait on the reader while the model runs."""
    with contextlib.suppress(ImportError, AttributeError, OSError):
        import fcntl

        fcntl.fcntl(connection.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)


def _in_order(workers: list[_Worker], ranges: Iterator[tuple[int, int]]) -> Iterator[tuple]:
    """(range, decode_chunk's result) for each of ``ranges``, in order. Each range goes to the
    worker with the fewest waiting: IN_FLIGHT a worker now, one more for each result read."""
    sent: collections.deque = collections.deque()  # (worker, range), oldest first
    waiting = [0] * len(workers)

    def send() -> None:
        for task in itertools.islice(ranges, 1):
            k = waiting.index(min(waiting))
            with contextlib.suppress(OSError):  # a worker gone: _receive says so when its turn comes
                workers[k].tasks.send(task)
            waiting[k] += 1
            sent.append((k, task))

    def results() -> Iterator[tuple]:
        while sent:
            k, task = sent.popleft()
            result = _receive(workers[k])
            waiting[k] -= 1
            send()
            yield task, result

    for _ in range(len(workers) * IN_FLIGHT):
        send()
    return results()


def _receive(worker: _Worker) -> tuple:
    """The worker's next result; its failure, or its death, raised."""
    try:
        result = worker.results.recv()
    except (EOFError, OSError):
        worker.process.join(1)
        code = worker.process.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        raise FmnistError(
            f"a decoding process ended before its work was done ({how}); --jobs 1 decodes in this process"
        ) from None
    if isinstance(result, str):
        raise RuntimeError(f"a decoding process failed: {result}")
    return result


def decoded_chunks(paths: list[Path], jobs: int, *options) -> Iterator[tuple]:
    """``decoding`` as one generator."""
    with decoding(paths, jobs, *options) as chunks:
        yield from chunks


class ImageStream:
    """Batches ``(paths, images (n <= batch, 28, 28))`` of the readable files among ``paths``, in
    input order; the first of ``first`` images when given. Unreadable files are reported on
    stderr as they come (held back until the first readable one, so that a lone bad file is one
    error); ``failed`` counts them. When none is readable, iterating raises InputError (the one
    error, or how many inputs failed).

    Entered as a context, it starts decoding at once (load the model inside it); iterated
    outside one, it decodes for that iteration alone."""

    def __init__(
        self,
        paths: list[Path],
        invert: str,
        max_pixels: int | None,
        jobs: int,
        batch: int = BATCH,
        flag: str | None = None,
        first: int | None = None,
    ) -> None:
        self.paths, self.jobs, self.batch, self.first = paths, jobs, batch, first or batch
        self.options = (invert, max_pixels, flag)  # decode_chunk's
        self.failed = 0
        self._exits = contextlib.ExitStack()
        self._chunks: Iterator[tuple] | None = None

    def __enter__(self) -> ImageStream:
        self._chunks = self._exits.enter_context(decoding(self.paths, self.jobs, *self.options))
        return self

    def __exit__(self, *exc) -> None:
        self._exits.close()
        self._chunks = None

    def model_threads(self) -> int | None:
        """onnxruntime's threads beside the decoding: the cores the pool leaves free, at least one
        (None: its default). A call split over more threads than that waits, each batch, for the
        one a decoder pushed off its core."""
        if not (size := pool_size(self.paths, self.jobs)):
            return None
        from fmnist.runtime.sessions import THREADS

        return max(1, min(THREADS, default_jobs() - size))

    def __iter__(self) -> Iterator[tuple[list[Path], np.ndarray]]:
        with self if self._chunks is None else contextlib.nullcontext():
            yield from self._batches(self._chunks)

    def _batches(self, chunks: Iterator[tuple]) -> Iterator[tuple[list[Path], np.ndarray]]:
        held: list[str] = []  # errors before the first readable image
        paths: list[Path] = []
        images: list[np.ndarray] = []
        read_any = False
        size = self.first  # the first batch may be smaller: the first results show sooner
        for good, stacked, errors in chunks:
            self.failed += len(errors)
            if not read_any:
                held += errors
                errors, read_any = (held, True) if good else ([], False)
            for message in errors:
                print_error(message)
            paths.extend(good)
            images.append(stacked)
            while len(paths) >= size:
                yield from self._take(paths, images, size)
                size = self.batch
        if not read_any:
            raise InputError(held[0] if len(held) == 1 else f"no readable image among {len(held)} inputs")
        if paths:
            yield from self._take(paths, images, len(paths))

    @staticmethod
    def _take(paths: list[Path], images: list[np.ndarray], n: int) -> Iterator[tuple[list[Path], np.ndarray]]:
        """The first ``n`` of the buffered images, removed from the buffers."""
        joined = np.concatenate(images)
        images[:] = [joined[n:]]
        head = paths[:n]
        del paths[:n]
        yield head, joined[:n]


def rows_to_npy(out: Path, blocks: Iterable[np.ndarray]) -> int:
    """Write float32 row blocks (k, d) to ``out`` as one .npy [N, d] without holding them all:
    rows go to a temporary file beside ``out``, which becomes ``out`` (header first) only when
    every block is written; nothing is left behind on failure. Returns N."""
    import tempfile

    from numpy.lib import format as npy

    n, width = 0, None
    with tempfile.TemporaryFile(dir=out.parent) as raw:
        for block in blocks:
            block = np.ascontiguousarray(block, dtype="<f4")
            n, width = n + len(block), block.shape[1]
            raw.write(block.tobytes())
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                npy.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (n, width or 0)})
                raw.seek(0)
                while data := raw.read(1 << 20):
                    f.write(data)
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return n

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

import numpy as np

from fmnist.errors import InputError, print_error
from fmnist.runtime.images import SIZE, load_image
from fmnist.runtime.signals import STOP_SIGNALS, held

CHUNK = 64  # paths per task: amortises the pickling, small enough for the first results to come soon
BATCH = 256  # images per onnxruntime call
IN_FLIGHT = 4  # chunks queued per process: work waiting for each while the model runs


def default_jobs() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def decode_chunk(paths: list[Path], invert: str, max_pixels: int | None, flag: str | None = None) -> tuple:
    """(readable paths, their images (k, 28, 28) float32, one-line errors for the others);
    ``flag`` names the option of ``max_pixels`` in the over-size message."""
    good, images, errors = [], [], []
    for path in paths:
        try:
            images.append(load_image(path, invert, max_pixels, flag))
            good.append(path)
        except InputError as e:
            errors.append(str(e))
    stacked = np.stack(images) if images else np.zeros((0, SIZE, SIZE), np.float32)
    return good, stacked, errors


def _worker_start() -> None:
    """Ctrl-C reaches the whole process group: the parent reports it, the workers just stop. A
    parent that dies (SIGTERM, SIGKILL) takes its workers with it, without their tracebacks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler, copied by fork
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by _pool until now
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1  # noqa: N806 (prctl's name)
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@contextlib.contextmanager
def _pool(jobs: int) -> Iterator:
    """A pool of ``jobs`` decoding processes, ended on the way out whatever happens.

    fork: the workers start in milliseconds with numpy and Pillow already imported; the pool is
    made before any onnxruntime session exists, so no runtime thread is forked mid-work. Ctrl-C
    and SIGTERM are held while it is made: a worker must not run the parent's handlers before
    _worker_start replaces them, and the parent must not stop half-way through making the pool
    (its thread would go on starting workers); a signal that came meanwhile is raised once the
    pool is made, inside the ``try`` that ends it.
    """
    import multiprocessing

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    pool = None
    try:
        with held():
            pool = multiprocessing.get_context(method).Pool(jobs, initializer=_worker_start)
        yield pool
    finally:
        if pool is not None:
            pool.terminate()


@contextlib.contextmanager
def decoding(paths: list[Path], jobs: int, *options) -> Iterator[Iterator[tuple]]:
    """``decode_chunk(chunk, *options)`` over ``paths`` in chunks of CHUNK, in order; ``jobs``
    processes at a time, started on entry with their first chunks queued (so that they decode
    while the caller sets up its model), ended on exit."""
    chunks = (paths[start : start + CHUNK] for start in range(0, len(paths), CHUNK))
    if not pooled(paths, jobs):
        yield (decode_chunk(chunk, *options) for chunk in chunks)
        return
    with _pool(min(jobs, -(-len(paths) // CHUNK))) as pool:

        def submit(chunk: list[Path]):
            return pool.apply_async(decode_chunk, (chunk, *options))

        pending = collections.deque(map(submit, itertools.islice(chunks, jobs * IN_FLIGHT)))
        yield _in_order(pending, map(submit, chunks))


def _in_order(pending: collections.deque, more: Iterator) -> Iterator[tuple]:
    """The results of ``pending`` tasks, oldest first, each replaced by the next of ``more``."""
    while pending:
        oldest = pending.popleft()
        pending.extend(itertools.islice(more, 1))
        yield oldest.get()


def decoded_chunks(paths: list[Path], jobs: int, *options) -> Iterator[tuple]:
    """``decoding`` as one generator."""
    with decoding(paths, jobs, *options) as chunks:
        yield from chunks


def pooled(paths: list[Path], jobs: int) -> bool:
    """Whether ``paths`` are decoded by a pool: a handful in-process would only add its start-up."""
    return jobs > 1 and len(paths) > CHUNK


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

    def model_threads(self) -> int | None:
        """onnxruntime's threads beside the decoding: the cores the pool leaves free, at least one
        (None: its default). A call split over more threads than that waits, each batch, for the
        one a decoder pushed off its core (one thread beside two decoders on two cores: 5% less
        time for 10,000 PNGs, paired runs)."""
        if not pooled(self.paths, self.jobs):
            return None
        from fmnist.runtime.sessions import THREADS

        return max(1, min(THREADS, default_jobs() - self.jobs))

    def __iter__(self) -> Iterator[tuple[list[Path], np.ndarray]]:
        if self._chunks is None:
            with self:
                yield from self._batches(self._chunks)
        else:
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

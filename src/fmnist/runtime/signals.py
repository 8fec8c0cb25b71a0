"""Ctrl-C and SIGTERM held back while a block must not be cut in half."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
MASKS = hasattr(signal, "pthread_sigmask")  # not on Windows


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Inside, SIGINT and SIGTERM are blocked where the platform can (threads and processes
    started here inherit that) and, when one still reaches this thread's handlers, recorded; on
    the way out the handlers and the mask are as before and a recorded signal is raised again,
    handled as usual."""
    caught: list[int] = []
    handlers = {}
    try:
        for signum in STOP_SIGNALS:
            handlers[signum] = signal.signal(signum, lambda signum, frame: caught.append(signum))
    except ValueError:  # not the main thread, where handlers cannot be set
        pass
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS) if MASKS else None
    try:
        yield
    finally:
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for signum in caught:
            signal.raise_signal(signum)


def unblock(signals) -> None:
    """``signals`` no longer blocked in this thread (where the platform blocks signals at all)."""
    if MASKS:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)

"""Ctrl-C and SIGTERM held back while a block must not be cut in half."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Inside, SIGINT and SIGTERM are blocked (threads and processes started here inherit that)
    and, when one still reaches this thread's handlers, recorded; on the way out the handlers
    and the mask are as before and a recorded signal is raised again, handled as usual."""
    caught: list[int] = []
    handlers = {}
    try:
        for signum in STOP_SIGNALS:
            handlers[signum] = signal.signal(signum, lambda signum, frame: caught.append(signum))
    except ValueError:  # not the main thread, where handlers cannot be set
        pass
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for signum in caught:
            signal.raise_signal(signum)

"""SIGINT and SIGTERM as one exception, so a stopped run can say how to go on and exit 130 / 143."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from fmnist.errors import Interrupted
from fmnist.runtime.signals import STOP_SIGNALS


def _raise(signum: int, frame) -> None:
    raise Interrupted(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Inside, SIGINT and SIGTERM raise :class:`Interrupted`. Otherwise Lightning turns Ctrl-C into
    ``sys.exit(1)`` and a SIGTERM into an exit with code 0, which ``fmnist train && fmnist export``
    takes for success. During ``fit`` Lightning's own SIGTERM handler runs first (it stops DDP's
    other ranks), then this one."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

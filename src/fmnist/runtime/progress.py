"""Progress on a terminal: one bar per measurement on stderr, nothing when it is not a terminal.

Long numpy-only commands (``fmnist evaluate``) use this rather than tqdm, which only the training
extra installs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO, TypeVar

T = TypeVar("T")
WIDTH = 24  # characters of the bar


class Progress:
    """``run(label, fn, ...)`` and ``iterate(label, items)`` draw ``label [####....] i/n 3 s`` on
    ``stream`` and end the line with the time taken; with ``enabled`` False they only do the work."""

    def __init__(self, enabled: bool, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr

    @classmethod
    def on_terminal(cls, stream: TextIO | None = None, quiet: bool = False) -> Progress:
        """Enabled when ``stream`` (default stderr) is a terminal and not ``quiet`` (e.g. --json)."""
        stream = stream or sys.stderr
        return cls(not quiet and stream.isatty(), stream)

    def iterate(self, label: str, items: Iterable[T]) -> Iterator[T]:
        items = list(items)
        start = time.perf_counter()
        self._draw(label, 0, len(items), start)
        for i, item in enumerate(items, 1):
            yield item
            self._draw(label, i, len(items), start)
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

    def run(self, label: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` as a one-step bar."""
        for _ in self.iterate(label, [None]):
            result = fn(*args, **kwargs)
        return result

    def _draw(self, label: str, done: int, total: int, start: float) -> None:
        if not self.enabled:
            return
        filled = WIDTH * done // max(total, 1)
        bar = "#" * filled + "." * (WIDTH - filled)
        self.stream.write(f"\r{label:<28} [{bar}] {done}/{total} {time.perf_counter() - start:.0f} s")
        self.stream.flush()


SILENT = Progress(False)

"""CONTRACT STUB (to be implemented for issue 6): image decoding and pre/post-processing."""

from __future__ import annotations

import numpy as np

INVERT_CHOICES = ("auto", "yes", "no")


def load_image(source, invert: str = "auto") -> np.ndarray:
    """Path or bytes of any Pillow-readable image -> float32 [28,28] in [0,1] per the contract.

    Grayscale, fit into 28x28 keeping the aspect ratio, inverted per ``invert`` (auto decides
    from the border pixels). Raises InputError (one line) for unreadable or truncated files.
    """
    raise NotImplementedError


def to_png(images: np.ndarray, columns: int | None = None) -> bytes:
    """[N,28,28] in [0,1] -> PNG bytes of one grid image."""
    raise NotImplementedError

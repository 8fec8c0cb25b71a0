"""Input limits shared by the command line, the server and training. Standard library only, so the
serve settings and every --help show them without importing numpy."""

from __future__ import annotations

from fmnist.errors import InputError

MAX_PIXELS = 2048 * 2048  # largest image decoded (width x height, read from its header first)
# numpy's legacy RandomState (the KDE samplers draw with it) takes seeds of 32 bits, no more
SEED_RANGE = (0, 2**32 - 1)


def seed_message(seed: object, flag: str = "--seed") -> str:
    """The one line every command and the server give for a seed out of SEED_RANGE."""
    low, high = SEED_RANGE
    return f"{flag} must be a whole number from {low} to {high:,} (2**32 - 1), not {seed}"


def check_seed(seed: int, flag: str = "--seed") -> int:
    """``seed`` when it is in SEED_RANGE, else InputError naming ``flag`` and the range."""
    low, high = SEED_RANGE
    if not low <= seed <= high:
        raise InputError(seed_message(seed, flag))
    return seed


def shown_pixels(pixels: int) -> str:
    """A pixel count as people read it: 4194304 -> "2048x2048" when square, else the number."""
    side = round(pixels**0.5)
    return f"{side}x{side}" if side * side == pixels else str(pixels)


def parse_pixels(text: str) -> int:
    """Pixels as WIDTHxHEIGHT ("2048x2048") or a count ("4194304"); ValueError for anything else."""
    text = str(text)  # Typer passes the default through too, an int
    width, sep, height = text.lower().partition("x")
    try:
        return int(width) * int(height) if sep else int(text)
    except ValueError:
        raise ValueError(f"expected WIDTHxHEIGHT (2048x2048) or a pixel count, not {text[:40]!r}") from None

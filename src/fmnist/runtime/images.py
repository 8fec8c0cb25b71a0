"""Image decoding and pre/post-processing to the bundle's input contract (Pillow + numpy)."""

from __future__ import annotations

import contextlib
import io
import math
import os
from pathlib import Path

import numpy as np

from fmnist.errors import InputError
from fmnist.runtime.limits import shown_pixels

INVERT_CHOICES = ("auto", "yes", "no")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
SIZE = 28
GRID_GREY = 128  # padding between the images of a grid
PNG_COMPRESSION = 1
GRID_COLUMNS = 32  # image pairs per row of a reconstruction grid
MAX_GRID = 1024  # image pairs per reconstruction grid
# above the background by this much (of the full range) a pixel is part of the garment: over JPEG
# noise and paper texture, under the faintest fabric
GARMENT_THRESHOLD = 0.08
# where Pillow's getexif() finds an orientation besides TIFF tags: EXIF (JPEG, WebP, PNG eXIf), an
# ImageMagick PNG text chunk, XMP
ORIENTATION_KEYS = {"exif", "Raw profile type exif", "xmp", "XML:com.adobe.xmp"}


@contextlib.contextmanager
def _reading(name: str):
    """Pillow's errors while reading ``name`` -> one-line InputErrors."""
    from PIL import Image, UnidentifiedImageError

    try:
        yield
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a folder, not an image") from None
    except PermissionError:
        raise InputError(f"{name}: permission denied") from None
    except UnidentifiedImageError:
        raise InputError(f"{name}: not an image Pillow can read") from None
    except Image.DecompressionBombError:
        raise InputError(f"{name}: image of too many pixels to decode safely (a decompression bomb?)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{name}: damaged or truncated image ({e})") from None


def open_image(source, name: str | None = None):
    """Path or bytes -> a Pillow image whose header is read but whose pixels are not decoded yet
    (so its size can be checked first). Errors name ``name``: the path, else "upload"."""
    from PIL import Image

    is_bytes = isinstance(source, bytes | bytearray)
    with _reading(name or ("upload" if is_bytes else str(source))):
        return Image.open(io.BytesIO(source) if is_bytes else source)


def decode(image, name: str = "upload"):
    """Decode now (a truncated file fails here, not later) and stand the image upright by its EXIF
    orientation (photos are often stored sideways)."""
    with _reading(name):
        image.load()
    if image.format == "TIFF" or ORIENTATION_KEYS & image.info.keys():  # getexif() is slow: skip when absent
        from PIL import ImageOps  # here: most images have no orientation, and the import costs a cold start

        image = ImageOps.exif_transpose(image)
    return image


def to_gray(image) -> np.ndarray:
    """Any Pillow mode -> float32 (H, W) in [0, 1]; transparency is composited on white."""
    from PIL import Image

    if image.mode.startswith("I;16"):  # 16-bit grayscale (PNG, TIFF)
        return np.asarray(image, dtype=np.float32) / 65535.0
    if image.mode in ("I", "F"):  # 32-bit integers or floats: scale by the range the values use
        a = np.asarray(image, dtype=np.float64)
        top = 1.0 if image.mode == "F" and a.max() <= 1 else 255.0 if a.max() <= 255 else 65535.0
        return np.clip(a / top, 0, 1).astype(np.float32)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    if image.mode != "L":
        image = image.convert("L")
    # frombuffer + multiply: cheaper than np.asarray(image, float32) / 255 on small images (the server's case)
    return np.frombuffer(image.tobytes(), np.uint8).reshape(image.height, image.width) * np.float32(1 / 255)


def needs_inversion(gray: np.ndarray) -> bool:
    """True when the border is light: a dark garment on a light background (photos, drawings)."""
    h, w = gray.shape
    total = gray[0].sum() + gray[-1].sum() + gray[:, 0].sum() + gray[:, -1].sum()
    return float(total) / (2 * (h + w)) > 0.5


def fit(gray: np.ndarray) -> np.ndarray:
    """Resize so the longer side is 28 (aspect ratio kept), centred on a black 28x28 canvas."""
    from PIL import Image

    h, w = gray.shape
    if (h, w) != (SIZE, SIZE):
        scale = SIZE / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        gray = np.asarray(Image.fromarray(gray).resize((nw, nh), Image.Resampling.BOX), dtype=np.float32)
    canvas = np.zeros((SIZE, SIZE), dtype=np.float32)
    top, left = (SIZE - gray.shape[0]) // 2, (SIZE - gray.shape[1]) // 2
    canvas[top : top + gray.shape[0], left : left + gray.shape[1]] = gray
    return np.clip(canvas, 0, 1)


def frame(gray: np.ndarray) -> np.ndarray:
    """A photo framed as Fashion-MNIST frames its garments: cropped to the garment's bounding box
    (pixels brighter than the border's median by GARMENT_THRESHOLD), which ``fit`` then scales to
    fill the 28-pixel side, with that background level taken to black. An image in which no pixel
    stands out from the rest (one flat colour, JPEG noise at most) holds no garment: it becomes
    all black, which ``is_blank`` tells. One with no pixel above the border's level otherwise (a
    garment filling the frame) is left as it is."""
    if float(gray.max() - gray.min()) <= GARMENT_THRESHOLD:
        return np.zeros_like(gray)
    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    background = float(np.median(border))
    rows, cols = np.nonzero(gray > background + GARMENT_THRESHOLD)
    if rows.size == 0:
        return gray
    crop = gray[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return np.clip((crop - background) / (1.0 - background), 0.0, 1.0)


def is_blank(x: np.ndarray) -> bool:
    """A preprocessed image with no garment in it: no pixel stands out from the rest (``frame``
    makes every flat photo all black, whatever its colour or size)."""
    return bool(blank_mask(x))


def blank_mask(images: np.ndarray) -> np.ndarray:
    """``is_blank`` of each image of (..., 28, 28) at once."""
    return images.max((-2, -1)) - images.min((-2, -1)) <= GARMENT_THRESHOLD


def preprocess(image, invert: str = "auto") -> np.ndarray:
    """A Pillow image -> float32 (28, 28) in [0, 1], light garment on black.

    A 28x28 image is taken as framed already (the Fashion-MNIST contract); any other size is
    framed by ``frame`` first, as photos carry margins and a grey or tinted background.
    """
    if invert not in INVERT_CHOICES:
        raise InputError(f"invert must be one of {', '.join(INVERT_CHOICES)}, not {invert!r}")
    gray = to_gray(image)
    if invert == "yes" or (invert == "auto" and needs_inversion(gray)):
        gray = 1.0 - gray
    return fit(gray if gray.shape == (SIZE, SIZE) else frame(gray))


def check_size(image, name: str, max_pixels: int, flag: str | None = None) -> None:
    """InputError when an opened image has more than ``max_pixels`` pixels, judged from its header
    before its pixels are decoded (a 140 kB PNG can hold 12000x12000 of them). ``flag``: the
    option that sets the limit, named in the message."""
    pixels = image.width * image.height
    if pixels > max_pixels:
        hint = f" ({shown_pixels(max_pixels)}; {flag} raises it)" if flag else ""
        raise InputError(f"{name}: image of {pixels} pixels is over the limit of {max_pixels}{hint}")


def load_image(source, invert: str = "auto", max_pixels: int | None = None, flag: str | None = None) -> np.ndarray:
    """Path or bytes of any Pillow-readable image -> float32 (28, 28) in [0, 1] per the contract.

    Raises InputError (one line) for missing, unreadable or truncated files, and for images of
    more than ``max_pixels`` pixels (None: no limit but Pillow's own; ``flag``: the option that
    raises it, named in that message).
    """
    name = "upload" if isinstance(source, bytes | bytearray) else str(source)
    image = open_image(source, name)
    if max_pixels is not None:
        check_size(image, name, max_pixels, flag)
    return preprocess(decode(image, name), invert)


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Files as given; folders replaced by their image files (sorted). A folder with none, or one
    that cannot be listed, is an error."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            found = [p / name for name in _image_names(p)]
            if not found:
                raise InputError(f"{p}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            out.extend(found)
        else:
            out.append(p)
    return out


def _image_names(folder: Path) -> list[str]:
    """The names of the image files in ``folder``, in the order of their paths. os.scandir: the
    file types come with the listing, without a stat per file."""
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if _suffix(e.name) in IMAGE_SUFFIXES and e.is_file()]
    except OSError as e:
        raise InputError(f"{folder}: cannot list the folder ({e.strerror or e})") from None
    return sorted(names, key=os.path.normcase)  # as paths compare: case-blind on Windows


def _suffix(name: str) -> str:
    """``Path(name).suffix.lower()``, without making the Path."""
    dot = name.rfind(".")
    return name[dot:].lower() if 0 < dot < len(name) - 1 else ""


def grid(images: np.ndarray, columns: int | None = None, pad: int = 2, scale: int = 1) -> np.ndarray:
    """(N, 28, 28) -> one uint8 image, ``columns`` wide (default: about square), grey padding;
    ``scale`` > 1 enlarges every pixel to a ``scale`` x ``scale`` block (nearest neighbour)."""
    n = len(images)
    columns = columns or math.ceil(math.sqrt(n))
    canvas = _canvas(math.ceil(n / columns), columns, pad)
    for k, img in enumerate(images):
        _place(canvas, img, *divmod(k, columns), pad)
    return upscale(canvas, scale)


def paired_grid(top: np.ndarray, bottom: np.ndarray, columns: int, pad: int = 2, scale: int = 1) -> np.ndarray:
    """Two (N, 28, 28) sets as pairs of rows, at most ``columns`` wide: image i of ``top`` right
    above image i of ``bottom`` (originals above their reconstructions)."""
    columns = min(columns, len(top))
    canvas = _canvas(2 * math.ceil(len(top) / columns), columns, pad)
    for k, (upper, lower) in enumerate(zip(top, bottom, strict=True)):
        r, c = divmod(k, columns)
        _place(canvas, upper, 2 * r, c, pad)
        _place(canvas, lower, 2 * r + 1, c, pad)
    return upscale(canvas, scale)


def pairs_per_grid(scale: int, columns: int = GRID_COLUMNS, most: int = MAX_GRID) -> int:
    """How many image pairs one ``paired_grid`` PNG holds at ``scale`` and stays under Pillow's
    decompression-bomb limit (with room for labels): at most ``most``, a whole number of rows."""
    from PIL import Image

    step = (SIZE + 2) * scale
    fits = int(Image.MAX_IMAGE_PIXELS / (2 * step * step * 1.15))
    return max(columns, min(most, fits) // columns * columns)


def label_rows(array: np.ndarray, labels: tuple[str, ...], scale: int, pad: int = 2) -> np.ndarray:
    """A grid (from ``grid``/``paired_grid`` at ``scale``) with a margin on the left naming each
    row, ``labels`` repeated down the rows (e.g. ("input", "recon")) in white on the grey."""
    from PIL import Image, ImageDraw, ImageFont

    row = (SIZE + pad) * scale
    font = ImageFont.load_default(size=max(10, 5 * scale))
    width = int(max(font.getlength(text) for text in labels)) + 4 * scale + 4
    image = Image.new("L", (array.shape[1] + width, array.shape[0]), GRID_GREY)
    image.paste(Image.fromarray(array), (width, 0))
    draw = ImageDraw.Draw(image)
    for r in range(array.shape[0] // row):
        y = pad * scale + r * row + SIZE * scale // 2
        draw.text((2 * scale + 2, y), labels[r % len(labels)], fill=255, font=font, anchor="lm")
    return np.asarray(image)


def _canvas(rows: int, columns: int, pad: int) -> np.ndarray:
    step = SIZE + pad
    return np.full((rows * step + pad, columns * step + pad), GRID_GREY, dtype=np.uint8)


def _place(canvas: np.ndarray, image: np.ndarray, r: int, c: int, pad: int) -> None:
    top, left = pad + r * (SIZE + pad), pad + c * (SIZE + pad)
    canvas[top : top + SIZE, left : left + SIZE] = to_uint8(image)


def upscale(array: np.ndarray, scale: int) -> np.ndarray:
    """Each pixel of a 2-D array as a ``scale`` x ``scale`` block: sharp edges, no invented detail."""
    return array if scale == 1 else np.repeat(np.repeat(array, scale, axis=0), scale, axis=1)


def to_uint8(images: np.ndarray) -> np.ndarray:
    return (np.clip(images, 0, 1) * 255 + 0.5).astype(np.uint8)


def png_bytes(array: np.ndarray) -> bytes:
    """PNG of a 2-D uint8 array (8-bit greyscale), written with zlib at level 1 and no row
    filters: a fifth larger than Pillow's default and several times faster to write, with no
    Pillow import (``fmnist generate`` never needs Pillow otherwise)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width = array.shape
    rows = np.zeros((height, width + 1), np.uint8)  # each row behind its filter byte, 0 (none)
    rows[:, 1:] = array
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit, greyscale, no interlace
    idat = zlib.compress(rows.tobytes(), PNG_COMPRESSION)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def to_png(images: np.ndarray, columns: int | None = None, scale: int = 1) -> bytes:
    """(N, 28, 28) in [0, 1] -> PNG bytes of one grid image, each pixel ``scale`` x ``scale``."""
    return png_bytes(grid(images, columns, scale=scale))

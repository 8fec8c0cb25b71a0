"""A product-photo test set made deterministically from Fashion-MNIST test images (numpy + Pillow).

Shops photograph a dark-ish garment on a light, slightly tinted background, at a few hundred
pixels, with margins, saved as JPEG. Each test image becomes such a photo, drawn from a generator
seeded by (seed, index), so the set is the same on every machine and for every bundle; classifying
it through the preprocessing of ``fmnist classify`` measures what users bringing photos get.
"""

from __future__ import annotations

import io

import numpy as np

SIZE_RANGE = (100, 300)  # the photo's longer side, pixels
FILL_RANGE = (0.6, 0.9)  # the garment's longer side as a fraction of the photo's
BACKGROUND_RANGE = (200, 255)  # each RGB channel of the light background
GARMENT_RANGE = (0, 110)  # each RGB channel of the darkest garment pixel
JPEG_QUALITY = (60, 95)


def photo(image: np.ndarray, rng: np.random.Generator) -> bytes:
    """One float (28, 28) image in [0, 1] (light garment on black) -> JPEG bytes of a photo."""
    from PIL import Image

    size = int(rng.integers(*SIZE_RANGE, endpoint=True))
    aspect = rng.uniform(0.75, 1.33)  # photos are rarely square
    width, height = (size, round(size / aspect)) if aspect >= 1 else (round(size * aspect), size)
    side = max(8, round(min(width, height) * rng.uniform(*FILL_RANGE)))
    background = rng.integers(*BACKGROUND_RANGE, size=3, endpoint=True).astype(np.float32)
    garment = rng.integers(*GARMENT_RANGE, size=3, endpoint=True).astype(np.float32)
    ink = np.asarray(Image.fromarray(image.astype(np.float32)).resize((side, side), Image.Resampling.BICUBIC))
    ink = np.clip(ink, 0, 1)[..., None]  # (side, side, 1): 1 where the garment is darkest
    canvas = np.empty((height, width, 3), np.float32)
    canvas[:] = background
    top = int(rng.integers(0, height - side, endpoint=True))
    left = int(rng.integers(0, width - side, endpoint=True))
    canvas[top : top + side, left : left + side] = background * (1 - ink) + garment * ink  # dark on light
    out = io.BytesIO()
    quality = int(rng.integers(*JPEG_QUALITY, endpoint=True))
    Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8), "RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def photo_set(images: np.ndarray, seed: int = 0) -> list[bytes]:
    """float (N, 28, 28) -> N JPEG photos; photo i depends only on (seed, i) and image i."""
    return [photo(image, np.random.default_rng([seed, i])) for i, image in enumerate(images)]

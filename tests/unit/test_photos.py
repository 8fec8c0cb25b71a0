import io

import numpy as np
from PIL import Image

from fmnist.runtime.images import load_image
from fmnist.runtime.photos import SIZE_RANGE, photo, photo_set


def _garment() -> np.ndarray:
    x = np.zeros((28, 28), np.float32)
    x[4:24, 8:20] = 1.0
    return x


def test_photo_sets_are_deterministic_per_index():
    images = np.stack([_garment(), _garment() * 0.5, _garment()])
    a, b = photo_set(images, seed=0), photo_set(images, seed=0)
    assert a == b
    assert a[0] != a[2]  # same garment, another index: another photo
    assert photo_set(images[:1], seed=1)[0] != a[0]


def test_a_photo_is_a_dark_garment_on_a_light_background_at_photo_size():
    jpeg = photo(_garment(), np.random.default_rng(0))
    image = Image.open(io.BytesIO(jpeg))
    assert image.format == "JPEG" and image.mode == "RGB"
    assert SIZE_RANGE[0] <= max(image.size) <= SIZE_RANGE[1]
    rgb = np.asarray(image, np.float32)
    assert rgb[0, 0].min() >= 190  # light corner
    assert rgb.mean(2).min() < 120  # a dark garment somewhere


def test_classify_preprocessing_recovers_the_garment_from_its_photo():
    x = load_image(photo(_garment(), np.random.default_rng(5)))
    assert x.shape == (28, 28)
    assert x.max() > 0.7 and x[:, :3].max() < 0.1  # a light garment; black beside its narrower side
    # framed like Fashion-MNIST: the garment's longer side fills the 28 pixels
    rows = np.nonzero(x.max(1) > 0.4)[0]
    assert rows.max() - rows.min() >= 24


def test_no_real_garment_or_its_photo_is_taken_for_an_empty_image():
    """The no-garment notice stays silent on real images: 300 test images and their photos."""
    import os
    from pathlib import Path

    import pytest

    from fmnist.runtime.evaluation import load_test_set
    from fmnist.runtime.images import is_blank

    root = os.environ.get("FMNIST_DATA")
    if not root or not (Path(root) / "FashionMNIST" / "raw").is_dir():
        pytest.skip("needs the Fashion-MNIST test set in $FMNIST_DATA")
    images = load_test_set(Path(root))[0][:300]
    pngs = [load_image(_png(x)) for x in images]
    photos = [load_image(jpeg) for jpeg in photo_set(images)]
    assert not any(is_blank(x) for x in pngs + photos)


def _png(x: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((x * 255 + 0.5).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()

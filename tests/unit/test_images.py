import io

import numpy as np
import pytest
from PIL import Image

from fmnist.errors import InputError
from fmnist.serve.images import expand_inputs, grid, load_image, needs_inversion, to_png


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_28x28_light_on_dark_image_passes_through_unchanged():
    a = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    a[0, :] = a[-1, :] = a[:, 0] = a[:, -1] = 0  # dark border: no inversion
    x = load_image(_png(a))
    assert x.dtype == np.float32 and x.shape == (28, 28)
    assert np.allclose(x, a / 255.0)


def test_auto_invert_follows_the_border():
    dark_on_white = np.full((40, 40), 255, np.uint8)
    dark_on_white[10:30, 15:25] = 0
    x = load_image(_png(dark_on_white))
    assert needs_inversion(dark_on_white / 255.0)
    assert x[14, 14] == pytest.approx(1.0) and x[0, 0] == 0.0  # garment light, background black
    assert load_image(_png(dark_on_white), invert="no")[0, 0] == pytest.approx(1.0)
    assert load_image(_png(dark_on_white), invert="yes")[14, 14] == pytest.approx(1.0)


def test_aspect_ratio_is_kept_and_the_image_centred():
    tall = np.zeros((100, 50), np.uint8)
    tall[:, :] = 200
    tall[0, :] = tall[-1, :] = tall[:, 0] = tall[:, -1] = 0
    x = load_image(_png(tall))
    cols = np.nonzero(x.max(0) > 0.1)[0]
    assert 12 <= len(cols) <= 14 and cols[0] >= 6  # 50/100 of 28 = 14 columns, centred
    assert np.nonzero(x.max(1) > 0.1)[0].size >= 26


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "I;16", "1", "LA"])
def test_any_colour_mode(mode):
    a = np.zeros((30, 30), np.uint8)
    a[8:22, 8:22] = 255
    x = load_image(_png(a, mode))
    assert x.shape == (28, 28) and x.min() >= 0 and x.max() <= 1 and x.max() > 0.5


def test_bad_inputs_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="not an image"):
        load_image(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="truncated"):
        load_image(_png(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8))[:200])
    with pytest.raises(InputError, match="holds no images"):
        expand_inputs([tmp_path])


def test_grid_layout():
    images = np.ones((5, 28, 28), np.float32)
    g = grid(images, columns=3)
    assert g.shape == (2 * 30 + 2, 3 * 30 + 2) and g.dtype == np.uint8
    assert Image.open(io.BytesIO(to_png(images))).size == (3 * 30 + 2, 2 * 30 + 2)

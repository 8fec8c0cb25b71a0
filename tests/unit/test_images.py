import io

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from fmnist.errors import InputError
from fmnist.runtime.images import expand_inputs, grid, load_image, needs_inversion, to_png


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


def test_auto_invert_keeps_a_light_garment_on_black():
    light_on_black = np.zeros((40, 40), np.uint8)
    light_on_black[10:30, 15:25] = 230
    assert not needs_inversion(light_on_black / 255.0)
    x = load_image(_png(light_on_black))
    assert x[14, 14] == pytest.approx(230 / 255) and x[0, 0] == 0.0
    assert load_image(_png(light_on_black), invert="yes")[0, 0] == pytest.approx(1.0)


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


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "1", "LA"])
def test_any_colour_mode(mode):
    a = np.zeros((28, 28), np.uint8)
    a[8:22, 8:22] = 255
    x = load_image(_png(a, mode))
    assert x.shape == (28, 28) and x.dtype == np.float32
    assert np.array_equal(x, a / 255.0)  # a white square on black, whatever the storage


def test_sixteen_bit_grayscale_uses_the_full_range():
    a = np.zeros((28, 28), np.uint16)
    a[8:22, 8:22] = 65535
    a[0, 5] = 32768
    image = Image.open(io.BytesIO(_png(a)))
    assert image.mode.startswith("I;16")
    x = load_image(_png(a))
    assert x[10, 10] == 1.0 and x[0, 5] == pytest.approx(0.5, abs=1e-4) and x[0, 0] == 0.0


def test_transparent_background_counts_as_background():
    rgba = np.zeros((28, 28, 4), np.uint8)  # fully transparent ...
    rgba[8:22, 8:22] = (0, 0, 0, 255)  # ... around an opaque black square
    x = load_image(_png(rgba))
    assert x[10, 10] == 1.0 and x[0, 0] == 0.0  # on white, then auto-inverted: light on black


def _sideways(fmt: str) -> bytes:
    """A 20x40 (wide) garment, framed by a black pixel, whose orientation tag (6: rotate to display)
    makes it tall."""
    buffer = io.BytesIO()
    image = Image.fromarray(np.pad(np.full((20, 40), 200, np.uint8), 1))
    if fmt == "JPEG":
        exif = Image.Exif()
        exif[0x0112] = 6
        image.save(buffer, format="JPEG", exif=exif)
    else:  # PNG with the orientation only in XMP, as some editors write it
        xmp = '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        xmp += '<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/>'
        xmp += "</rdf:RDF></x:xmpmeta>"
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp)
        image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG-XMP"])
def test_exif_rotation_is_applied(fmt):
    x = load_image(_sideways(fmt), invert="no")
    assert np.nonzero(x.max(0) > 0.1)[0].size == 14  # displayed tall: 14 columns, 28 rows
    assert np.nonzero(x.max(1) > 0.1)[0].size == 28


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


def test_a_blank_image_is_told_from_a_garment():
    from fmnist.runtime.images import is_blank

    assert is_blank(np.zeros((28, 28), np.float32)) and is_blank(np.full((28, 28), 0.5, np.float32))
    garment = np.zeros((28, 28), np.float32)
    garment[5:20, 8:18] = 0.6
    assert not is_blank(garment)


@pytest.mark.parametrize("shape", [(1, 1), (28, 28), (62, 122), (3, 500)])
def test_png_bytes_round_trips_through_pillow(shape):
    from fmnist.runtime.images import png_bytes

    a = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    image = Image.open(io.BytesIO(png_bytes(a)))
    assert image.format == "PNG" and image.mode == "L"
    np.testing.assert_array_equal(np.asarray(image), a)

import io

import numpy as np
import pytest
from PIL import Image

from semsam import read_image


def _png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_reads_rgb_grey_rgba_palette_and_16_bit(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    files = {
        "rgb.png": _png_bytes(rgb),
        "grey.png": _png_bytes(rgb[..., 0]),
        "rgba.png": _png_bytes(np.dstack([rgb, np.full((20, 30), 128, np.uint8)])),
        "grey16.png": _png_bytes(rgb[..., 0].astype(np.uint16) * 257),
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    assert np.array_equal(read_image(tmp_path / "rgb.png"), rgb)
    assert np.array_equal(read_image(tmp_path / "rgba.png"), rgb)
    grey = read_image(tmp_path / "grey.png")
    assert grey.shape == (20, 30, 3) and np.array_equal(grey[..., 1], rgb[..., 0])
    assert np.array_equal(read_image(tmp_path / "grey16.png"), grey)
    assert read_image(tmp_path / "palette.png").shape == (20, 30, 3)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.fromarray(np.zeros((10, 40, 3), np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert read_image(tmp_path / "rotated.jpg").shape == (40, 10, 3)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("notes.png", b"this is text, not pixels", "not an image file"),
        ("empty.jpg", b"", "not an image file"),
        ("truncated.png", None, "corrupt, truncated"),
    ],
)
def test_unreadable_files_are_named(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        content = _png_bytes(np.zeros((64, 64, 3), np.uint8) + 7)[:-40]
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        read_image(path)
    assert name in str(error.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ValueError, match="is not a file"):
        read_image(tmp_path)

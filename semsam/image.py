"""Reading images and bringing arrays of any common layout to HxWx3 uint8 RGB, or saying why not."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# The largest image `read_image` decodes (20000 x 20000): about 1.2 GB as RGB. Checked from the header, before
# decoding, so that a small file declaring a huge image costs nothing.
MAX_IMAGE_PIXELS = 20000 * 20000
# PIL's own decompression-bomb guard, which raises in `Image.open` above twice this; ours is the binding one.
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


class ImageTooLarge(ValueError):
    """An image whose header declares more pixels than allowed; refused before it is decoded."""


@contextmanager
def open_image(source: str | Path | BinaryIO, *, name: str, max_pixels: int) -> Iterator[Image.Image]:
    """Opens an image with PIL (header only), refusing it before decoding when it is too large.

    Raises:
        ImageTooLarge: naming its size and the limit.
        UnidentifiedImageError, OSError: from PIL, for content that is not an image.
    """
    try:
        with warnings.catch_warnings():
            # PIL warns between its limit and twice that; the size is checked below either way.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            handle = Image.open(source)
    except Image.DecompressionBombError as error:
        raise ImageTooLarge(f"{name} declares an image far above the limit of {max_pixels:,} pixels ({error}): "
                            "downscale it first") from None
    with handle:
        width, height = handle.size
        if width * height > max_pixels:
            raise ImageTooLarge(f"{name} is {width}x{height} = {width * height:,} pixels; the limit is "
                                f"{max_pixels:,} pixels: downscale it first")
        yield handle


def read_image(path: str | Path, *, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Reads an image file as HxWx3 uint8 RGB, applying its EXIF orientation.

    Args:
        path: the image file.
        max_pixels: larger images (width x height, from the header) are refused before decoding.

    Raises:
        ValueError: the file is missing, not an image, corrupt or truncated, or empty.
        ImageTooLarge: the image has more than `max_pixels` pixels.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"image file {path} does not exist")
    if not path.is_file():
        raise ValueError(f"image path {path} is not a file")
    try:
        with open_image(path, name=str(path), max_pixels=max_pixels) as handle:
            handle.load()
            image = ImageOps.exif_transpose(handle)
    except UnidentifiedImageError as error:
        raise ValueError(f"{path} is not an image file that can be read (PNG, JPEG, TIFF, BMP, WebP ...)") from error
    except (OSError, SyntaxError) as error:
        raise ValueError(f"{path} is corrupt, truncated or unreadable: {error}") from error
    return as_rgb_uint8(image)


def as_rgb_uint8(image: np.ndarray | Image.Image) -> np.ndarray:
    """Converts an image to a contiguous HxWx3 uint8 RGB array.

    Accepted: HxW grey, HxWx1, HxWx3 RGB, HxWx4 RGBA (alpha dropped); uint8, uint16 (scaled by 1/257),
    other integer types with values in 0..255, and floats in [0, 1]. PIL images of any mode (32-bit float "F"
    images must hold values in [0, 1], as float arrays do).

    Raises:
        ValueError: naming the shape, dtype or value range that is not accepted.
    """
    if isinstance(image, Image.Image):
        image = _pil_to_array(image)
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected a numpy array or PIL image, got {type(image).__name__}")
    if image.size == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        image = image[..., :3] if image.shape[2] != 1 else image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {image.shape}")
    return np.ascontiguousarray(_to_uint8(image))


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.bool_:
        raise ValueError("got a boolean array: that is a mask, not an image")
    if image.dtype == np.uint16:
        return np.round(image / 257.0).astype(np.uint8)
    if np.issubdtype(image.dtype, np.integer):
        low, high = int(image.min()), int(image.max())
        if low < 0 or high > 255:
            raise ValueError(f"integer image of dtype {image.dtype} has values in [{low}, {high}]; expected 0..255")
        return image.astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise ValueError("float image contains NaN or infinite values")
        low, high = float(image.min()), float(image.max())
        if low < 0 or high > 1:
            raise ValueError(
                f"float image has values in [{low:g}, {high:g}]; float images must be in [0, 1] "
                "(divide 0..255 data by 255, or pass uint8)"
            )
        return np.round(image * 255.0).astype(np.uint8)
    raise ValueError(f"unsupported image dtype {image.dtype}")


def _pil_to_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(image, dtype=np.uint16)
    if image.mode in ("RGB", "L"):
        return np.asarray(image)
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)
    return np.asarray(image.convert("RGB"))


def resize_long_side(image: np.ndarray, size: int) -> np.ndarray:
    """Resizes HxWx3 uint8 so that its long side is `size`, with PIL's bilinear filter, as `SamPredictor` does.

    Returns:
        The resized uint8 image; the short side is rounded half up, as SAM rounds it.
    """
    height, width = image.shape[:2]
    scale = size / max(height, width)
    return _resize(image, (max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))), Image.Resampling.BILINEAR)


def resize_short_side(image: np.ndarray, size: int) -> np.ndarray:
    """Resizes HxWx3 uint8 so that its short side is `size`, with PIL's bicubic filter, as the official Semantic-SAM
    demo does (torchvision `Resize(size)`: the long side becomes int(size * long / short))."""
    height, width = image.shape[:2]
    short, long = sorted((height, width))
    long = max(1, int(size * long / short))
    return _resize(image, (size, long) if height <= width else (long, size), Image.Resampling.BICUBIC)


def _resize(image: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    if image.shape[:2] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), resample))

"""Checking and decoding uploaded image bytes: sniff the format, check the size, then decode."""

from __future__ import annotations

import io

import numpy as np
from PIL import ImageOps, UnidentifiedImageError

from semsam.image import ImageTooLarge, as_rgb_uint8, open_image

# Magic numbers of the formats the page accepts; anything else is refused before PIL sees it.
SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "JPEG": (b"\xff\xd8\xff",),
    "GIF": (b"GIF87a", b"GIF89a"),
    "BMP": (b"BM",),
    "TIFF": (b"II*\x00", b"MM\x00*"),
}
ACCEPTED = "PNG, JPEG, WebP, GIF, BMP or TIFF"


class UploadError(ValueError):
    """An upload that is refused; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


def sniff_format(data: bytes) -> str | None:
    """The image format named by the leading bytes, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for name, prefixes in SIGNATURES.items():
        if data.startswith(prefixes):
            return name
    return None


def decode_upload(data: bytes, *, filename: str, max_bytes: int, max_pixels: int) -> np.ndarray:
    """Decodes uploaded bytes to HxWx3 uint8 RGB, applying EXIF orientation.

    Raises:
        UploadError: empty (400), too large in bytes or pixels (413), not an image (415), corrupt (422).
    """
    if not data:
        raise UploadError(f"{filename!r} is empty: choose an image file ({ACCEPTED})", status=400)
    if len(data) > max_bytes:
        raise UploadError(
            f"{filename!r} is {len(data) / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.1f} MiB", status=413
        )
    kind = sniff_format(data)
    if kind is None:
        raise UploadError(
            f"{filename!r} is not an image this server reads: its content is not {ACCEPTED}", status=415
        )
    try:
        with open_image(io.BytesIO(data), name=repr(filename), max_pixels=max_pixels) as handle:
            handle.load()
            image = ImageOps.exif_transpose(handle)
    except ImageTooLarge as error:
        raise UploadError(str(error), status=413) from None
    except UnidentifiedImageError:
        raise UploadError(f"{filename!r} looks like {kind} but cannot be read as an image", status=415) from None
    except (OSError, SyntaxError) as error:
        raise UploadError(f"{filename!r} is a corrupt or truncated {kind} file: {error}", status=422) from None
    return as_rgb_uint8(image)

"""COCO run-length encoding of masks and atomic writers for JSON and PNG outputs."""

from __future__ import annotations

import glob
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """Encodes a binary mask as COCO RLE that `json.dumps` accepts.

    Args:
        mask: HxW boolean (or 0/1) array.

    Returns:
        {"size": [H, W], "counts": str}.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask_to_rle needs a 2-D HxW mask, got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Decodes COCO RLE (compressed `counts` as str or bytes) back to a mask.

    Args:
        rle: {"size": [H, W], "counts": str | bytes}.

    Returns:
        HxW boolean array.
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError("rle_to_mask needs a dict with 'size' and 'counts' (COCO RLE)")
    counts = rle["counts"]
    if isinstance(counts, list):
        raise ValueError("uncompressed RLE (counts as a list) is not supported; pass compressed COCO RLE")
    encoded = {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(encoded).astype(bool)


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Runs `write` on a temp file beside `path`, then renames it over `path`; the temp file never survives."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Deletes the temp files a killed `write_atomic(path, ...)` left beside `path` (a kill skips its cleanup).

    Call it only where no other process is writing `path` at the same time.

    Returns:
        The files deleted.
    """
    path = Path(path)
    stale = sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def _umask() -> int:
    # mkstemp creates files 0600; outputs should get the same permissions as a plain open() would give.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Writes `obj` as indented JSON; an existing file survives any failure unchanged.

    Args:
        path: destination file; its parent directory is created.
        obj: anything `json.dumps` accepts, with finite floats only (NaN and infinity are not JSON).

    Returns:
        The destination path.

    Raises:
        ValueError: `obj` holds NaN or infinity; nothing is written.
    """
    try:
        text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    except ValueError:
        raise ValueError(f"not writing {path}: the results hold NaN or infinite numbers, which JSON cannot carry "
                         "(the model's weights or inputs are broken)") from None
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_png_atomic(path: str | Path, image: Image.Image | np.ndarray) -> Path:
    """Writes a PNG; an existing file survives any failure unchanged.

    Args:
        path: destination file; its parent directory is created.
        image: a PIL image, or an HxW / HxWx3 / HxWx4 array (bool arrays become 0/255).

    Returns:
        The destination path.
    """
    if isinstance(image, np.ndarray):
        image = _array_to_image(image)
    elif not isinstance(image, Image.Image):
        raise TypeError(f"write_png_atomic needs a PIL image or numpy array, got {type(image).__name__}")
    return write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))


def _array_to_image(array: np.ndarray) -> Image.Image:
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        raise ValueError(f"PNG arrays must be uint8 or bool, got {array.dtype}; convert with .astype(np.uint8)")
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4)):
        return Image.fromarray(array)
    raise ValueError(f"PNG arrays must be HxW, HxWx3 or HxWx4, got shape {array.shape}")

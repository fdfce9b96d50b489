"""Simulated clicks of the interactive-segmentation protocol (RITM, SAM): interior-most pixels of error regions."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage


class Click(NamedTuple):
    """A click on a pixel: row, column, and whether it is positive (add) or negative (remove)."""

    row: int
    col: int
    positive: bool


def interior_pixel(region: np.ndarray) -> tuple[int, int] | None:
    """The pixel of a region farthest from its boundary (Euclidean; the image border counts as boundary).

    Args:
        region: [H, W] bool.

    Returns:
        (row, col), the first such pixel in raster order, or None for an empty region.
    """
    if not region.any():
        return None
    _, row, col = _deepest(region)
    return row, col


def corrective_click(prediction: np.ndarray, truth: np.ndarray) -> Click | None:
    """The next click: at the interior-most pixel of the larger error region.

    A false-negative region (object missed) gets a positive click, a false-positive region a negative one; the
    larger region is the one whose interior-most pixel lies deeper, as in RITM's protocol (ties: positive).

    Args:
        prediction: [H, W] bool, the current mask.
        truth: [H, W] bool, the target mask.

    Returns:
        The click, or None when the prediction is exact.
    """
    candidates = [(_deepest(region), positive)
                  for region, positive in ((truth & ~prediction, True), (prediction & ~truth, False)) if region.any()]
    if not candidates:
        return None
    (_, row, col), positive = max(candidates, key=lambda candidate: candidate[0][0])
    return Click(row, col, positive)


def _deepest(region: np.ndarray) -> tuple[float, int, int]:
    """Distance to the boundary, row and column of a non-empty region's interior-most pixel."""
    distance = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    index = int(np.argmax(distance))
    row, col = np.unravel_index(index, region.shape)
    return float(distance.flat[index]), int(row), int(col)

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


def corrective_click(
    prediction: np.ndarray,
    truth: np.ndarray,
    *,
    ignore: np.ndarray | None = None,
    clicked: np.ndarray | None = None,
) -> Click | None:
    """The next click: at the interior-most pixel of the larger error region.

    A false-negative region (object missed) gets a positive click, a false-positive region a negative one; the
    larger region is the one whose interior-most pixel lies deeper, as in RITM's protocol (ties: negative).

    Args:
        prediction: [H, W] bool, the current mask.
        truth: [H, W] bool, the target mask.
        ignore: [H, W] bool, pixels that are never errors (a benchmark's uncertain boundary band); None for none.
        clicked: [H, W] bool, pixels clicked before, which RITM never clicks again; None for none.

    Returns:
        The click, or None when no error pixel is left to click (the prediction is exact).
    """
    best: tuple[float, int, int, bool] | None = None
    for region, positive in ((truth & ~prediction, True), (prediction & ~truth, False)):
        if ignore is not None:
            region = region & ~ignore
        if not region.any():
            continue
        depth, row, col = _deepest(region, clicked)
        if depth > 0 and (best is None or depth >= best[0]):
            best = (depth, row, col, positive)
    return None if best is None else Click(*best[1:])


def _deepest(region: np.ndarray, excluded: np.ndarray | None = None) -> tuple[float, int, int]:
    """Distance to the boundary, row and column of a non-empty region's interior-most pixel (the first in raster
    order), leaving out `excluded` pixels (depth 0 when all are)."""
    distance = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    if excluded is not None:
        distance[excluded] = 0
    index = int(np.argmax(distance))
    row, col = np.unravel_index(index, region.shape)
    return float(distance.flat[index]), int(row), int(col)

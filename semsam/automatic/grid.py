"""Where to prompt: regular point grids and the overlapping crops of each crop layer."""

from __future__ import annotations

import math

import numpy as np


def point_grid(points_per_side: int) -> np.ndarray:
    """A regular grid of cell centres in [0, 1]^2.

    Args:
        points_per_side: points along each side.

    Returns:
        [points_per_side**2, 2] float32 (x, y).
    """
    if points_per_side < 1:
        raise ValueError(f"points_per_side must be at least 1, got {points_per_side}")
    centres = (np.arange(points_per_side, dtype=np.float32) + 0.5) / points_per_side
    x, y = np.meshgrid(centres, centres)
    return np.stack([x.ravel(), y.ravel()], 1)


def crop_boxes(
    width: int, height: int, *, crop_n_layers: int, overlap_ratio: float
) -> tuple[list[tuple[int, int, int, int]], list[int]]:
    """The whole image, then for layer i = 1..n a 2^i x 2^i grid of overlapping crops.

    Args:
        width, height: image size in pixels.
        crop_n_layers: how many layers of crops below the whole image.
        overlap_ratio: overlap between neighbouring crops, as a fraction of the shorter image side at layer 1
            (halved with each further layer).

    Returns:
        Boxes (x0, y0, x1, y1) with exclusive ends, and the layer of each (0 = whole image).
    """
    if crop_n_layers < 0:
        raise ValueError(f"crop_n_layers must be 0 or more, got {crop_n_layers}")
    if not 0 <= overlap_ratio < 1:
        raise ValueError(f"crop_overlap_ratio must be in [0, 1), got {overlap_ratio}")
    boxes, layers = [(0, 0, width, height)], [0]
    for layer in range(1, crop_n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * min(width, height) * 2 / per_side)
        crop_w = math.ceil((width + overlap * (per_side - 1)) / per_side)
        crop_h = math.ceil((height + overlap * (per_side - 1)) / per_side)
        for y0 in (int((crop_h - overlap) * j) for j in range(per_side)):
            for x0 in (int((crop_w - overlap) * i) for i in range(per_side)):
                boxes.append((x0, y0, min(x0 + crop_w, width), min(y0 + crop_h, height)))
                layers.append(layer)
    return boxes, layers

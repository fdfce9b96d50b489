"""Zoom-in for corrective clicks (RITM, Sofiiuk et al. 2022): after the first clicks, the model looks at a crop
around the object, at the encoder's full input resolution, instead of at the whole image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from semsam.data.records import mask_boxes

Box = tuple[int, int, int, int]
# The logit of a pixel outside the crop an answer was given on: sure background.
BACKGROUND_LOGIT = -20.0


@dataclass(frozen=True)
class ZoomIn:
    """When and where to crop.

    Args:
        skip_clicks: the first this many clicks of an object see the whole image.
        expansion: the crop is the box of the previous mask and the positive clicks, scaled by this around its centre.
        min_size: the crop is at least this many pixels wide and high (where the image allows).
        recompute_iou: the crop is re-encoded only when the new box overlaps the current one by less than this IoU;
            otherwise the current crop and the model's own logits are kept.
    """

    skip_clicks: int = 2
    expansion: float = 1.8
    min_size: int = 40
    recompute_iou: float = 0.5

    def __post_init__(self) -> None:
        if self.skip_clicks < 1 or not self.expansion >= 1 or self.min_size < 1 or not 0 <= self.recompute_iou <= 1:
            raise ValueError(f"ZoomIn needs skip_clicks >= 1, expansion >= 1, min_size >= 1 and "
                             f"0 <= recompute_iou <= 1, got {self.skip_clicks}, {self.expansion}, {self.min_size} "
                             f"and {self.recompute_iou}")

    def crop_box(self, mask: np.ndarray, points: Sequence[Sequence[int]], labels: Sequence[int]) -> Box:
        """The crop (x0, y0, x1, y1, exclusive) for the next click.

        Args:
            mask: [H, W] bool, the previous answer.
            points: clicks so far as (x, y) pixels.
            labels: 1 for a positive click, 0 for a negative one.

        Returns:
            The box around the mask and the positive clicks, scaled by `expansion`, grown to `min_size`, clipped
            to the image.
        """
        height, width = mask.shape
        corners = [tuple(p) for p, label in zip(points, labels) if label]
        if mask.any():
            x0, y0, x1, y1 = mask_boxes(mask[None])[0].tolist()
            corners += [(x0, y0), (x1 - 1, y1 - 1)]
        if not corners:
            return 0, 0, width, height
        (x0, y0), (x1, y1) = np.min(corners, 0), np.max(corners, 0) + 1
        centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
        half_w = max((x1 - x0) * self.expansion, self.min_size) / 2
        half_h = max((y1 - y0) * self.expansion, self.min_size) / 2
        return (max(0, round(centre_x - half_w)), max(0, round(centre_y - half_h)),
                min(width, round(centre_x + half_w)), min(height, round(centre_y + half_h)))

    def next_crop(
        self, mask: np.ndarray, points: Sequence[Sequence[int]], labels: Sequence[int], current: Box | None
    ) -> Box:
        """The crop to answer the next click on: `current` while the new `crop_box` overlaps it by at least
        `recompute_iou`, else the new box.

        Args:
            mask: [H, W] bool, the previous answer.
            points: clicks so far as (x, y) pixels.
            labels: 1 for a positive click, 0 for a negative one.
            current: the crop the previous answer was given on; None for the whole image.
        """
        box = self.crop_box(mask, points, labels)
        return box if current is None or box_iou(box, current) < self.recompute_iou else current


def clicks_in_crop(
    points: Sequence[Sequence[float]], labels: Sequence[int], crop: Box
) -> tuple[list[tuple[float, float]], list[int]]:
    """The clicks inside `crop` (x0, y0, x1, y1, exclusive), in the crop's pixels, and their labels."""
    x0, y0, x1, y1 = crop
    inside = [i for i, (x, y) in enumerate(points) if x0 <= x < x1 and y0 <= y < y1]
    return [(points[i][0] - x0, points[i][1] - y0) for i in inside], [labels[i] for i in inside]


def paste(values: np.ndarray, crop: Box, size: tuple[int, int], fill: float | bool) -> np.ndarray:
    """`values` [..., h, w] answered on `crop`, placed in an array [..., H, W] of the whole image, `fill` elsewhere."""
    x0, y0, x1, y1 = crop
    whole = np.full((*values.shape[:-2], *size), fill, values.dtype)
    whole[..., y0:y1, x0:x1] = values
    return whole


def box_iou(first: Box, second: Box) -> float:
    """IoU of two (x0, y0, x1, y1) pixel boxes with exclusive ends; 0 when both are empty."""
    width = max(0, min(first[2], second[2]) - max(first[0], second[0]))
    height = max(0, min(first[3], second[3]) - max(first[1], second[1]))
    inter = width * height
    union = ((first[2] - first[0]) * (first[3] - first[1]) + (second[2] - second[0]) * (second[3] - second[1])
             - inter)
    return inter / union if union > 0 else 0.0

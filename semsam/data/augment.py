"""Resizing, scale jitter, cropping and flipping of a record, with masks following the image exactly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from semsam.data.records import SegmentationRecord, merge_duplicates


@dataclass
class AugmentedImage:
    """A record after augmentation; only masks that are still visible are kept."""

    image: np.ndarray  # [h, w, 3] uint8
    masks: np.ndarray  # [M, h, w] bool, no empty masks, no near-duplicates
    object_classes: list[int | None] | None
    part_classes: list[int | None] | None
    part_of: list[int | None] | None = None  # indices into this view's masks


def augment(
    record: SegmentationRecord,
    *,
    image_size: int,
    rng: np.random.Generator,
    flip: bool,
    scale_range: tuple[float, float] | None,
    duplicate_iou: float,
) -> AugmentedImage:
    """Resizes the longest side to `image_size` (times a random scale), crops to fit, and maybe flips.

    Args:
        record: the source image and masks.
        image_size: the longest side after resizing, and the crop size when jitter enlarges the image.
        rng: randomness.
        flip: mirror horizontally with probability 0.5.
        scale_range: (low, high) for a uniform random scale factor, or None for no jitter.
        duplicate_iou: masks that become near-duplicates after resizing are merged above this IoU.

    Returns:
        The augmented image (bilinear) and masks (nearest neighbour).
    """
    if scale_range is not None and not 0 < scale_range[0] <= scale_range[1]:
        raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range}")
    height, width = record.image.shape[:2]
    scale = image_size / max(height, width)
    if scale_range is not None:
        scale *= rng.uniform(*scale_range)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    top = int(rng.integers(0, new_h - image_size + 1)) if new_h > image_size else 0
    left = int(rng.integers(0, new_w - image_size + 1)) if new_w > image_size else 0
    rows = _source_index(height, new_h)[top : top + image_size]
    cols = _source_index(width, new_w)[left : left + image_size]
    resized = Image.fromarray(record.image).resize((new_w, new_h), Image.Resampling.BILINEAR)
    image = np.asarray(resized)[top : top + len(rows), left : left + len(cols)]
    if flip and rng.random() < 0.5:
        cols, image = cols[::-1], image[:, ::-1]
    # Nearest-neighbour resize, crop and flip are one gather; dropping the masks it would empty first keeps it small.
    visible = np.flatnonzero(record.masks[:, np.unique(rows)][:, :, np.unique(cols)].any((1, 2)))
    masks = record.masks if len(visible) == len(record.masks) else record.masks[visible]
    cropped = SegmentationRecord(
        image=np.array(image),
        masks=np.take(np.take(masks, cols, axis=2), rows, axis=1),
        object_classes=_select(record.object_classes, visible),
        part_classes=_select(record.part_classes, visible),
        image_id=record.image_id,
        part_of=_select_links(record.part_of, visible),
    )
    merged = merge_duplicates(cropped, iou_threshold=duplicate_iou)
    return AugmentedImage(merged.image, merged.masks, merged.object_classes, merged.part_classes, merged.part_of)


def _source_index(source: int, target: int) -> np.ndarray:
    """For each output pixel along one axis, the nearest source pixel (pixel centres aligned)."""
    return np.minimum(((np.arange(target) + 0.5) * (source / target)).astype(np.int64), source - 1)


def _select(classes: list[int | None] | None, keep: np.ndarray) -> list[int | None] | None:
    return None if classes is None else [classes[int(i)] for i in keep]


def _select_links(part_of: list[int | None] | None, keep: np.ndarray) -> list[int | None] | None:
    """Part links among the kept masks, renumbered; a part whose object was cropped away loses its link."""
    if part_of is None:
        return None
    new_index = {int(old): new for new, old in enumerate(keep.tolist())}
    return [None if part_of[int(i)] is None else new_index.get(part_of[int(i)]) for i in keep]

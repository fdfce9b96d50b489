"""The one record type every training dataset yields, a dataset base class, and near-duplicate merging."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SegmentationRecord:
    """One image with all its ground-truth masks, at any granularity.

    Args:
        image: [H, W, 3] uint8 RGB.
        masks: [M, H, W] bool; M may be 0.
        object_classes: per mask an object class id or None; None when the dataset has no object labels.
        part_classes: per mask a part class id or None; None when the dataset has no part labels.
        image_id: a name for the image, used in error messages and logs.
        part_of: per mask the index of the whole-object mask it is a part of, or None; None when the dataset
            links no parts to objects.
    """

    image: np.ndarray
    masks: np.ndarray
    object_classes: list[int | None] | None
    part_classes: list[int | None] | None
    image_id: str
    part_of: list[int | None] | None = None

    def __post_init__(self) -> None:
        where = f"record {self.image_id!r}"
        if not isinstance(self.image, np.ndarray) or self.image.ndim != 3 or self.image.shape[2] != 3:
            shape = getattr(self.image, "shape", type(self.image).__name__)
            raise ValueError(f"{where}: image must be an [H, W, 3] numpy array, got {shape}; convert it to RGB")
        if self.image.dtype != np.uint8:
            raise ValueError(f"{where}: image must be uint8 (0..255), got {self.image.dtype}")
        if not isinstance(self.masks, np.ndarray) or self.masks.ndim != 3:
            shape = getattr(self.masks, "shape", type(self.masks).__name__)
            raise ValueError(f"{where}: masks must be an [M, H, W] numpy array, got {shape}")
        if self.masks.dtype != np.bool_:
            raise ValueError(f"{where}: masks must be bool, got {self.masks.dtype}; use masks.astype(bool)")
        if self.masks.shape[1:] != self.image.shape[:2]:
            raise ValueError(
                f"{where}: masks are {self.masks.shape[1]}x{self.masks.shape[2]} but the image is "
                f"{self.image.shape[0]}x{self.image.shape[1]}; masks must match the image size"
            )
        for name in ("object_classes", "part_classes"):
            classes = getattr(self, name)
            if classes is not None and len(classes) != len(self.masks):
                raise ValueError(
                    f"{where}: {name} has {len(classes)} entries for {len(self.masks)} masks; give one per mask "
                    "(None for an unlabelled mask) or pass None for the whole list"
                )
        if self.part_of is not None:
            self._check_part_of(where)

    def _check_part_of(self, where: str) -> None:
        if len(self.part_of) != len(self.masks):
            raise ValueError(
                f"{where}: part_of has {len(self.part_of)} entries for {len(self.masks)} masks; give one per mask "
                "(None for a mask that is no part) or pass None for the whole list"
            )
        for index, whole in enumerate(self.part_of):
            if whole is None:
                continue
            if isinstance(whole, bool) or not isinstance(whole, (int, np.integer)):
                raise ValueError(f"{where}: part_of[{index}] is {whole!r}; it must be a mask index or None")
            if not 0 <= whole < len(self.masks) or whole == index:
                raise ValueError(
                    f"{where}: part_of[{index}] = {whole} is not the index of another mask (there are "
                    f"{len(self.masks)} masks); a part must point at its whole object's mask"
                )

    @property
    def num_masks(self) -> int:
        return int(self.masks.shape[0])


class SegmentationDataset:
    """Base class of training datasets: a sized, indexable collection of `SegmentationRecord`s.

    `object_names` and `part_names` name the class ids that records carry (None for class-agnostic data).
    """

    object_names: tuple[str, ...] | None = None
    part_names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> SegmentationRecord:
        raise NotImplementedError


def duplicate_groups(masks: np.ndarray, *, iou_threshold: float) -> np.ndarray:
    """Groups masks whose IoU with an earlier kept mask exceeds `iou_threshold`.

    Args:
        masks: [M, H, W] bool.
        iou_threshold: masks above this IoU with a kept mask join its group.

    Returns:
        [M] long: for each mask, the index of the kept mask it merges into (itself if kept).
    """
    count = len(masks)
    keep_of = np.arange(count)
    if count < 2:
        return keep_of
    row_counts = masks.view(np.uint8).sum(2, dtype=np.int32)
    areas = row_counts.sum(1).astype(np.float64)
    x0, y0, x1, y1 = mask_boxes(masks, occupied_rows=row_counts > 0).T
    overlap_h = np.clip(np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None]), 0, None)
    overlap_w = np.clip(np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None]), 0, None)
    larger = np.maximum(areas[:, None], areas[None])
    # The masks' intersection fits in both their area and their boxes' overlap, and IoU >= t needs it >= t * larger.
    bound = np.minimum(np.minimum(areas[:, None], areas[None]), overlap_h * overlap_w)
    firsts, seconds = np.nonzero(np.triu(bound > iou_threshold * np.maximum(larger, 1.0), k=1))
    for first, second in zip(firsts.tolist(), seconds.tolist()):
        if keep_of[first] != first or keep_of[second] != second:
            continue
        rows = slice(max(y0[first], y0[second]), min(y1[first], y1[second]))
        cols = slice(max(x0[first], x0[second]), min(x1[first], x1[second]))
        inter = np.count_nonzero(masks[first, rows, cols] & masks[second, rows, cols])
        if inter / (areas[first] + areas[second] - inter) > iou_threshold:
            keep_of[second] = first
    return keep_of


def mask_boxes(masks: np.ndarray, *, occupied_rows: np.ndarray | None = None) -> np.ndarray:
    """Pixel bounding boxes of masks.

    Args:
        masks: [M, H, W] bool.
        occupied_rows: optional precomputed `masks.any(2)`.

    Returns:
        [M, 4] int64 (x0, y0, x1, y1) with exclusive x1, y1; all zero for an empty mask.
    """
    rows = masks.any(2) if occupied_rows is None else occupied_rows
    x0, x1 = _extent(masks.any(1))
    y0, y1 = _extent(rows)
    return np.stack([x0, y0, x1, y1], axis=1)


def _extent(occupied: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last occupied index along the last axis of [M, L] bool (0, 0 when empty)."""
    length = occupied.shape[1]
    any_ = occupied.any(1)
    start = np.where(any_, occupied.argmax(1), 0)
    stop = np.where(any_, length - occupied[:, ::-1].argmax(1), 0)
    return start, stop


def merge_duplicates(record: SegmentationRecord, *, iou_threshold: float = 0.95) -> SegmentationRecord:
    """Drops near-duplicate masks, keeping the first of each group and any class or link the others carried.

    Part links follow their masks to the kept ones; a part that merged into its own object loses its link.

    Args:
        record: the record to clean.
        iou_threshold: masks with IoU above this are one mask.

    Returns:
        A record with only the kept masks (the same record if nothing merged).
    """
    keep_of = duplicate_groups(record.masks, iou_threshold=iou_threshold)
    kept = np.flatnonzero(keep_of == np.arange(len(keep_of)))
    if len(kept) == len(keep_of):
        return record
    return SegmentationRecord(
        image=record.image,
        masks=record.masks[kept],
        object_classes=_merge_classes(record.object_classes, keep_of, kept),
        part_classes=_merge_classes(record.part_classes, keep_of, kept),
        image_id=record.image_id,
        part_of=_merge_links(record.part_of, keep_of, kept),
    )


def _merge_links(part_of: list[int | None] | None, keep_of: np.ndarray, kept: np.ndarray) -> list[int | None] | None:
    if part_of is None:
        return None
    new_index = {int(k): i for i, k in enumerate(kept.tolist())}
    links: list[int | None] = []
    for slot, index in enumerate(kept.tolist()):
        members = np.flatnonzero(keep_of == index).tolist()
        wholes = [new_index[int(keep_of[part_of[m]])] for m in members if part_of[m] is not None]
        links.append(next((w for w in wholes if w != slot), None))
    return links


def _merge_classes(classes: list[int | None] | None, keep_of: np.ndarray, kept: np.ndarray) -> list[int | None] | None:
    if classes is None:
        return None
    merged: dict[int, int | None] = {int(k): classes[int(k)] for k in kept}
    for index, target in enumerate(keep_of.tolist()):
        if merged[target] is None:
            merged[target] = classes[index]
    return [merged[int(k)] for k in kept]


def stack_masks(masks: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """[M, H, W] bool from a list of [H, W] masks, also when the list is empty."""
    return np.stack(masks).astype(bool, copy=False) if masks else np.zeros((0, *size), dtype=bool)

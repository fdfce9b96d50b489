"""What automatic masks become: the mask record, per-level label maps and the whole/part tree."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from pycocotools import mask as mask_utils

from semsam.automatic.masks import box_intersections, to_pycocotools
from semsam.io import mask_to_rle, rle_to_mask
from semsam.prediction import MaskLabel

# A mask's parent must cover at least this fraction of the mask's own area.
CONTAINMENT_THRESHOLD = 0.9
# Joins the names along a path of the whole/part tree: "person > hair".
PATH_SEPARATOR = " > "


@dataclass
class GeneratedMask:
    """One automatic mask, in pixel coordinates of the original image.

    `segmentation` is an HxW bool array (output_mode "binary_mask") or COCO RLE with `counts` as str
    ("coco_rle"). Boxes are XYWH as in COCO and SA-1B. `stability_score` is measured on the model's
    low-resolution logits, where the generator filters. `parent` and `children` are ids (indices into the
    generator's result list) in the whole/part tree.
    """

    id: int
    level: int
    segmentation: np.ndarray | dict[str, Any]
    area: int
    bbox: tuple[float, float, float, float]
    predicted_iou: float
    stability_score: float
    point_coords: tuple[float, float]
    crop_box: tuple[int, int, int, int]
    label: MaskLabel | None = None
    # Object and part probabilities over the labelling vocabulary (not written to files).
    label_probabilities: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    parent: int | None = None
    children: list[int] = field(default_factory=list)

    def mask(self) -> np.ndarray:
        """The HxW bool mask, decoded from RLE when needed."""
        if isinstance(self.segmentation, dict):
            return rle_to_mask(self.segmentation)
        return self.segmentation

    def rle(self) -> dict[str, Any]:
        """The mask as COCO RLE (counts as str), encoded from the bool array when needed."""
        if isinstance(self.segmentation, dict):
            return self.segmentation
        return mask_to_rle(self.segmentation)

    def to_sa1b(self) -> dict[str, Any]:
        """The SA-1B annotation fields, plus `level` (and `label`, `parent`, `children`)."""
        return {
            "id": self.id,
            "segmentation": self.rle(),
            "bbox": [float(v) for v in self.bbox],
            "area": int(self.area),
            "predicted_iou": float(self.predicted_iou),
            "stability_score": float(self.stability_score),
            "point_coords": [[float(v) for v in self.point_coords]],
            "crop_box": [int(v) for v in self.crop_box],
            "level": int(self.level),
            "label": None if self.label is None else vars(self.label),
            "parent": self.parent,
            "children": list(self.children),
        }


@dataclass(frozen=True)
class MaskName:
    """What a labelled mask is called in the whole/part tree.

    `kind` is "object" (`name` is the label's object) or "part" (`name` is the label's part); `path` names the
    part with the wholes it belongs to, e.g. "person > hair".
    """

    kind: Literal["object", "part"]
    name: str
    path: str


def link_tree(masks: list[GeneratedMask], rles: list[dict[str, Any]], threshold: float = CONTAINMENT_THRESHOLD) -> None:
    """Sets `parent` and `children`: each mask's parent is the smallest mask of a coarser level containing it.

    Overlaps are measured by pycocotools on RLE, only for pairs that areas and boxes leave possible.

    Args:
        masks: the generated masks; `id` must equal the list index.
        rles: their COCO RLEs (counts as str), in the same order.
        threshold: mask B contains mask A when area(A & B) >= threshold * area(A).
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"containment threshold must be in (0, 1], got {threshold}")
    for mask in masks:
        mask.parent, mask.children = None, []
    if not masks:
        return
    levels = np.array([m.level for m in masks])
    areas = np.array([m.area for m in masks], dtype=np.float64)
    scores = np.array([m.predicted_iou for m in masks])
    boxes = torch.tensor([(x, y, x + w, y + h) for x, y, w, h in (m.bbox for m in masks)], dtype=torch.float64)
    # area(A & B) is at most area(B) and the overlap of their boxes: pairs where either is too small cannot nest.
    needed = threshold * areas[:, None]
    possible = ((levels[None] > levels[:, None]) & (areas[None] >= needed)
                & (box_intersections(boxes).numpy() >= needed))
    encoded = to_pycocotools(rles)
    for i, mask in enumerate(masks):
        candidates = np.flatnonzero(possible[i])
        if not len(candidates):
            continue
        # With every "ground truth" marked crowd, pycocotools divides the intersection by the first argument's area.
        inside = np.asarray(mask_utils.iou([encoded[i]], [encoded[j] for j in candidates], [1] * len(candidates)))
        candidates = candidates[inside.reshape(-1) >= threshold]
        if len(candidates):
            best = candidates[np.lexsort((-scores[candidates], areas[candidates]))[0]]
            mask.parent = int(best)
            masks[best].children.append(i)


def level_label_maps(masks: list[GeneratedMask], height: int, width: int) -> dict[int, np.ndarray]:
    """One non-overlapping label map per level present: each pixel holds 1 + the id of one mask, or 0.

    Where masks of a level overlap, the pixel goes to the smallest of them (then the higher-scored), so that
    parts stay visible inside larger masks of the same level.

    Args:
        masks: generated masks.
        height: the image's height.
        width: the image's width.

    Returns:
        {level: int32 [height, width]}.
    """
    maps: dict[int, np.ndarray] = {}
    for mask in sorted(masks, key=lambda m: (-m.area, m.predicted_iou)):
        label_map = maps.setdefault(mask.level, np.zeros((height, width), np.int32))
        label_map[mask.mask()] = mask.id + 1
    return dict(sorted(maps.items()))


def mask_names(masks: list[GeneratedMask]) -> list[MaskName | None]:
    """Names every labelled mask from its label and its place in the whole/part tree.

    A mask names its object when it has no parent or its object differs from its parent's (a new thing inside
    another, such as a dog in front of a house); otherwise it is a part of its parent's object and names its
    part, and its path extends the parent's ("person > hair"), without repeating a name the parent already gave.

    Args:
        masks: generated masks linked by `link_tree`; `id` must equal the list index.

    Returns:
        One name per mask, None for masks without a label.
    """
    names: list[MaskName | None] = [None] * len(masks)
    # Parents are always of a coarser level, so they are named before their children.
    for mask in sorted(masks, key=lambda m: -m.level):
        if mask.label is None:
            continue
        parent = None if mask.parent is None else masks[mask.parent]
        above = None if parent is None else names[parent.id]
        if above is None or parent.label.object != mask.label.object:
            names[mask.id] = MaskName(kind="object", name=mask.label.object, path=mask.label.object)
        else:
            path = above.path if above.name == mask.label.part else above.path + PATH_SEPARATOR + mask.label.part
            names[mask.id] = MaskName(kind="part", name=mask.label.part, path=path)
    return names

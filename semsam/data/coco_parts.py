"""Part datasets in COCO format (PASCAL-Part, PACO, PartImageNet style): "object:part" categories, linked to objects."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from semsam.data.coco_format import CocoFormatDataset, decode_segmentation, readable_name
from semsam.data.records import SegmentationRecord


class CocoPartsDataset(CocoFormatDataset):
    """Reads `root/annotations/{split}.json` whose categories are named "object:part" (e.g. "dog:head"), and
    optionally plain "object" ones (e.g. "dog"), with its images (see `find_image_dir` for where they may lie).

    Each part mask gets a part class (the name after the colon, shared by all objects: "head" of a dog and of a
    cat is one part class) and is linked by `part_of` to its whole object's mask, which carries the object class.
    The whole object is, in order of preference: the object annotation named by the part's "obj_ann_id" (PACO);
    the same-class object annotation that covers most of the part (at least half of it); else the union of the
    image's parts of that object class (PartImageNet: one object per image; several same-class objects without
    object annotations become one).
    """

    def __init__(self, *, root: str | Path, split: str, min_area: int = 16, duplicate_iou: float = 0.95) -> None:
        """Indexes the split.

        Args:
            root: the dataset folder holding `annotations/{split}.json` and the images.
            split: the annotation file's stem, e.g. "train" or "paco_lvis_v1_train".
            min_area: masks with fewer pixels are dropped.
            duplicate_iou: masks overlapping a kept one above this IoU are merged into it.
        """
        root = Path(root)
        super().__init__(root=root, split=split, annotation_path=root / "annotations" / f"{split}.json",
                         annotation_fields=("category_id", "segmentation"), min_area=min_area,
                         duplicate_iou=duplicate_iou)
        object_names: dict[str, int] = {}
        part_names: dict[str, int] = {}
        self.classes_of: dict[Any, tuple[int, int | None]] = {}
        for category in self.index.categories:
            whole, colon, part = category["name"].partition(":")
            object_class = object_names.setdefault(readable_name(whole), len(object_names))
            part_class = part_names.setdefault(readable_name(part), len(part_names)) if colon else None
            self.classes_of[category["id"]] = (object_class, part_class)
        if not part_names:
            raise ValueError(f"{self.annotation_path} has no 'object:part' category; for object-only COCO files "
                             "use kind 'coco'")
        self.object_names, self.part_names = tuple(object_names), tuple(part_names)
        for annotations in self.index.annotations.values():
            for annotation in annotations:
                self.check_category(annotation["category_id"], f"annotation {annotation.get('id')}")

    def __getitem__(self, index: int) -> SegmentationRecord:
        entry, image = self.read(index)
        height, width = image.shape[:2]
        objects: list[tuple[np.ndarray, int, Any]] = []  # mask, object class, annotation id
        parts: list[tuple[np.ndarray, int, int, Any]] = []  # mask, object class, part class, object annotation id
        for annotation in self.index.annotations[entry["id"]]:
            where = f"{self.annotation_path}: annotation {annotation.get('id')}"
            mask = decode_segmentation(annotation["segmentation"], height, width, where=where)
            if not self.keeps(mask):
                continue
            object_class, part_class = self.classes_of[annotation["category_id"]]
            if part_class is None:
                objects.append((mask, object_class, annotation.get("id")))
            else:
                parts.append((mask, object_class, part_class, annotation.get("obj_ann_id")))
        masks = [mask for mask, _, _ in objects]
        object_classes: list[int | None] = [object_class for _, object_class, _ in objects]
        wholes = [self._whole(part, objects) for part in parts]
        unlinked: dict[int, list[int]] = defaultdict(list)
        for position, (whole, part) in enumerate(zip(wholes, parts)):
            if whole is None:
                unlinked[part[1]].append(position)
        for object_class, members in unlinked.items():
            for position in members:
                wholes[position] = len(masks)
            masks.append(np.logical_or.reduce([parts[i][0] for i in members]))
            object_classes.append(object_class)
        count = len(masks)
        return self.record(
            entry,
            image,
            masks + [mask for mask, _, _, _ in parts],
            object_classes + [None] * len(parts),
            part_classes=[None] * count + [part_class for _, _, part_class, _ in parts],
            part_of=[None] * count + wholes,
        )

    @staticmethod
    def _whole(part: tuple[np.ndarray, int, int, Any], objects: list[tuple[np.ndarray, int, Any]]) -> int | None:
        """The index in `objects` of the part's whole object, or None when no object annotation fits."""
        mask, object_class, _, object_annotation = part
        if object_annotation is not None:
            for position, (_, _, annotation_id) in enumerate(objects):
                if annotation_id == object_annotation:
                    return position
        covered = [
            (np.count_nonzero(mask & candidate), position)
            for position, (candidate, candidate_class, _) in enumerate(objects)
            if candidate_class == object_class
        ]
        best = max(covered, default=(0, None))
        return best[1] if best[0] >= 0.5 * np.count_nonzero(mask) else None

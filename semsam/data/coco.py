"""COCO instances: every object's mask, labelled with its category."""

from __future__ import annotations

from pathlib import Path

from semsam.data.coco_format import CocoFormatDataset, category_classes, decode_segmentation
from semsam.data.records import SegmentationRecord


class CocoInstancesDataset(CocoFormatDataset):
    """Reads `root/annotations/instances_{split}.json` with its images (`root/{split}/` as COCO ships them).

    Polygons, RLE and crowd regions (`iscrowd`: a group of objects as one mask, kept as a coarse region) are all
    decoded with pycocotools. Object class ids are contiguous (0..C-1) in category-id order; `object_names` holds
    the category names. Images without annotations are skipped.
    """

    def __init__(self, *, root: str | Path, split: str, min_area: int = 16, duplicate_iou: float = 0.95) -> None:
        """Indexes the split.

        Args:
            root: the COCO folder holding `annotations/` and the image folders.
            split: e.g. "train2017" or "val2017".
            min_area: masks with fewer pixels are dropped.
            duplicate_iou: masks overlapping a kept one above this IoU are merged into it.
        """
        root = Path(root)
        super().__init__(root=root, split=split, annotation_path=root / "annotations" / f"instances_{split}.json",
                         annotation_fields=("category_id", "segmentation"), min_area=min_area,
                         duplicate_iou=duplicate_iou)
        self.class_of, self.object_names = category_classes(self.index.categories)
        for annotations in self.index.annotations.values():
            for annotation in annotations:
                self.check_category(annotation["category_id"], f"annotation {annotation.get('id')}")

    def __getitem__(self, index: int) -> SegmentationRecord:
        entry, image = self.read(index)
        masks, classes = [], []
        for annotation in self.index.annotations[entry["id"]]:
            where = f"{self.annotation_path}: annotation {annotation.get('id')}"
            mask = decode_segmentation(annotation["segmentation"], *image.shape[:2], where=where)
            if self.keeps(mask):
                masks.append(mask)
                classes.append(self.class_of[annotation["category_id"]])
        return self.record(entry, image, masks, classes)

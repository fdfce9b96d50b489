"""COCO panoptic: every thing and stuff segment of a PNG segment map, labelled with its category."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from semsam.data.coco_format import CocoFormatDataset, category_classes, require_fields
from semsam.data.records import SegmentationRecord


class CocoPanopticDataset(CocoFormatDataset):
    """Reads `root/annotations/panoptic_{split}.json`, its PNGs in `root/annotations/panoptic_{split}/` and the
    images (`root/{split}/` as COCO ships them).

    A PNG pixel's segment id is R + 256 G + 256^2 B; 0 is unlabelled. Things and stuff both become masks with
    object classes: contiguous ids (0..C-1) in category-id order, named in `object_names`.
    """

    def __init__(self, *, root: str | Path, split: str, min_area: int = 16, duplicate_iou: float = 0.95) -> None:
        """Indexes the split.

        Args:
            root: the COCO folder holding `annotations/` and the image folders.
            split: e.g. "train2017" or "val2017".
            min_area: segments with fewer pixels are dropped.
            duplicate_iou: masks overlapping a kept one above this IoU are merged into it.
        """
        root = Path(root)
        super().__init__(root=root, split=split, annotation_path=root / "annotations" / f"panoptic_{split}.json",
                         annotation_fields=("file_name", "segments_info"), min_area=min_area,
                         duplicate_iou=duplicate_iou)
        self.class_of, self.object_names = category_classes(self.index.categories)
        for image_id, annotations in self.index.annotations.items():
            if len(annotations) != 1:
                raise ValueError(f"{self.annotation_path}: image {image_id} has {len(annotations)} panoptic "
                                 "annotations; a panoptic file has exactly one per image")
            for position, segment in enumerate(annotations[0]["segments_info"]):
                where = f"image {image_id} segments_info[{position}]"
                require_fields(segment, ("id", "category_id"), f"{self.annotation_path}: {where}")
                self.check_category(segment["category_id"], where)
        self.segment_dir = root / "annotations" / f"panoptic_{split}"
        if not self.segment_dir.is_dir():
            raise ValueError(f"panoptic segment folder {self.segment_dir} does not exist; unpack the PNGs that come "
                             f"with panoptic_{split}.json there")

    def __getitem__(self, index: int) -> SegmentationRecord:
        entry, image = self.read(index)
        annotation = self.index.annotations[entry["id"]][0]
        segment_ids = read_segment_ids(self.segment_dir / annotation["file_name"])
        if segment_ids.shape != image.shape[:2]:
            raise ValueError(f"segment map {self.segment_dir / annotation['file_name']} is "
                             f"{segment_ids.shape[0]}x{segment_ids.shape[1]} but its image is "
                             f"{image.shape[0]}x{image.shape[1]}")
        masks, classes = [], []
        for segment in annotation["segments_info"]:
            mask = segment_ids == segment["id"]
            if self.keeps(mask):
                masks.append(mask)
                classes.append(self.class_of[segment["category_id"]])
        return self.record(entry, image, masks, classes)


def read_segment_ids(path: Path) -> np.ndarray:
    """The [H, W] segment ids (R + 256 G + 256^2 B) of a COCO panoptic PNG.

    Raises:
        ValueError: the PNG is missing or unreadable.
    """
    if not path.is_file():
        raise ValueError(f"panoptic segment map {path} does not exist; the annotation file names it")
    try:
        with Image.open(path) as handle:
            rgb = np.asarray(handle.convert("RGB"), dtype=np.int64)
    except OSError as error:
        raise ValueError(f"cannot read panoptic segment map {path}: {error}") from error
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]

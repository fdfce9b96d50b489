"""SA-1B: images with class-agnostic masks as COCO RLE, one JSON per image (also what `semsam everything` writes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from semsam.data.coco_format import decode_segmentation, read_json, require_fields
from semsam.data.records import SegmentationDataset, SegmentationRecord, merge_duplicates, stack_masks
from semsam.image import read_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class Sa1bDataset(SegmentationDataset):
    """Reads a folder of images, each next to a same-stem JSON: `sa_1.jpg` with `sa_1.json` holding
    {"image": {"height", "width", ...}, "annotations": [{"segmentation": {"size": [h, w], "counts": str}, ...}]}.

    The folder is `root/{split}` when that exists, else `root` itself (split ignored), so both an SA-1B tar
    unpacked into `root/train/` and a `semsam everything` output folder given as root work. JSON files without a
    same-stem image (e.g. other tools' outputs) are not records. Masks are class-agnostic.
    """

    def __init__(self, *, root: str | Path, split: str, min_area: int = 16, duplicate_iou: float = 0.95) -> None:
        """Indexes the folder (JSONs are read only when their record is).

        Args:
            root: the folder holding the image/JSON pairs, or their split sub-folders.
            split: a sub-folder of root, used when it exists.
            min_area: masks with fewer pixels are dropped.
            duplicate_iou: masks overlapping a kept one above this IoU are merged into it.
        """
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"SA-1B root {root} does not exist; pass the folder of sa_*.jpg + sa_*.json files")
        folder = root / split if (root / split).is_dir() else root
        files = sorted(path for path in folder.iterdir() if path.is_file())
        images = {path.stem: path for path in files if path.suffix.lower() in IMAGE_SUFFIXES}
        self.items = [(images[path.stem], path) for path in files if path.suffix == ".json" and path.stem in images]
        if not self.items:
            raise ValueError(f"no image in {folder} has a same-stem .json next to it (SA-1B layout: sa_1.jpg with "
                             "sa_1.json); pass the folder that holds them as root")
        self.min_area = min_area
        self.duplicate_iou = duplicate_iou

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> SegmentationRecord:
        image_path, json_path = self.items[index]
        content = read_json(json_path, what="SA-1B annotation file", hint="it was listed when the dataset opened")
        require_fields(content, ("annotations",), str(json_path))
        image = read_image(image_path)
        height, width = image.shape[:2]
        stated = content["image"] if isinstance(content.get("image"), dict) else {}
        if {"height", "width"} <= set(stated) and (stated["height"], stated["width"]) != (height, width):
            raise ValueError(f"{json_path} is for a {stated['height']}x{stated['width']} image but {image_path} is "
                             f"{height}x{width}; the image and its annotations do not belong together")
        masks = []
        for position, annotation in enumerate(content["annotations"]):
            where = f"{json_path}: annotations[{position}]"
            require_fields(annotation, ("segmentation",), where)
            mask = decode_segmentation(annotation["segmentation"], height, width, where=where)
            if np.count_nonzero(mask) >= max(self.min_area, 1):
                masks.append(mask)
        record = SegmentationRecord(
            image=image,
            masks=stack_masks(masks, (height, width)),
            object_classes=None,
            part_classes=None,
            image_id=image_path.stem,
        )
        return merge_duplicates(record, iou_threshold=self.duplicate_iou)

"""Reading COCO-format files: annotation JSON indexed by image, segmentations decoded with pycocotools."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from semsam.data.records import SegmentationDataset, SegmentationRecord, merge_duplicates, stack_masks
from semsam.image import read_image
from semsam.io import rle_to_mask


@dataclass
class CocoIndex:
    """A COCO-format annotation file, indexed for lazy per-image reading."""

    images: list[dict[str, Any]]  # the images that have annotations, in file order
    annotations: dict[int, list[dict[str, Any]]]  # image id -> its annotations, in file order
    categories: list[dict[str, Any]]  # sorted by id


class CocoFormatDataset(SegmentationDataset):
    """What the COCO-format loaders share: the indexed annotation file, the image folder and record assembly."""

    def __init__(
        self,
        *,
        root: Path,
        split: str,
        annotation_path: Path,
        annotation_fields: tuple[str, ...],
        min_area: int,
        duplicate_iou: float,
    ) -> None:
        """Indexes `annotation_path` and finds the image folder (see `index_coco` and `find_image_dir`)."""
        self.annotation_path = annotation_path
        present = sorted(path.name for path in annotation_path.parent.glob("*.json"))
        hint = (f"pass as root the dataset folder that holds annotations/{annotation_path.name}, and the split "
                f"that names it (annotation files in {annotation_path.parent}: {present or 'none'})")
        self.index = index_coco(annotation_path, annotation_fields=annotation_fields, hint=hint)
        self.category_ids = {category["id"] for category in self.index.categories}
        self.image_dir = find_image_dir(root, split, self.index.images[0]["file_name"], where=str(annotation_path))
        self.min_area = min_area
        self.duplicate_iou = duplicate_iou

    def __len__(self) -> int:
        return len(self.index.images)

    def read(self, index: int) -> tuple[dict[str, Any], np.ndarray]:
        """The "images" entry of the `index`-th annotated image and the image, checked against the entry's size.

        Raises:
            ValueError: the image is missing, unreadable or not the size the annotations were made for.
        """
        entry = self.index.images[index]
        path = self.image_dir / entry["file_name"]
        image = read_image(path)
        expected = (int(entry["height"]), int(entry["width"]))
        if image.shape[:2] != expected:
            raise ValueError(f"image {path} is {image.shape[0]}x{image.shape[1]} but its annotations are for "
                             f"{expected[0]}x{expected[1]}; the image does not belong to this annotation file")
        return entry, image

    def check_category(self, category_id: Any, where: str) -> None:
        """Raises ValueError if `category_id` is not one of the file's categories."""
        if category_id not in self.category_ids:
            raise ValueError(f"{self.annotation_path}: {where} has category_id {category_id}, which is not in "
                             "'categories'; the file is inconsistent")

    def keeps(self, mask: np.ndarray) -> bool:
        """Whether a mask is big enough to train on."""
        return np.count_nonzero(mask) >= max(self.min_area, 1)

    def record(
        self,
        entry: dict[str, Any],
        image: np.ndarray,
        masks: list[np.ndarray],
        object_classes: list[int | None],
        part_classes: list[int | None] | None = None,
        part_of: list[int | None] | None = None,
    ) -> SegmentationRecord:
        """The record of one image, near-duplicate masks merged."""
        record = SegmentationRecord(
            image=image,
            masks=stack_masks(masks, image.shape[:2]),
            object_classes=object_classes,
            part_classes=part_classes,
            image_id=Path(entry["file_name"]).stem,
            part_of=part_of,
        )
        return merge_duplicates(record, iou_threshold=self.duplicate_iou)


def read_json(path: Path, *, what: str, hint: str) -> Any:
    """Parses a JSON file, or says which file is missing or broken and what to do (`hint`).

    Raises:
        ValueError: the file is missing or not valid JSON.
    """
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist; {hint}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{what} {path} is not valid JSON ({error}); re-download or re-export it") from error


def require_fields(entry: Any, fields: tuple[str, ...], where: str) -> None:
    """Raises ValueError naming the first of `fields` that the JSON object `entry` lacks."""
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(entry).__name__}")
    for field in fields:
        if field not in entry:
            raise ValueError(f"{where} has no {field!r} field; is this a COCO-format file?")


def index_coco(path: Path, *, annotation_fields: tuple[str, ...], hint: str) -> CocoIndex:
    """Reads and validates a COCO-format file's images, annotations and categories.

    Args:
        path: the JSON file.
        annotation_fields: fields every annotation must have besides "image_id".
        hint: what to do when the file is missing, for the error message.

    Raises:
        ValueError: the file is missing or broken, lacks a field, or an annotation names an unknown image.
    """
    content = read_json(path, what="annotation file", hint=hint)
    require_fields(content, ("images", "annotations", "categories"), str(path))
    for position, category in enumerate(content["categories"]):
        require_fields(category, ("id", "name"), f"{path}: categories[{position}]")
    images = {}
    for position, image in enumerate(content["images"]):
        require_fields(image, ("id", "file_name", "height", "width"), f"{path}: images[{position}]")
        images[image["id"]] = image
    annotations: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for position, annotation in enumerate(content["annotations"]):
        require_fields(annotation, ("image_id", *annotation_fields), f"{path}: annotations[{position}]")
        if annotation["image_id"] not in images:
            raise ValueError(f"{path}: annotations[{position}] names image id {annotation['image_id']}, "
                             "which is not in 'images'; the file is inconsistent")
        annotations[annotation["image_id"]].append(annotation)
    annotated = [image for image in content["images"] if image["id"] in annotations]
    if not annotated:
        raise ValueError(f"{path} has no annotated image; check that it is the right file")
    categories = sorted(content["categories"], key=lambda category: category["id"])
    return CocoIndex(images=annotated, annotations=dict(annotations), categories=categories)


def readable_name(name: str) -> str:
    """A category name as a text encoder should read it: "trash_can" -> "trash can", "wall-other-merged" -> "wall"."""
    words = re.sub(r"[_\-]+", " ", name).split()
    while len(words) > 1 and words[-1] in ("merged", "other"):
        words.pop()
    return " ".join(words)


def category_classes(categories: list[dict[str, Any]]) -> tuple[dict[Any, int], tuple[str, ...]]:
    """Contiguous class ids (0..C-1, in the given order) of COCO category ids, and the classes' readable names."""
    class_of = {category["id"]: i for i, category in enumerate(categories)}
    return class_of, tuple(readable_name(category["name"]) for category in categories)


def find_image_dir(root: Path, split: str, file_name: str, *, where: str) -> Path:
    """The folder that `file_name` (an image's path in the annotation file) is relative to.

    Tries `root/{split}` (COCO's layout), `root/images/{split}`, `root/images` and `root`.

    Raises:
        ValueError: the image is in none of them.
    """
    candidates = [root / split, root / "images" / split, root / "images", root]
    for folder in candidates:
        if (folder / file_name).is_file():
            return folder
    tried = ", ".join(str(folder / file_name) for folder in candidates)
    raise ValueError(f"{where}: image {file_name!r} not found (tried {tried}); put the images in one of these folders")


def decode_segmentation(segmentation: Any, height: int, width: int, *, where: str) -> np.ndarray:
    """Decodes a COCO segmentation (polygons, uncompressed RLE or compressed RLE) to an [H, W] bool mask.

    Polygons with fewer than 3 points are skipped, as COCO tools do.

    Raises:
        ValueError: the segmentation is malformed or its size is not height x width.
    """
    polygonal = isinstance(segmentation, list)
    if polygonal:
        if not all(isinstance(polygon, list) and len(polygon) % 2 == 0 for polygon in segmentation):
            raise ValueError(f"{where}: a polygon must be a flat list [x1, y1, x2, y2, ...]")
        polygons = [polygon for polygon in segmentation if len(polygon) >= 6]
        if not polygons:
            return np.zeros((height, width), dtype=bool)
    elif isinstance(segmentation, dict) and "size" in segmentation and "counts" in segmentation:
        size = list(segmentation["size"])
        if size != [height, width]:
            raise ValueError(f"{where}: the RLE is {'x'.join(map(str, size))} but the image is {height}x{width}")
    else:
        raise ValueError(f"{where}: segmentation must be a list of polygons or a COCO RLE dict with 'size' and "
                         f"'counts', got {type(segmentation).__name__}")
    try:
        if polygonal:
            encoded = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        elif isinstance(segmentation["counts"], list):
            encoded = mask_utils.frPyObjects(segmentation, height, width)
        else:
            encoded = segmentation
        return rle_to_mask(encoded)
    except (ValueError, TypeError, IndexError, UnicodeError) as error:
        raise ValueError(f"{where}: the segmentation cannot be decoded ({error})") from error

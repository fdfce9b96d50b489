"""Files for one image's automatic masks: SA-1B annotation JSON, COCO JSON, whole/part tree, overlays and, for
labelled masks, COCO panoptic."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semsam.automatic.hierarchy import GeneratedMask, MaskName, level_label_maps, mask_names
from semsam.automatic.panoptic import write_panoptic
from semsam.io import write_json_atomic, write_png_atomic
from semsam.visualize import label_map_overlay, level_legend, name_segments


def sa1b_record(masks: list[GeneratedMask], image_path: Path, json_path: Path, image_id: int,
                height: int, width: int) -> dict[str, Any]:
    """An SA-1B style annotation file: {"image": {...}, "annotations": [...]}, plus `level` per annotation.

    `file_name` is the image's path relative to the JSON's folder, so the pair can be moved together.
    """
    file_name = os.path.relpath(image_path.resolve(), json_path.resolve().parent)
    return {
        "image": {"image_id": image_id, "width": width, "height": height, "file_name": file_name},
        "annotations": [mask.to_sa1b() for mask in masks],
    }


def coco_record(masks: list[GeneratedMask], file_name: str, height: int, width: int) -> dict[str, Any]:
    """A COCO results-style dataset with one image; each granularity level is a category ("level 1" ...)."""
    levels = sorted({mask.level for mask in masks})
    annotations = []
    for mask in masks:
        entry = mask.to_sa1b()
        annotations.append({
            "id": mask.id + 1, "image_id": 1, "category_id": mask.level, "segmentation": entry["segmentation"],
            "area": entry["area"], "bbox": entry["bbox"], "iscrowd": 0, "score": entry["predicted_iou"],
        })
    return {
        "images": [{"id": 1, "file_name": file_name, "height": height, "width": width}],
        "annotations": annotations,
        "categories": [{"id": level, "name": f"level {level}"} for level in levels],
    }


def tree_record(masks: list[GeneratedMask], names: list[MaskName | None], containment_threshold: float
                ) -> dict[str, Any]:
    """The whole/part tree as nested nodes, roots first (masks with no coarser mask containing them).

    Labelled masks' nodes also carry their `label` and what the tree calls them (`mask_names`): `name`, the
    object or part, and `path`, e.g. "person > hair".
    """

    def node(mask: GeneratedMask) -> dict[str, Any]:
        fields = {"id": mask.id, "level": mask.level, "area": mask.area, "bbox": [float(v) for v in mask.bbox],
                  "predicted_iou": round(mask.predicted_iou, 4)}
        name = names[mask.id]
        if name is not None:
            label = mask.label
            fields["label"] = {"object": label.object, "object_score": round(label.object_score, 4),
                               "part": label.part, "part_score": round(label.part_score, 4)}
            fields |= {"name": name.name, "path": name.path}
        return fields | {"children": [node(masks[child]) for child in mask.children]}

    return {
        "contains": f"parent contains child when area(child & parent) >= {containment_threshold} * area(child)",
        "roots": [node(mask) for mask in masks if mask.parent is None],
    }


def write_image_outputs(
    masks: list[GeneratedMask], image: np.ndarray, image_path: Path, json_path: Path, *,
    image_id: int, containment_threshold: float, vocabulary: tuple[Sequence[str], Sequence[str]] | None = None,
) -> list[Path]:
    """Writes the extras folder (panoptic, overlays, tree, COCO), then the SA-1B JSON last, all atomically.

    The SA-1B JSON appearing is what marks the image finished, so a run killed midway redoes only this image.

    Args:
        masks: the image's generated masks.
        image: the image, HxWx3 uint8 RGB.
        image_path: where the image is, for the JSON files' `file_name`.
        json_path: the SA-1B JSON to write; the other files go to the folder of the same name without suffix.
        image_id: the SA-1B JSON's image id.
        containment_threshold: the generator's, recorded in tree.json.
        vocabulary: (objects, parts) the masks were labelled with; when given, the overlays name their segments
            and the COCO panoptic files are written too (every mask must be labelled).

    Returns:
        The paths written, the SA-1B JSON last.
    """
    height, width = image.shape[:2]
    extras = json_path.with_suffix("")
    file_name = os.path.relpath(image_path.resolve(), extras.resolve())
    written = []
    names = mask_names(masks)
    maps = level_label_maps(masks, height, width)
    if vocabulary is not None:
        written += write_panoptic(extras, masks, maps, names, vocabulary=vocabulary, file_name=file_name)
        segment_names = {mask.id + 1: name.name for mask, name in zip(masks, names)}
    for level, label_map in maps.items():
        count = sum(mask.level == level for mask in masks)
        overlay = label_map_overlay(image, label_map)
        if vocabulary is not None:
            overlay = name_segments(overlay, label_map, segment_names)
        overlay = level_legend(overlay, level=level, levels=list(maps), count=count)
        written.append(write_png_atomic(extras / f"overlay_level{level}.png", overlay))
    written.append(write_json_atomic(extras / "tree.json", tree_record(masks, names, containment_threshold)))
    written.append(write_json_atomic(extras / "coco.json", coco_record(masks, file_name, height, width)))
    record = sa1b_record(masks, image_path, json_path, image_id, height, width)
    written.append(write_json_atomic(json_path, record))
    return written

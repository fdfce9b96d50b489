"""COCO panoptic files for labelled automatic masks: a segment PNG per level and one JSON for all levels.

Each level is a panoptic "image" of its own (image id = level), so that tools reading COCO panoptic (one
annotation per image id) take each level as it is. A segment's id is 1 + the mask's id (its `id` in the SA-1B
JSON and tree.json, its annotation id in coco.json), 0 is void; its category is what the mask is called in the
whole/part tree: an object (ids 1..N, the object vocabulary in order) or a part (ids N+1..N+M, the part
vocabulary). Every category is a thing, as several segments of a level may share a name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from semsam.automatic.hierarchy import GeneratedMask, MaskName
from semsam.io import write_json_atomic, write_png_atomic


def panoptic_categories(objects: Sequence[str], parts: Sequence[str]) -> list[dict[str, Any]]:
    """The object names as categories 1..N (supercategory "object"), then the part names as N+1..N+M ("part")."""
    names = [("object", name) for name in objects] + [("part", name) for name in parts]
    return [{"id": index + 1, "name": name, "supercategory": kind, "isthing": 1}
            for index, (kind, name) in enumerate(names)]


def segment_ids_to_rgb(segment_ids: np.ndarray) -> np.ndarray:
    """HxW segment ids as the HxWx3 uint8 pixels of a COCO panoptic PNG (id = R + 256 G + 256^2 B)."""
    segment_ids = np.asarray(segment_ids, np.int64)
    if segment_ids.min(initial=0) < 0 or segment_ids.max(initial=0) >= 256**3:
        raise ValueError(f"segment ids must be in [0, 256^3) to fit a panoptic PNG, got {segment_ids.min()} .. "
                         f"{segment_ids.max()}")
    return np.stack([segment_ids % 256, segment_ids // 256 % 256, segment_ids // 256**2], -1).astype(np.uint8)


def segments_info(segment_ids: np.ndarray, category_of: dict[int, int]) -> list[dict[str, Any]]:
    """COCO panoptic `segments_info`: one entry per segment present, with the area and box of its pixels.

    Args:
        segment_ids: HxW non-negative integers, 0 = void.
        category_of: the category id of every segment id present.

    Returns:
        Entries {id, category_id, area, bbox (XYWH), iscrowd}, by id.
    """
    areas = np.bincount(segment_ids.ravel())
    info = []
    for index, where in enumerate(ndimage.find_objects(segment_ids), start=1):
        if where is None:
            continue
        rows, columns = where
        info.append({"id": index, "category_id": category_of[index], "area": int(areas[index]),
                     "bbox": [columns.start, rows.start, columns.stop - columns.start, rows.stop - rows.start],
                     "iscrowd": 0})
    return info


def write_panoptic(
    folder: Path, masks: list[GeneratedMask], maps: dict[int, np.ndarray], names: list[MaskName | None], *,
    vocabulary: tuple[Sequence[str], Sequence[str]], file_name: str,
) -> list[Path]:
    """Writes `panoptic_level{L}.png` for every level of `maps`, then `panoptic.json`, atomically.

    Args:
        folder: where the files go.
        masks: the generated masks, all labelled.
        maps: {level: HxW label map} from `level_label_maps` (1 + mask id, 0 = none): non-overlapping segments.
        names: the masks' names from `mask_names`; a segment's category is the object or part it names.
        vocabulary: (objects, parts) the masks were labelled with, e.g. `MaskGenerator.predictor.vocabulary`.
        file_name: the image's path relative to `folder`, for `images[].file_name`.

    Returns:
        The paths written, the JSON last.
    """
    objects, parts = vocabulary
    categories = panoptic_categories(objects, parts)
    category_ids = {(category["supercategory"], category["name"]): category["id"] for category in categories}
    category_of = {}
    for mask, name in zip(masks, names):
        if name is None:
            raise ValueError(f"mask {mask.id} has no label; panoptic output needs the masks of a model whose "
                             "object/part heads were trained")
        if (name.kind, name.name) not in category_ids:
            raise ValueError(f"mask {mask.id} is labelled {name.kind} {name.name!r}, which the vocabulary given "
                             "lacks; pass the vocabulary the masks were labelled with "
                             "(MaskGenerator.predictor.vocabulary)")
        category_of[mask.id + 1] = category_ids[name.kind, name.name]
    record: dict[str, Any] = {"images": [], "annotations": [], "categories": categories}
    written = []
    for level, label_map in maps.items():
        png_name = f"panoptic_level{level}.png"
        written.append(write_png_atomic(folder / png_name, segment_ids_to_rgb(label_map)))
        height, width = label_map.shape
        record["images"].append({"id": level, "file_name": file_name, "height": height, "width": width,
                                 "level": level})
        record["annotations"].append({"image_id": level, "file_name": png_name, "level": level,
                                      "segments_info": segments_info(label_map, category_of)})
    written.append(write_json_atomic(folder / "panoptic.json", record))
    return written

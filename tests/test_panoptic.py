"""Labelled automatic masks: names in the whole/part tree and the COCO panoptic files."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from semsam.automatic import GeneratedMask, level_label_maps, link_tree, mask_names
from semsam.automatic.outputs import tree_record
from semsam.automatic.panoptic import segment_ids_to_rgb, write_panoptic
from semsam.data.coco_panoptic import read_segment_ids
from semsam.io import mask_to_rle
from semsam.prediction import MaskLabel

from helpers import check_panoptic, rect

OBJECTS = ("person", "dog", "car")
PARTS = ("head", "hair", "wheel")
SIZE = (24, 32)


def labelled_masks(specs: list[tuple[int, tuple[int, int, int, int], tuple[str, str] | None]]) -> list[GeneratedMask]:
    """Masks from (level, (top, left, bottom, right), (object, part) or None), linked into the tree."""
    masks = []
    for index, (level, (top, left, bottom, right), names) in enumerate(specs):
        pixels = rect(top, left, bottom, right, SIZE)
        label = None if names is None else MaskLabel(object=names[0], object_score=0.9, part=names[1], part_score=0.6)
        masks.append(GeneratedMask(
            id=index, level=level, segmentation=mask_to_rle(pixels), area=int(pixels.sum()),
            bbox=(left, top, right - left, bottom - top), predicted_iou=0.5 + index / 100, stability_score=0.9,
            point_coords=(left, top), crop_box=(0, 0, SIZE[1], SIZE[0]), label=label))
    link_tree(masks, [mask.segmentation for mask in masks])
    return masks


SCENE = [
    (6, (0, 0, 24, 32), ("person", "head")),  # 0: the whole person
    (4, (0, 0, 12, 32), ("person", "head")),  # 1: its upper half, a part of the same object
    (3, (0, 0, 6, 32), ("person", "hair")),  # 2: hair, inside the upper half
    (2, (0, 0, 6, 16), ("person", "hair")),  # 3: more hair: the name is not repeated
    (1, (0, 0, 3, 8), ("person", "wheel")),  # 4: a part of the hair's path
    (3, (14, 4, 22, 14), ("dog", "head")),  # 5: a dog in front of the person: an object of its own
    (1, (16, 6, 20, 10), ("dog", "head")),  # 6: the dog's head
]


def test_tree_names_objects_and_their_parts():
    masks = labelled_masks(SCENE)
    assert [mask.parent for mask in masks] == [None, 0, 1, 2, 3, 0, 5]
    names = mask_names(masks)
    assert [(name.kind, name.name) for name in names] == [
        ("object", "person"), ("part", "head"), ("part", "hair"), ("part", "hair"), ("part", "wheel"),
        ("object", "dog"), ("part", "head")]
    assert [name.path for name in names] == [
        "person", "person > head", "person > head > hair", "person > head > hair",
        "person > head > hair > wheel", "dog", "dog > head"]
    tree = tree_record(masks, names, 0.9)
    person = tree["roots"][0]
    assert person["label"] == {"object": "person", "object_score": 0.9, "part": "head", "part_score": 0.6}
    hair = person["children"][0]["children"][0]
    assert (hair["name"], hair["path"]) == ("hair", "person > head > hair")
    dog = person["children"][1]
    assert (dog["name"], dog["path"], dog["children"][0]["path"]) == ("dog", "dog", "dog > head")


def test_unlabelled_masks_have_no_names():
    masks = labelled_masks([(6, (0, 0, 24, 32), None), (3, (0, 0, 6, 32), ("person", "hair"))])
    names = mask_names(masks)
    assert names[0] is None and names[1].path == "person", "below an unlabelled parent a mask names its object"
    root = tree_record(masks, names, 0.9)["roots"][0]
    assert "name" not in root and "label" not in root and root["children"][0]["name"] == "person"


def test_panoptic_files_of_the_scene(tmp_path):
    masks = labelled_masks(SCENE)
    names = mask_names(masks)
    written = write_panoptic(tmp_path, masks, level_label_maps(masks, *SIZE), names,
                             vocabulary=(OBJECTS, PARTS), file_name="../photo.jpg")
    assert [path.name for path in written] == [f"panoptic_level{level}.png" for level in (1, 2, 3, 4, 6)] + [
        "panoptic.json"]
    record = check_panoptic(tmp_path, [mask.to_sa1b() for mask in masks])
    assert record["images"][0] == {"id": 1, "file_name": "../photo.jpg", "height": 24, "width": 32, "level": 1}
    categories = {category["id"]: (category["supercategory"], category["name"]) for category in record["categories"]}
    assert list(categories.values()) == [("object", name) for name in OBJECTS] + [("part", name) for name in PARTS]
    level1 = record["annotations"][0]["segments_info"]
    assert [(segment["id"], categories[segment["category_id"]]) for segment in level1] == [
        (5, ("part", "wheel")), (7, ("part", "head"))]
    level3 = {segment["id"]: segment for segment in record["annotations"][2]["segments_info"]}
    assert categories[level3[6]["category_id"]] == ("object", "dog") and level3[3]["area"] == 6 * 32


@settings(max_examples=40, derandomize=True, deadline=None, database=None)
@given(specs=st.lists(st.tuples(
    st.integers(1, 6),
    st.tuples(st.integers(0, 20), st.integers(0, 28), st.integers(1, 12), st.integers(1, 16)),
    st.tuples(st.sampled_from(OBJECTS), st.sampled_from(PARTS))), min_size=1, max_size=12))
def test_panoptic_files_are_valid_for_any_masks(specs):
    boxes = [(level, (top, left, min(top + h, SIZE[0]), min(left + w, SIZE[1])), names)
             for level, (top, left, h, w), names in specs]
    masks = labelled_masks(boxes)
    with tempfile.TemporaryDirectory() as folder:
        write_panoptic(Path(folder), masks, level_label_maps(masks, *SIZE), mask_names(masks),
                       vocabulary=(OBJECTS, PARTS), file_name="photo.jpg")
        record = check_panoptic(Path(folder), [mask.to_sa1b() for mask in masks])
    names = mask_names(masks)
    categories = {category["id"]: category["name"] for category in record["categories"]}
    for annotation in record["annotations"]:
        for segment in annotation["segments_info"]:
            assert categories[segment["category_id"]] == names[segment["id"] - 1].name


def test_panoptic_needs_labels_from_the_vocabulary_given(tmp_path):
    masks = labelled_masks([(6, (0, 0, 24, 32), ("person", "head")), (3, (0, 0, 6, 32), None)])
    with pytest.raises(ValueError, match="mask 1 has no label"):
        write_panoptic(tmp_path, masks, level_label_maps(masks, *SIZE), mask_names(masks),
                       vocabulary=(OBJECTS, PARTS), file_name="photo.jpg")
    masks = labelled_masks([(6, (0, 0, 24, 32), ("giraffe", "head"))])
    with pytest.raises(ValueError, match="object 'giraffe', which the vocabulary given lacks"):
        write_panoptic(tmp_path, masks, level_label_maps(masks, *SIZE), mask_names(masks),
                       vocabulary=(OBJECTS, PARTS), file_name="photo.jpg")
    assert not list(tmp_path.iterdir())


def test_segment_ids_survive_a_png(tmp_path):
    ids = np.array([[0, 1, 255], [256, 1 + 256 * 2, 7 + 256**2 * 3], [256**3 - 1, 40, 0]])
    Image.fromarray(segment_ids_to_rgb(ids)).save(tmp_path / "ids.png")
    assert np.array_equal(read_segment_ids(tmp_path / "ids.png"), ids)
    with pytest.raises(ValueError, match=r"must be in \[0, 256\^3\)"):
        segment_ids_to_rgb(np.array([[256**3]]))

"""The SA-1B, COCO instances, COCO panoptic and COCO-format part loaders, on tiny fixtures written here."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from semsam.data import (
    CocoInstancesDataset,
    CocoPanopticDataset,
    CocoPartsDataset,
    Sa1bDataset,
    build_dataset,
)
from semsam.data.coco_format import readable_name
from semsam.training.config import load_train_config

from helpers import (
    HEIGHT,
    PART_SCENE,
    WIDTH,
    halves_annotations,
    rect,
    write_bsds,
    write_coco_instances,
    write_coco_panoptic,
    write_coco_parts,
    write_image,
    write_json,
    write_sa1b,
)


def assert_masks(actual: np.ndarray, expected: list[np.ndarray]) -> None:
    assert actual.shape == (len(expected), HEIGHT, WIDTH)
    for index, mask in enumerate(expected):
        assert np.array_equal(actual[index], mask), f"mask {index} differs"


def edit_json(path: Path, change) -> None:
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


# SA-1B


def test_sa1b_reads_split_folders_and_pairs_images_with_same_stem_json(tmp_path: Path) -> None:
    masks = [rect(0, 0, 20, 30), rect(10, 10, 40, 60), rect(0, 0, 2, 2)]
    write_sa1b(tmp_path / "train", "sa_2", masks)
    write_sa1b(tmp_path / "train", "sa_1", masks[:1])
    write_json(tmp_path / "train" / "sa_1.tree.json", {"not": "a record"})
    write_image(tmp_path / "train" / "sa_3.jpg")
    write_sa1b(tmp_path / "val", "sa_9", masks[:1])
    dataset = Sa1bDataset(root=tmp_path, split="train")
    assert len(dataset) == 2 and dataset.object_names is None and dataset.part_names is None
    first, second = dataset[0], dataset[1]
    assert first.image_id == "sa_1" and second.image_id == "sa_2"
    assert first.image.shape == (HEIGHT, WIDTH, 3)
    assert_masks(second.masks, masks[:2])  # the 4-pixel mask is under min_area
    assert second.object_classes is None and second.part_classes is None and second.part_of is None
    assert Sa1bDataset(root=tmp_path, split="train", min_area=1)[1].num_masks == 3
    assert len(Sa1bDataset(root=tmp_path, split="val")) == 1


def test_sa1b_reads_a_flat_folder_like_semsam_everything_writes(tmp_path: Path) -> None:
    """`semsam everything FOLDER --out DIR` writes photo.png next to photo.json; DIR is the root, split ignored."""
    nested = [rect(0, 0, 40, 60), rect(0, 0, 40, 60), rect(5, 5, 20, 20)]
    nested[1][0, 0] = False  # a near-duplicate from another level
    write_sa1b(tmp_path, "photo", nested, suffix=".png")
    record = build_dataset(SimpleNamespace(kind="sa1b", root=str(tmp_path), split="train", options={}))[0]
    assert record.image_id == "photo"
    assert_masks(record.masks, [nested[0], nested[2]])


def test_sa1b_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        Sa1bDataset(root=tmp_path / "nowhere", split="train")
    write_image(tmp_path / "sa_1.jpg")
    with pytest.raises(ValueError, match="same-stem .json"):
        Sa1bDataset(root=tmp_path, split="train")
    write_sa1b(tmp_path, "sa_1", [rect(0, 0, 10, 10, size=(HEIGHT, WIDTH + 1))])
    with pytest.raises(ValueError, match=r"annotations\[0\]: the RLE is 48x65 but the image is 48x64"):
        Sa1bDataset(root=tmp_path, split="train")[0]
    edit_json(tmp_path / "sa_1.json", lambda content: content["image"].update(width=99))
    with pytest.raises(ValueError, match="is for a 48x99 image but .* is 48x64"):
        Sa1bDataset(root=tmp_path, split="train")[0]
    write_json(tmp_path / "sa_1.json", {"image": {}, "masks": []})
    with pytest.raises(ValueError, match="has no 'annotations' field"):
        Sa1bDataset(root=tmp_path, split="train")[0]
    (tmp_path / "sa_1.json").write_text("{broken")
    with pytest.raises(ValueError, match="is not valid JSON"):
        Sa1bDataset(root=tmp_path, split="train")[0]


# COCO instances


def test_coco_instances_decode_polygons_rle_and_crowds_with_contiguous_classes(tmp_path: Path) -> None:
    write_coco_instances(tmp_path)
    dataset = CocoInstancesDataset(root=tmp_path, split="train2017")
    assert len(dataset) == 2  # c.jpg has no annotations
    assert dataset.object_names == ("person", "dog")  # category ids 1 and 18, in id order
    record = dataset[0]
    assert record.image_id == "a" and record.image.shape == (HEIGHT, WIDTH, 3)
    polygon = rect(2, 4, 30, 20)  # the polygon's corners are pixel-corner coordinates
    assert_masks(record.masks, [polygon, rect(5, 30, 25, 60), rect(30, 40, 46, 62)])
    assert record.object_classes == [0, 1, 0] and record.part_classes is None and record.part_of is None
    other = dataset[1]
    assert other.object_classes == [1] and np.array_equal(other.masks[0], rect(10, 10, 40, 50))


def test_coco_instances_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"instances_train2017\.json does not exist; pass as root the dataset folder"):
        CocoInstancesDataset(root=tmp_path, split="train2017")
    write_coco_instances(tmp_path)
    path = tmp_path / "annotations" / "instances_train2017.json"
    original = path.read_text()
    edit_json(path, lambda content: content["annotations"][1].pop("segmentation"))
    with pytest.raises(ValueError, match=r"annotations\[1\] has no 'segmentation' field"):
        CocoInstancesDataset(root=tmp_path, split="train2017")
    path.write_text(original)
    edit_json(path, lambda content: content["annotations"][0].update(category_id=7))
    with pytest.raises(ValueError, match="annotation 1 has category_id 7, which is not in 'categories'"):
        CocoInstancesDataset(root=tmp_path, split="train2017")
    path.write_text(original)
    edit_json(path, lambda content: content["annotations"][0].update(image_id=42))
    with pytest.raises(ValueError, match="names image id 42, which is not in 'images'"):
        CocoInstancesDataset(root=tmp_path, split="train2017")
    path.write_text(original)
    edit_json(path, lambda content: content["annotations"][0].update(segmentation=[[1, 2, 3]]))
    with pytest.raises(ValueError, match=r"annotation 1: a polygon must be a flat list"):
        CocoInstancesDataset(root=tmp_path, split="train2017")[0]
    path.write_text(original)
    write_image(tmp_path / "train2017" / "b.jpg", size=(HEIGHT + 2, WIDTH))
    with pytest.raises(ValueError, match="is 50x64 but its annotations are for 48x64"):
        CocoInstancesDataset(root=tmp_path, split="train2017")[1]
    (tmp_path / "train2017" / "a.jpg").unlink()
    with pytest.raises(ValueError, match=r"image 'a.jpg' not found \(tried .*train2017/a.jpg"):
        CocoInstancesDataset(root=tmp_path, split="train2017")


# COCO panoptic


def test_coco_panoptic_reads_things_and_stuff_from_the_segment_png(tmp_path: Path) -> None:
    write_coco_panoptic(tmp_path)
    dataset = CocoPanopticDataset(root=tmp_path, split="val2017")
    assert len(dataset) == 1 and dataset.object_names == ("person", "wall")
    record = dataset[0]
    person = np.zeros((HEIGHT, WIDTH), bool)
    person[:, : WIDTH // 3] = True
    wall = np.zeros((HEIGHT, WIDTH), bool)
    wall[: HEIGHT // 2, WIDTH // 3 :] = True
    assert_masks(record.masks, [person, wall])  # the 3-pixel segment is under min_area
    assert record.object_classes == [0, 1] and record.part_classes is None
    assert CocoPanopticDataset(root=tmp_path, split="val2017", min_area=1)[0].object_classes == [0, 1, 0]


def test_coco_panoptic_errors_name_the_problem(tmp_path: Path) -> None:
    write_coco_panoptic(tmp_path)
    path = tmp_path / "annotations" / "panoptic_val2017.json"
    original = path.read_text()
    edit_json(path, lambda content: content["annotations"][0]["segments_info"][1].update(category_id=5))
    with pytest.raises(ValueError, match=r"segments_info\[1\] has category_id 5, which is not in 'categories'"):
        CocoPanopticDataset(root=tmp_path, split="val2017")
    path.write_text(original)
    (tmp_path / "annotations" / "panoptic_val2017" / "a.png").unlink()
    with pytest.raises(ValueError, match=r"panoptic segment map .*a\.png does not exist"):
        CocoPanopticDataset(root=tmp_path, split="val2017")[0]
    (tmp_path / "annotations" / "panoptic_val2017").rmdir()
    with pytest.raises(ValueError, match="panoptic segment folder .* does not exist; unpack the PNGs"):
        CocoPanopticDataset(root=tmp_path, split="val2017")


# Part datasets


def test_coco_parts_link_parts_to_their_whole_objects(tmp_path: Path) -> None:
    write_coco_parts(tmp_path)
    dataset = CocoPartsDataset(root=tmp_path, split="train")
    assert dataset.object_names == ("dog", "cat") and dataset.part_names == ("head", "torso", "tail")
    record = dataset[0]
    scene = {name: mask for name, (_, mask) in PART_SCENE.items()}
    cat = scene["cat:head"] | scene["cat:tail"]
    assert_masks(record.masks, [scene["dog A"], scene["dog B"], cat, scene["dog A:head"], scene["dog B:torso"],
                                scene["cat:head"], scene["cat:tail"]])
    assert record.object_classes == [0, 0, 1, None, None, None, None]
    assert record.part_classes == [None, None, None, 0, 1, 0, 2]
    # head: by obj_ann_id; torso: the dog covering it; cat parts: their union, made for them
    assert record.part_of == [None, None, None, 0, 1, 2, 2]


def test_coco_parts_without_part_categories_point_to_coco(tmp_path: Path) -> None:
    write_coco_instances(tmp_path)
    (tmp_path / "annotations" / "instances_train2017.json").rename(tmp_path / "annotations" / "train2017.json")
    with pytest.raises(ValueError, match="no 'object:part' category; for object-only COCO files use kind 'coco'"):
        CocoPartsDataset(root=tmp_path, split="train2017")


def test_readable_names() -> None:
    assert readable_name("trash_can") == "trash can"
    assert readable_name("wall-other-merged") == "wall"
    assert readable_name("floor-wood") == "floor wood"
    assert readable_name("other") == "other"


# Mixing kinds in a training config


def test_training_config_mixes_bsds_and_coco_with_weights(tmp_path: Path) -> None:
    write_bsds(tmp_path / "bsds", "train", "0001", halves_annotations())
    write_coco_instances(tmp_path / "coco")
    config_path = tmp_path / "run.toml"
    config_path.write_text(
        '[[datasets]]\nkind = "bsds500"\nroot = "bsds"\nweight = 3.0\n\n'
        '[[datasets]]\nkind = "coco"\nroot = "coco"\nsplit = "train2017"\nweight = 1.0\n'
    )
    config = load_train_config(config_path, data_root=tmp_path)  # the roots lie under the data root
    assert [spec.weight for spec in config.datasets] == [3.0, 1.0]
    bsds, coco = (build_dataset(spec) for spec in config.datasets)
    assert isinstance(coco, CocoInstancesDataset) and len(bsds) == 1 and len(coco) == 2
    assert bsds.object_names is None and coco.object_names == ("person", "dog")
    assert bsds[0].object_classes is None and coco[0].object_classes == [0, 1, 0]

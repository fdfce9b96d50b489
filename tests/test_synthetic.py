"""Synthetic object/part scenes: reproducible, split-disjoint, and labelled consistently."""

from __future__ import annotations

import numpy as np
import pytest

from semsam.data import build_dataset
from semsam.data.synthetic import OBJECT_NAMES, PART_NAMES, SyntheticPartsDataset
from semsam.training.config import DatasetSpec


def test_scenes_are_reproducible_and_splits_differ():
    train = SyntheticPartsDataset(split="train", length=5, image_size=64)
    again = SyntheticPartsDataset(split="train", length=5, image_size=64)
    val = SyntheticPartsDataset(split="val", length=5, image_size=64)
    assert len(train) == 5
    for i in range(5):
        assert np.array_equal(train[i].image, again[i].image) and np.array_equal(train[i].masks, again[i].masks)
        assert not np.array_equal(train[i].image, val[i].image)
    assert not np.array_equal(train[0].image, SyntheticPartsDataset(split="train", image_size=64, seed=1)[0].image)


def test_objects_are_the_union_of_their_labelled_parts():
    dataset = SyntheticPartsDataset(split="train", length=20, image_size=96)
    seen_objects, seen_parts = set(), set()
    for record in (dataset[i] for i in range(len(dataset))):
        assert record.image.shape == (96, 96, 3) and record.masks.shape[1:] == (96, 96)
        is_part = np.array([p is not None for p in record.part_classes])
        assert all(c is not None for c in record.object_classes)
        objects, parts = record.masks[~is_part], record.masks[is_part]
        assert len(objects) >= 1
        part_objects = np.array(record.object_classes)[is_part]
        for part, object_class in zip(parts, part_objects):
            owners = [i for i, obj in enumerate(objects) if (part & obj).sum() == part.sum()]
            assert len(owners) == 1 and record.object_classes[int(np.flatnonzero(~is_part)[owners[0]])] == object_class
        # A pixel belongs to at most one object and at most one part: occlusion removes hidden pixels.
        assert objects.sum(0).max() <= 1 and parts.sum(0).max() <= 1
        seen_objects.update(np.array(record.object_classes)[~is_part].tolist())
        seen_parts.update(c for c in record.part_classes if c is not None)
    assert seen_objects == set(range(len(OBJECT_NAMES)))
    assert seen_parts == set(range(len(PART_NAMES)))


def test_registered_with_options_and_bad_arguments_are_named():
    dataset = build_dataset(DatasetSpec(kind="synthetic_parts", root="", split="val",
                                        options={"length": 3, "image_size": 48}))
    assert len(dataset) == 3 and dataset[2].image.shape == (48, 48, 3)
    assert dataset.object_names == OBJECT_NAMES and dataset.part_names == PART_NAMES
    with pytest.raises(ValueError, match="split 'valid' is unknown"):
        SyntheticPartsDataset(split="valid")
    with pytest.raises(ValueError, match="image_size >= 32"):
        SyntheticPartsDataset(split="train", image_size=8)
    with pytest.raises(IndexError):
        dataset[3]

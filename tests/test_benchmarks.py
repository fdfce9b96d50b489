"""Interactive-segmentation benchmark readers: each folder layout's fixture, a training dataset as objects, errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers import BENCHMARK_OBJECT, rect, scene_image, write_benchmark, write_coco_instances
from semsam.data import CocoInstancesDataset
from semsam.data.benchmarks import FOLDER_LAYOUTS, FolderBenchmark, RecordBenchmark


@pytest.mark.parametrize("kind", ["grabcut", "berkeley", "davis"])
def test_each_layout_reads_its_object_and_ignored_band(tmp_path, kind):
    root = tmp_path / kind
    image_dir = write_benchmark(root, kind)
    benchmark = FolderBenchmark(root=root, layout=FOLDER_LAYOUTS[kind],
                                image_dir=image_dir if kind == "berkeley" else None)
    assert len(benchmark) == 2  # Berkeley's extra image without a mask is skipped
    sample = benchmark[0]
    assert sample.image_id == "a" and sample.image.shape == (*BENCHMARK_OBJECT.shape, 3)
    assert sample.masks.shape == (1, *BENCHMARK_OBJECT.shape)
    if kind == "grabcut":
        inner = rect(14, 18, 34, 42)
        assert np.array_equal(sample.masks[0], inner)
        assert np.array_equal(sample.ignore[0], BENCHMARK_OBJECT ^ inner)
        assert benchmark.items[1][0].suffix == ".bmp"
    else:
        assert (sample.ignore is None) == (kind == "davis")  # Berkeley is read with GrabCut's rule: no 128 here
        assert sample.ignore is None or not sample.ignore.any()
        assert np.array_equal(sample.masks[0], BENCHMARK_OBJECT)


def test_berkeley_needs_its_images_pointed_at(tmp_path):
    root = tmp_path / "berkeley"
    write_benchmark(root, "berkeley")
    with pytest.raises(ValueError, match=r"image folder .*images does not exist"):
        FolderBenchmark(root=root, layout=FOLDER_LAYOUTS["berkeley"])


def test_a_mask_without_its_image_is_named(tmp_path):
    root = tmp_path / "davis"
    write_benchmark(root, "davis")
    (root / "img" / "b.jpg").unlink()
    with pytest.raises(ValueError, match=r"1 mask\(s\) .* e\.g\. b\.png"):
        FolderBenchmark(root=root, layout=FOLDER_LAYOUTS["davis"])


def test_empty_folders_and_bad_masks_are_named(tmp_path):
    root = tmp_path / "davis"
    (root / "img").mkdir(parents=True)
    (root / "gt").mkdir()
    with pytest.raises(ValueError, match="no mask in"):
        FolderBenchmark(root=root, layout=FOLDER_LAYOUTS["davis"])
    Image.fromarray(scene_image(BENCHMARK_OBJECT)).save(root / "img" / "a.jpg")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "gt" / "a.png")
    Image.fromarray(scene_image(BENCHMARK_OBJECT)).save(root / "img" / "b.jpg")
    Image.fromarray(np.zeros(BENCHMARK_OBJECT.shape, np.uint8)).save(root / "gt" / "b.png")
    benchmark = FolderBenchmark(root=root, layout=FOLDER_LAYOUTS["davis"])
    with pytest.raises(ValueError, match="is 10x10 but its image"):
        benchmark[0]
    with pytest.raises(ValueError, match="has no object pixel"):
        benchmark[1]


def test_a_training_dataset_gives_every_instance_as_an_object(tmp_path):
    write_coco_instances(tmp_path, "val")
    dataset = CocoInstancesDataset(root=tmp_path, split="val")
    benchmark = RecordBenchmark(dataset)
    assert len(benchmark) == len(dataset) == 2
    sample, record = benchmark[0], dataset[0]
    assert sample.ignore is None and sample.image_id == record.image_id
    assert np.array_equal(sample.masks, record.masks) and len(sample.masks) == 3

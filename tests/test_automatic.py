"""Automatic mask generation: filters, per-level NMS, crops, cleanup, label maps, the tree and RLE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from semsam.automatic import GeneratedMask, MaskGenerator, level_label_maps
from semsam.automatic.grid import crop_boxes, point_grid
from semsam.automatic.masks import (
    box_iou, encode_rle, grouped_nms, mask_boxes, remove_small_regions, stability_scores,
)
from semsam.build import ASSETS, load_model
from semsam.image import read_image
from semsam.io import rle_to_mask
from semsam.visualize import label_map_overlay, level_legend
from semsam.prediction import Prompt
from semsam.predictor import Predictor

# The random test model predicts negative IoUs: keep everything unless a test says otherwise.
KEEP_ALL = dict(pred_iou_thresh=-10.0, stability_score_thresh=0.0)


@pytest.fixture(scope="module")
def masks(small_model, scene) -> list[GeneratedMask]:
    return MaskGenerator(small_model, points_per_side=4, **KEEP_ALL).generate(scene)


def test_stability_boxes_and_iou():
    logits = torch.full((2, 4, 5), -5.0)
    logits[0, 1:3, 1:4] = 5.0
    logits[1, 0, 0] = 0.5
    assert stability_scores(logits, 1.0).tolist() == [1.0, 0.0]
    boxes = mask_boxes(logits > 0)
    assert boxes.tolist() == [[1, 1, 4, 3], [0, 0, 1, 1]]
    assert mask_boxes(torch.zeros(1, 3, 3, dtype=torch.bool)).tolist() == [[0, 0, 0, 0]]
    iou = box_iou(torch.tensor([[0, 0, 2, 2], [1, 0, 3, 2]], dtype=torch.float32))
    assert iou[0, 1].item() == pytest.approx(1 / 3)


def test_nms_runs_per_group_only():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 9], [0, 0, 10, 10], [50, 50, 60, 60]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    assert grouped_nms(boxes, scores, torch.tensor([1, 1, 2, 2]), 0.7).tolist() == [0, 2, 3]
    assert grouped_nms(boxes, scores, torch.tensor([1, 1, 1, 1]), 0.7).tolist() == [0, 3]


def test_rle_batch_round_trip():
    rng = np.random.default_rng(1)
    batch = rng.random((3, 17, 23)) > 0.5
    for mask, rle in zip(batch, encode_rle(batch)):
        assert isinstance(rle["counts"], str) and rle["size"] == [17, 23]
        assert np.array_equal(rle_to_mask(rle), mask)


def test_small_regions_are_removed():
    mask = np.zeros((20, 20), bool)
    mask[2:15, 2:15] = True
    mask[6, 6] = False  # a one-pixel hole
    mask[18, 18] = True  # a one-pixel island
    cleaned, changed = remove_small_regions(mask, 5)
    assert changed and cleaned[6, 6] and not cleaned[18, 18] and cleaned.sum() == 13 * 13
    assert not remove_small_regions(cleaned, 5)[1]


def test_grid_and_crops():
    grid = point_grid(4)
    assert grid.shape == (16, 2) and grid.min() == pytest.approx(0.125) and grid.max() == pytest.approx(0.875)
    boxes, layers = crop_boxes(100, 60, crop_n_layers=2, overlap_ratio=0.3)
    assert layers == [0] + [1] * 4 + [2] * 16 and boxes[0] == (0, 0, 100, 60)
    for x0, y0, x1, y1 in boxes:
        assert 0 <= x0 < x1 <= 100 and 0 <= y0 < y1 <= 60
    assert max(b[2] for b in boxes[1:5]) == 100 and max(b[3] for b in boxes[1:5]) == 60


def test_levels_are_named_by_size(small_model, scene):
    predictor = Predictor(small_model)
    predictor.set_image(scene)
    unsuppressed = MaskGenerator(small_model, points_per_side=2, box_nms_thresh=1.0, **KEEP_ALL).generate(scene)
    by_point: dict[tuple, dict[int, np.ndarray]] = {}
    for mask in unsuppressed:
        by_point.setdefault(mask.point_coords, {})[mask.level] = mask.mask()
    assert len(by_point) == 4
    reordered = False
    for point, levels in by_point.items():
        low = predictor.predict_low_res([Prompt(points=[point])])
        valid_h, valid_w = low.valid_size
        areas = (low.logits[0, :, :valid_h, :valid_w] > 0).sum((1, 2))
        order = torch.argsort(areas, stable=True)
        reordered |= order.tolist() != sorted(order.tolist())
        expected = predictor.upsample_logits(low.logits[0, order]) > 0
        for level, mask in levels.items():
            assert np.array_equal(mask, expected[level - 1].numpy()), (point, level)
        full = predictor.predict(points=[point]).masks
        assert all(any(np.array_equal(mask, f) for f in full) for mask in levels.values())
    assert reordered, "the model's token order should differ from the size order somewhere"


def test_nms_is_per_level(masks):
    assert {m.level for m in masks} == set(range(1, 7))
    for level in range(1, 7):
        same = [m for m in masks if m.level == level]
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (m.bbox for m in same)])
        iou = box_iou(boxes).fill_diagonal_(0)
        assert iou.max() <= 0.7
    everything = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (m.bbox for m in masks)])
    assert box_iou(everything).fill_diagonal_(0).max() > 0.7, "masks of different levels may overlap"


def test_fields_are_consistent(masks, scene):
    for index, mask in enumerate(masks):
        pixels = mask.mask()
        assert mask.id == index and pixels.shape == scene.shape[:2] and mask.area == pixels.sum() > 0
        x, y, w, h = mask.bbox
        rows, cols = np.flatnonzero(pixels.any(1)), np.flatnonzero(pixels.any(0))
        assert (x, y, x + w, y + h) == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
        assert mask.crop_box == (0, 0, scene.shape[1], scene.shape[0]) and mask.label is None
    levels = [m.level for m in masks]
    assert levels == sorted(levels)


def test_label_maps_do_not_overlap_and_prefer_small_masks(masks, scene):
    maps = level_label_maps(masks, *scene.shape[:2])
    assert sorted(maps) == sorted({m.level for m in masks})
    for level, label_map in maps.items():
        same = [m for m in masks if m.level == level]
        union = np.zeros(scene.shape[:2], bool)
        for mask in same:
            pixels = mask.mask()
            union |= pixels
            held = label_map[pixels] - 1
            assert np.all(np.isin(held, [m.id for m in same]))
            # a pixel is given to another mask only when that one is no larger
            assert all(masks[other].area <= mask.area for other in np.unique(held))
        assert np.array_equal(label_map > 0, union)


def test_tree_parent_contains_child(masks):
    assert any(m.parent is not None for m in masks)
    for mask in masks:
        for child in mask.children:
            assert masks[child].parent == mask.id
        child_pixels = mask.mask()
        containing = [m for m in masks if m.level > mask.level
                      and (child_pixels & m.mask()).sum() >= 0.9 * child_pixels.sum()]
        if mask.parent is None:
            assert not containing, "a mask contained by a coarser mask must have a parent"
            continue
        parent = masks[mask.parent]
        assert parent.level > mask.level and mask.id in parent.children
        assert (child_pixels & parent.mask()).sum() >= 0.9 * child_pixels.sum()
        assert parent.area == min(m.area for m in containing)


def test_coco_rle_output_matches_binary(masks, small_model, scene):
    encoded = MaskGenerator(small_model, points_per_side=4, output_mode="coco_rle", **KEEP_ALL).generate(scene)
    assert len(encoded) == len(masks)
    for rle_mask, binary in zip(encoded, masks):
        assert isinstance(rle_mask.segmentation["counts"], str)
        assert np.array_equal(rle_to_mask(rle_mask.segmentation), binary.segmentation)
        assert rle_mask.to_sa1b()["segmentation"] == rle_mask.segmentation


def test_results_do_not_depend_on_batch_composition(masks, small_model, scene):
    other = MaskGenerator(small_model, points_per_side=4, points_per_batch=3, **KEEP_ALL).generate(scene)
    assert [(m.level, m.point_coords, m.area) for m in other] == [(m.level, m.point_coords, m.area) for m in masks]
    assert all(np.array_equal(a.segmentation, b.segmentation) for a, b in zip(other, masks))
    for a, b in zip(other, masks):
        assert a.predicted_iou == pytest.approx(b.predicted_iou, abs=1e-5)


def test_levels_subset_and_filters(masks, small_model, scene):
    coarse = MaskGenerator(small_model, points_per_side=4, levels=(6, 3), **KEEP_ALL).generate(scene)
    assert {m.level for m in coarse} == {3, 6}
    key = [(m.level, m.point_coords, m.area) for m in masks if m.level in (3, 6)]
    assert [(m.level, m.point_coords, m.area) for m in coarse] == key
    every = MaskGenerator(small_model, points_per_side=4, levels=None, **KEEP_ALL).generate(scene)
    assert [(m.level, m.area) for m in every] == [(m.level, m.area) for m in masks], "None means all K levels"
    strict = MaskGenerator(small_model, points_per_side=4, pred_iou_thresh=-10.0, stability_score_thresh=0.5)
    assert all(m.stability_score >= 0.5 for m in strict.generate(scene))
    assert len(strict.generate(scene)) < len(masks)


def test_crop_layers_give_original_coordinates():
    # The random test model's masks are blobs that touch every crop edge (so crops rightly drop them): use the
    # embedded model on a small real photograph.
    model = load_model()
    scene = np.asarray(Image.fromarray(read_image(ASSETS / "example.jpg")).resize((192, 160)))
    found = MaskGenerator(model, points_per_side=3, crop_n_layers=1).generate(scene)
    height, width = scene.shape[:2]
    from_crops = [m for m in found if m.crop_box != (0, 0, width, height)]
    assert from_crops, "the crops should contribute masks"
    predictor = Predictor(model)
    for mask in from_crops[:3]:
        x0, y0, w, h = mask.crop_box
        pixels = mask.mask()
        assert pixels.shape == (height, width)
        outside = pixels.copy()
        outside[y0 : y0 + h, x0 : x0 + w] = False
        assert not outside.any()
        predictor.set_image(scene[y0 : y0 + h, x0 : x0 + w])
        px, py = mask.point_coords
        expected = predictor.predict(points=[(px - x0, py - y0)]).masks
        assert any(np.array_equal(pixels[y0 : y0 + h, x0 : x0 + w], e) for e in expected)


def test_small_region_cleanup(small_model, scene):
    found = MaskGenerator(small_model, points_per_side=4, min_mask_region_area=30, **KEEP_ALL).generate(scene)
    assert found
    for mask in found:
        assert not remove_small_regions(mask.mask(), 30)[1]


def test_bad_arguments(small_model, scene):
    with pytest.raises(ValueError, match="levels"):
        MaskGenerator(small_model, levels=(0, 1))
    with pytest.raises(ValueError, match="output_mode"):
        MaskGenerator(small_model, output_mode="polygons")
    with pytest.raises(ValueError, match="box_nms_thresh"):
        MaskGenerator(small_model, box_nms_thresh=0)
    with pytest.raises(ValueError, match="levels must be 1..6"):
        MaskGenerator(small_model, levels=(7,), points_per_side=1).generate(scene)
    with pytest.raises(ValueError, match="HxWx3|image"):
        MaskGenerator(small_model, points_per_side=1).generate(np.zeros((4, 4, 7), np.uint8))


def test_label_map_overlay():
    image = np.full((10, 12, 3), 100, np.uint8)
    label_map = np.zeros((10, 12), np.int32)
    label_map[2:6, 2:6] = 3
    label_map[2:6, 6:10] = 8
    out = label_map_overlay(image, label_map)
    assert np.array_equal(out[0, 0], image[0, 0]), "pixels outside every segment keep their colour"
    assert not np.array_equal(out[4, 4], out[4, 8]), "neighbouring segments get different colours"
    assert np.array_equal(out[3, 3], out[4, 4]), "one segment, one colour"
    assert np.array_equal(out[4, 6], [255, 255, 255]), "segment boundaries are traced"
    with pytest.raises(ValueError, match="does not match"):
        label_map_overlay(image, label_map[:5])


def test_generate_on_an_encoded_predictor(masks, small_model, scene):
    predictor = Predictor(small_model)
    predictor.set_image(scene)
    generator = MaskGenerator(small_model, points_per_side=4, **KEEP_ALL)
    reused = generator.generate(scene, predictor=predictor)
    assert [(m.level, m.point_coords, m.area) for m in reused] == [(m.level, m.point_coords, m.area) for m in masks]
    assert all(np.array_equal(a.segmentation, b.segmentation) for a, b in zip(reused, masks))
    with pytest.raises(ValueError, match="set_image"):
        generator.generate(scene[:50], predictor=predictor)


def test_level_legend_adds_a_band_under_the_overlay():
    overlay = np.full((60, 200, 3), 100, np.uint8)
    out = level_legend(overlay, level=3, levels=(1, 3, 6), count=12)
    assert out.shape[1:] == (200, 3) and out.shape[0] > 60
    assert np.array_equal(out[:60], overlay), "the overlay itself is unchanged"
    band = out[60:]
    assert (band == 240).all(-1).sum() > 50, "the legend writes text and boxes in the text colour"
    other = level_legend(overlay, level=1, levels=(1, 3, 6), count=12)
    assert not np.array_equal(other[60:], band), "the filled box follows the level shown"

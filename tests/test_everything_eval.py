"""Segment-everything recall: IoU matching against known masks, the metrics' arithmetic, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from semsam.automatic.hierarchy import GeneratedMask
from semsam.automatic.masks import encode_rle
from semsam.cli.main import main
from semsam.data.records import SegmentationDataset, SegmentationRecord
from semsam.evaluation.everything import best_ious, evaluate_everything


def square(top: int, left: int, size: int, shape: tuple[int, int] = (40, 40)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top : top + size, left : left + size] = True
    return mask


def generated(masks: list[np.ndarray], scores: list[float] | None = None, *, rle: bool = True) -> list[GeneratedMask]:
    scores = scores or [0.5] * len(masks)
    segmentations = encode_rle(np.stack(masks)) if rle and masks else masks
    return [GeneratedMask(id=i, level=1, segmentation=segmentation, area=int(mask.sum()), bbox=(0, 0, 1, 1),
                          predicted_iou=score, stability_score=1.0, point_coords=(0, 0), crop_box=(0, 0, 40, 40))
            for i, (segmentation, mask, score) in enumerate(zip(segmentations, masks, scores))]


class Scenes(SegmentationDataset):
    def __init__(self, targets: list[np.ndarray]) -> None:
        self.targets = targets

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> SegmentationRecord:
        # The 2x2 square covers 0.25% of the image: below the 0.5% floor, so it is no target.
        masks = np.stack([*self.targets, square(0, 0, 2)])
        return SegmentationRecord(image=np.zeros((40, 40, 3), np.uint8), masks=masks, object_classes=None,
                                  part_classes=None, image_id=str(index))


class Fixed:
    def __init__(self, masks: list[GeneratedMask]) -> None:
        self.masks = masks

    def generate(self, image: np.ndarray) -> list[GeneratedMask]:
        return self.masks


def test_best_ious_match_each_target_to_its_best_mask():
    targets = np.stack([square(0, 0, 10), square(20, 20, 10)])
    masks = generated([square(0, 0, 10), square(20, 20, 5), square(0, 0, 20)])
    assert best_ious(masks, targets) == pytest.approx([1.0, 0.25])
    assert best_ious([], targets).tolist() == [0.0, 0.0]


def test_recall_is_averaged_over_iou_thresholds_and_counts_only_large_enough_targets():
    targets = [square(0, 0, 10), square(20, 20, 10)]
    # IoU 1 with the first target, 0.64 (8x8 inside 10x10) with the second: matched at 0.5, 0.55, 0.6 only.
    metrics = evaluate_everything(Fixed(generated([square(0, 0, 10), square(21, 21, 8)])), Scenes(targets),
                                  progress=False)
    assert (metrics.targets, metrics.images, metrics.masks_per_image) == (4, 2, 2.0)
    assert metrics.average_recall == pytest.approx((1.0 + 0.3) / 2)
    assert metrics.recall_50 == 1.0 and metrics.mean_best_iou == pytest.approx((1 + 0.64) / 2)
    empty = evaluate_everything(Fixed([]), Scenes(targets), max_images=1, progress=False)
    assert (empty.average_recall, empty.images, empty.targets) == (0.0, 1, 2)


def test_the_top_100_are_the_highest_scored_masks():
    targets = [square(0, 0, 10)]
    masks = [square(30, 30, 4)] * 100 + [square(0, 0, 10)]
    best_scored_last = generated(masks, [0.9] * 100 + [0.1])
    best_scored_first = generated(masks, [0.1] * 100 + [0.9])
    assert evaluate_everything(Fixed(best_scored_last), Scenes(targets), progress=False).average_recall_100 == 0.0
    assert evaluate_everything(Fixed(best_scored_first), Scenes(targets), progress=False).average_recall_100 == 1.0


def test_binary_masks_are_refused_with_what_to_do():
    with pytest.raises(ValueError, match="output_mode='coco_rle'"):
        evaluate_everything(Fixed(generated([square(0, 0, 10)], rle=False)), Scenes([square(0, 0, 10)]),
                            progress=False)


def test_cli_reports_the_metrics_and_the_generator_settings(tmp_path, capsys):
    out = tmp_path / "everything.json"
    argv = ["eval", "everything", "--dataset", "synthetic_parts", "--dataset-option", "length=2",
            "--points-per-side", "4", "--pred-iou-thresh", "0.1", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["points_per_side"] == 4 and report["pred_iou_thresh"] == 0.1 and report["images"] == 2
    assert 0 <= report["average_recall"] <= report["recall_50"] <= 1 and report["masks_per_image"] > 0
    assert main(["eval", "click", "--dataset", "synthetic_parts", "--points-per-side", "4"]) == 2
    assert "belong to the everything protocol" in capsys.readouterr().err

"""The 1-click protocol's metrics, checked with stand-in predictors whose answers are known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from semsam.data import SegmentationRecord
from semsam.evaluation.click import evaluate_clicks, interior_click, mask_ious
from semsam.prediction import Prediction


def nested_record() -> SegmentationRecord:
    """Whole image, left half, a square inside the left half, and a 3-pixel speck (below 0.5%)."""
    masks = np.zeros((4, 40, 60), bool)
    masks[0] = True
    masks[1][:, :30] = True
    masks[2][10:30, 5:25] = True
    masks[3][0, 57:60] = True
    return SegmentationRecord(image=np.zeros((40, 60, 3), np.uint8), masks=masks, object_classes=None,
                              part_classes=None, image_id="nested")


class Oracle:
    """Answers a click with every ground-truth mask containing it, padded with empty masks to K = 6."""

    def __init__(self, record: SegmentationRecord, *, scores_prefer: str) -> None:
        self.record, self.scores_prefer = record, scores_prefer
        self.clicks: list[tuple[int, int]] = []

    def set_image(self, image: np.ndarray) -> None:
        assert image.shape == self.record.image.shape

    def predict(self, points, labels) -> Prediction:
        (x, y), = points
        self.clicks.append((x, y))
        masks = self.record.masks[self.record.masks[:, y, x]]
        masks = np.concatenate([masks, np.zeros((6 - len(masks), *masks.shape[1:]), bool)])
        areas = masks.reshape(6, -1).sum(1).astype(np.float32)
        scores = areas if self.scores_prefer == "largest" else -areas
        return Prediction(masks=masks, scores=scores, logits=np.zeros((6, 10, 15), np.float32),
                          boxes=np.zeros((6, 4), np.float32), labels=None)


def test_oracle_scores_perfectly_and_top1_follows_the_scores():
    record = nested_record()
    oracle = Oracle(record, scores_prefer="largest")
    metrics = evaluate_clicks(oracle, [record], progress=False)
    assert metrics.targets == 3 and metrics.images == 1
    assert metrics.miou_best == pytest.approx(1.0)
    assert metrics.coverage == pytest.approx(1.0)
    # Top-1 is always the whole image: IoU 1, 0.5 and 400/2400 for the three targets.
    assert metrics.miou_top1 == pytest.approx((1 + 0.5 + 400 / 2400) / 3)
    assert len(oracle.clicks) == 3
    for (x, y), index in zip(oracle.clicks, (0, 1, 2)):
        assert record.masks[index][y, x]


def test_coverage_averages_over_every_segment_at_the_click():
    record = nested_record()

    class OnlyTheSmallest(Oracle):
        def predict(self, points, labels) -> Prediction:
            prediction = super().predict(points, labels)
            keep = int(np.argmin(np.where(prediction.masks.any((1, 2)), prediction.masks.sum((1, 2)), 10**9)))
            prediction.masks[np.arange(6) != keep] = False
            return prediction

    predictor = OnlyTheSmallest(record, scores_prefer="largest")
    metrics = evaluate_clicks(predictor, [record], progress=False)
    areas = record.masks.reshape(4, -1).sum(1)
    expected = []
    for x, y in predictor.clicks:
        containing = np.flatnonzero(record.masks[:, y, x])
        smallest = areas[containing].min()
        # Nested masks: the IoU of the smallest with a containing mask j is area(smallest) / area(j).
        expected.append(np.mean([smallest / areas[j] for j in containing]))
    assert metrics.coverage == pytest.approx(np.mean(expected))
    assert metrics.coverage < 0.9


def test_interior_click_and_ious():
    mask = np.zeros((9, 9), bool)
    mask[1:8, 1:8] = True
    assert interior_click(mask) == (4, 4)
    predicted = np.stack([mask, ~mask, np.ones_like(mask)])
    np.testing.assert_allclose(mask_ious(predicted, mask), [1.0, 0.0, 49 / 81])

"""Calibration of predicted IoUs (`semsam calibrate-iou`): per granularity output, the affine map of its predicted
IoU that best predicts its IoU with the segment a click was meant for.

The IoU head learns, for an output matched to no target, its best IoU with any segment at the click, so every
output that fits some segment scores high, the coarse ones, which fit a whole person or scene region, highest. The
top-scored mask then often misses what was clicked. Least squares on clicks of training data rescales each
output's scores to what it gets right.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from tqdm import tqdm

from semsam.data.records import SegmentationDataset
from semsam.evaluation.click import click_targets, mask_ious
from semsam.predictor import Predictor, Prompt


@dataclass(frozen=True)
class ClickScores:
    """Per click target of one data set: the IoU [N, K] of each output with the segment, and the raw predicted IoUs
    [N, K], in the model's output order."""

    ious: np.ndarray
    scores: np.ndarray

    def top1_miou(self, calibration: Sequence[Sequence[float]] | None = None) -> float:
        """Mean IoU of the top-scored output, its scores calibrated by (scale, offset) pairs when given; nan when
        there are no clicks."""
        if len(self.ious) == 0:
            return float("nan")
        scores = self.scores
        if calibration is not None:
            scale, offset = np.asarray(calibration, np.float64).T
            scores = scores * scale + offset
        return float(self.ious[np.arange(len(self.ious)), scores.argmax(1)].mean())


def click_scores(
    predictor: Predictor, dataset: SegmentationDataset, *, max_images: int | None = None, progress: bool = True
) -> ClickScores:
    """Clicks every segment covering >= 0.5% of its image at its interior-most pixel, as `semsam eval click` does.

    Args:
        predictor: wraps the model; its calibration, if any, is left out while scoring.
        dataset: images with their segments.
        max_images: read only the first N images.
        progress: show a progress bar.
    """
    model = predictor.model
    fitted = model.semantic
    model.semantic = replace(fitted, iou_calibration=[])
    ious, scores = [], []
    try:
        count = len(dataset) if max_images is None else min(max_images, len(dataset))
        for index in tqdm(range(count), desc="clicking", unit="image", disable=not progress):
            record = dataset[index]
            targets = click_targets(record.masks)
            if not targets:
                continue
            predictor.set_image(record.image)
            for target, (x, y) in targets:
                output = predictor.predict_low_res([Prompt(points=[(x, y)], labels=[1])])
                masks = (predictor.upsample_logits(output.logits[0]) > 0).cpu().numpy()
                ious.append(mask_ious(masks, record.masks[target]))
                scores.append(output.scores[0].cpu().numpy())
    finally:
        model.semantic = fitted
    width = model.num_granularities
    return ClickScores(ious=np.array(ious, np.float64).reshape(-1, width),
                       scores=np.array(scores, np.float64).reshape(-1, width))


def fit_iou_calibration(samples: Sequence[ClickScores]) -> list[list[float]]:
    """(scale, offset) per output minimising the squared error between scale * score + offset and the IoU, each data
    set weighing as much as any other however many clicks it has.

    Raises:
        ValueError: no clicks, or an output whose scores do not vary (nothing to fit a scale to).
    """
    samples = [s for s in samples if len(s.ious)]
    if not samples:
        raise ValueError("no click targets to calibrate on: the data sets hold no segment covering >= 0.5% of an image")
    ious = np.concatenate([s.ious for s in samples])
    scores = np.concatenate([s.scores for s in samples])
    weights = np.sqrt(np.concatenate([np.full(len(s.ious), 1.0 / len(s.ious)) for s in samples]))
    calibration = []
    for k in range(scores.shape[1]):
        if np.ptp(scores[:, k]) == 0:
            raise ValueError(f"output {k}'s predicted IoU is the same for every click; it cannot be calibrated")
        design = np.stack([scores[:, k], np.ones(len(scores))], 1) * weights[:, None]
        (scale, offset), *_ = np.linalg.lstsq(design, ious[:, k] * weights, rcond=None)
        calibration.append([float(scale), float(offset)])
    return calibration

"""1-click evaluation: mIoU of the best and the top-scored mask, and coverage of every segment at the click."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from tqdm import tqdm

from semsam.clicks import interior_pixel
from semsam.data.records import SegmentationDataset
from semsam.prediction import Prediction

MIN_AREA_FRACTION = 0.005


class ClickPredictor(Protocol):
    """What the protocol needs: a `semsam.Predictor`, or a baseline from `semsam.evaluation.baselines`."""

    def set_image(self, image: np.ndarray) -> None: ...

    def predict(self, points: Sequence[Sequence[float]], labels: Sequence[int] | None = None) -> Prediction: ...


@dataclass(frozen=True)
class ClickMetrics:
    """Means over targets (miou_*) and clicks (coverage), plus timing on this machine."""

    miou_best: float
    miou_top1: float
    coverage: float
    targets: int
    images: int
    seconds_per_image: float
    ms_per_click: float


def interior_click(mask: np.ndarray) -> tuple[int, int]:
    """The pixel of a non-empty `mask` farthest from its boundary, as (x, y)."""
    pixel = interior_pixel(mask)
    if pixel is None:
        raise ValueError("cannot click on an empty mask")
    return pixel[1], pixel[0]


def click_targets(masks: np.ndarray) -> list[tuple[int, tuple[int, int]]]:
    """The protocol's targets among an image's segments [M, H, W]: the index of each covering >= 0.5% of the image,
    with its click (x, y) at the segment's interior-most pixel."""
    if len(masks) == 0:
        return []
    areas = masks.reshape(len(masks), -1).sum(1)
    return [(int(i), interior_click(masks[i])) for i in np.flatnonzero(areas >= MIN_AREA_FRACTION * masks[0].size)]


def mask_ious(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """IoU of each of K predicted masks [K, H, W] with one target [H, W]."""
    flat = predicted.reshape(len(predicted), -1)
    target = target.reshape(-1)
    intersection = (flat & target).sum(1)
    union = (flat | target).sum(1)
    return intersection / np.maximum(union, 1)


def evaluate_clicks(
    predictor: ClickPredictor, dataset: SegmentationDataset, *, max_images: int | None = None, progress: bool = True
) -> ClickMetrics:
    """Clicks the interior-most pixel of every segment covering >= 0.5% of its image.

    Args:
        predictor: wraps the model under test (or a baseline).
        dataset: images with their (near-duplicate-merged) human segments, read one at a time.
        max_images: evaluate only the first N images.
        progress: show a progress bar.

    Returns:
        The metrics; `coverage` averages, per click, the best IoU over all segments containing the click.
    """
    best, top1, coverage = [], [], []
    images = 0
    encode_seconds, decode_seconds = 0.0, 0.0
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    for index in tqdm(range(count), desc="evaluating", unit="image", disable=not progress):
        record = dataset[index]
        masks = record.masks
        targets = click_targets(masks)
        if not targets:
            continue
        start = time.perf_counter()
        predictor.set_image(record.image)
        encode_seconds += time.perf_counter() - start
        images += 1
        for index, (x, y) in targets:
            start = time.perf_counter()
            prediction = predictor.predict(points=[(x, y)], labels=[1])
            decode_seconds += time.perf_counter() - start
            ious = mask_ious(prediction.masks, masks[index])
            best.append(ious.max())
            top1.append(ious[int(np.argmax(prediction.scores))])
            containing = np.flatnonzero(masks[:, y, x])
            coverage.append(np.mean([mask_ious(prediction.masks, masks[j]).max() for j in containing]))
    clicks_total = max(len(best), 1)
    return ClickMetrics(
        miou_best=float(np.mean(best)) if best else 0.0,
        miou_top1=float(np.mean(top1)) if top1 else 0.0,
        coverage=float(np.mean(coverage)) if coverage else 0.0,
        targets=len(best),
        images=images,
        seconds_per_image=encode_seconds / max(images, 1),
        ms_per_click=1000 * decode_seconds / clicks_total,
    )

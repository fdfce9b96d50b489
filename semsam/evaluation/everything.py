"""Segment everything as object proposals: how many of an image's segments the generated masks recover.

Average recall over IoU thresholds 0.5:0.05:0.95 is the measure COCO uses for proposals and SAM reports for its
automatic masks (AR@1000); here for every mask a generator keeps, and for the 100 it scores highest.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from semsam.automatic.hierarchy import GeneratedMask
from semsam.automatic.masks import encode_rle, to_pycocotools
from semsam.data.records import SegmentationDataset
from semsam.evaluation.click import MIN_AREA_FRACTION

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
TOP_MASKS = 100


class MaskSource(Protocol):
    """What the protocol needs: a `semsam.automatic.MaskGenerator` with output_mode "coco_rle"."""

    def generate(self, image: np.ndarray) -> list[GeneratedMask]: ...


@dataclass(frozen=True)
class EverythingMetrics:
    """Means over the targets of all images, plus mask counts and timing on this machine.

    `average_recall`: the share of targets some mask matches at IoU >= t, averaged over t in 0.5:0.05:0.95;
    `average_recall_100`: the same with each image's 100 highest predicted-IoU masks; `recall_50`: at t = 0.5
    alone; `mean_best_iou`: each target's best IoU with any mask.
    """

    average_recall: float
    average_recall_100: float
    recall_50: float
    mean_best_iou: float
    masks_per_image: float
    targets: int
    images: int
    seconds_per_image: float


def best_ious(masks: Sequence[GeneratedMask], targets: np.ndarray) -> np.ndarray:
    """Each target's best IoU [T] with any of `masks` (COCO RLE segmentations), 0 without masks."""
    if not masks:
        return np.zeros(len(targets))
    found = to_pycocotools([mask.segmentation for mask in masks])
    truth = to_pycocotools(encode_rle(targets))
    return np.asarray(mask_utils.iou(found, truth, [0] * len(truth))).reshape(len(found), len(truth)).max(0)


def evaluate_everything(
    generator: MaskSource, dataset: SegmentationDataset, *, max_images: int | None = None, progress: bool = True
) -> EverythingMetrics:
    """Segments everything in each image and matches the masks to its segments covering >= 0.5% of it.

    Args:
        generator: the generator under test, giving COCO RLE masks.
        dataset: images with their (near-duplicate-merged) human segments, read one at a time.
        max_images: evaluate only the first N images.
        progress: show a progress bar.
    """
    every, top, counts = [], [], []
    seconds = 0.0
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    for index in tqdm(range(count), desc="evaluating", unit="image", disable=not progress):
        record = dataset[index]
        areas = record.masks.reshape(len(record.masks), -1).sum(1)
        targets = record.masks[areas >= MIN_AREA_FRACTION * record.masks[0].size]
        if len(targets) == 0:
            continue
        start = time.perf_counter()
        masks = generator.generate(record.image)
        seconds += time.perf_counter() - start
        if masks and not isinstance(masks[0].segmentation, dict):
            raise ValueError("the generator must give COCO RLE masks: MaskGenerator(..., output_mode='coco_rle')")
        ranked = sorted(masks, key=lambda mask: -mask.predicted_iou)[:TOP_MASKS]
        every.append(best_ious(masks, targets))
        top.append(best_ious(ranked, targets))
        counts.append(len(masks))
    every_iou = np.concatenate(every) if every else np.zeros(0)
    top_iou = np.concatenate(top) if top else np.zeros(0)
    return EverythingMetrics(
        average_recall=_average_recall(every_iou),
        average_recall_100=_average_recall(top_iou),
        recall_50=float((every_iou >= 0.5).mean()) if len(every_iou) else 0.0,
        mean_best_iou=float(every_iou.mean()) if len(every_iou) else 0.0,
        masks_per_image=float(np.mean(counts)) if counts else 0.0,
        targets=len(every_iou),
        images=len(counts),
        seconds_per_image=seconds / max(len(counts), 1),
    )


def _average_recall(ious: np.ndarray) -> float:
    if len(ious) == 0:
        return 0.0
    return float((ious[:, None] >= IOU_THRESHOLDS[None]).mean())

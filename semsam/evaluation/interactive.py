"""Interactive segmentation with simulated corrective clicks: NoC@85/90, NoF and mIoU per click.

The protocol of RITM (Sofiiuk et al. 2022), used by SimpleClick, SAM and their successors: the first click is the
object's interior-most pixel; each next click is the interior-most pixel of the error region that reaches deepest
(distance to its boundary), positive on a false negative, negative on a false positive, never on a pixel clicked
before (`semsam.clicks.corrective_click`). Pixels a benchmark ignores (GrabCut's uncertain boundary) are neither
errors nor counted in the IoU.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from tqdm import tqdm

from semsam.clicks import Click, corrective_click
from semsam.data.benchmarks import BenchmarkImage
from semsam.data.records import mask_boxes

NOC_THRESHOLDS = (0.85, 0.90)
MIOU_CLICKS = (1, 3, 5)


class InteractiveSegmenter(Protocol):
    """What the protocol needs: see `semsam.evaluation.segmenters` for a model and for OpenCV's GrabCut."""

    name: str

    def set_image(self, image: np.ndarray) -> None:
        """Prepares an image (HxWx3 uint8 RGB) for all its objects."""

    def start_object(self, box: Sequence[int]) -> None:
        """Forgets the previous object's clicks; `box` (x0, y0, x1, y1, exclusive) bounds the new object."""

    def add_click(self, click: Click) -> np.ndarray:
        """The [H, W] bool mask after this click and every earlier one on the current object."""


@dataclass(frozen=True)
class InteractiveResult:
    """Scores of one segmenter on one benchmark.

    `noc85` / `noc90`: mean number of clicks to reach 85% / 90% IoU, an object that never does counting
    `max_clicks`; `nof85` / `nof90`: objects that never do. `miou_per_click[k - 1]` is the mIoU after k clicks
    (`miou_at_*` repeat clicks 1, 3 and 5; None beyond `max_clicks`). `seconds_per_click` times `add_click`
    (decoder and upsampling for a model); `seconds_per_image` times `set_image` (the image encoder).
    `object_ious[i]` is object `object_ids[i]`'s IoU after each click. `fixed_positive` / `fixed_negative`: the
    share of corrective positive / negative clicks (click 2 onwards) whose own pixel the mask after that click gets
    right, i.e. whether a click fixes the error it points at; None when there was no such click.
    """

    name: str
    objects: int
    images: int
    max_clicks: int
    noc85: float
    noc90: float
    nof85: int
    nof90: int
    miou_at_1: float
    miou_at_3: float | None
    miou_at_5: float | None
    miou_per_click: list[float]
    fixed_positive: float | None
    fixed_negative: float | None
    seconds_per_click: float
    seconds_per_image: float
    object_ids: list[str]
    object_ious: list[list[float]]


def masked_iou(predicted: np.ndarray, target: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """IoU of two [H, W] bool masks over the pixels not ignored; 1 when both are empty there."""
    if ignore is not None:
        predicted, target = predicted & ~ignore, target & ~ignore
    union = np.count_nonzero(predicted | target)
    return np.count_nonzero(predicted & target) / union if union else 1.0


def number_of_clicks(ious: np.ndarray, threshold: float) -> np.ndarray:
    """Clicks each object needs to reach `threshold` IoU: for [N, K] IoUs after 1..K clicks, the first k with
    IoU >= threshold, or K when there is none."""
    reached = ious >= threshold
    return np.where(reached.any(1), reached.argmax(1) + 1, ious.shape[1])


def evaluate_interactive(
    segmenter: InteractiveSegmenter,
    images: Sequence[BenchmarkImage],
    *,
    max_clicks: int = 20,
    max_images: int | None = None,
    progress: bool = True,
) -> InteractiveResult:
    """Segments every object of every image with up to `max_clicks` simulated clicks.

    Each image is prepared once for all its objects. When no error pixel is left to click (none at all, or only
    pixels clicked before), the object's last IoU is carried to the remaining clicks. Objects with no pixel outside
    the ignored ones are skipped.

    Args:
        segmenter: the model under test (`ModelSegmenter`) or a baseline (`GrabCutSegmenter`).
        images: the benchmark, e.g. a `FolderBenchmark` or `RecordBenchmark`.
        max_clicks: clicks per object.
        max_images: evaluate only the first N images.
        progress: show a progress bar.

    Raises:
        ValueError: `max_clicks` is not positive, or the benchmark holds no object.
    """
    if max_clicks < 1:
        raise ValueError(f"max_clicks must be at least 1, got {max_clicks}")
    count = len(images) if max_images is None else min(max_images, len(images))
    ious: list[list[float]] = []
    object_ids: list[str] = []
    fixed: dict[bool, list[bool]] = {True: [], False: []}
    encoded, image_seconds, click_seconds, clicks = 0, 0.0, 0.0, 0
    bar = tqdm(range(count), desc=f"{segmenter.name}", unit="image", disable=not progress)
    for index in bar:
        sample = images[index]
        if len(sample.masks) == 0:
            continue
        start = time.perf_counter()
        segmenter.set_image(sample.image)
        image_seconds += time.perf_counter() - start
        encoded += 1
        boxes = mask_boxes(sample.masks)
        for m, target in enumerate(sample.masks):
            ignore = None if sample.ignore is None else sample.ignore[m]
            if not (target if ignore is None else target & ~ignore).any():
                continue
            segmenter.start_object(tuple(int(v) for v in boxes[m]))
            predicted, clicked = np.zeros_like(target), np.zeros_like(target)
            curve: list[float] = []
            while len(curve) < max_clicks:
                click = corrective_click(predicted, target, ignore=ignore, clicked=clicked)
                if click is None:
                    curve += [curve[-1]] * (max_clicks - len(curve))
                    break
                clicked[click.row, click.col] = True
                start = time.perf_counter()
                predicted = segmenter.add_click(click)
                click_seconds += time.perf_counter() - start
                clicks += 1
                if curve:
                    fixed[click.positive].append(bool(predicted[click.row, click.col] == target[click.row, click.col]))
                curve.append(masked_iou(predicted, target, ignore))
            ious.append(curve)
            object_ids.append(sample.image_id if len(sample.masks) == 1 else f"{sample.image_id}#{m}")
        bar.set_postfix(objects=len(ious))
    if not ious:
        raise ValueError("the benchmark holds no object to segment")
    return summarize(segmenter.name, np.array(ious), object_ids, images=encoded, fixed=fixed,
                     seconds_per_click=click_seconds / max(clicks, 1), seconds_per_image=image_seconds / encoded)


def summarize(
    name: str, ious: np.ndarray, object_ids: list[str], *, images: int, fixed: dict[bool, list[bool]],
    seconds_per_click: float, seconds_per_image: float,
) -> InteractiveResult:
    """The result of [N, K] IoUs after 1..K clicks of N objects; `fixed[positive]` says, per corrective click of
    that sign, whether the mask after it was right at its pixel."""
    max_clicks = ious.shape[1]
    noc = {t: number_of_clicks(ious, t) for t in NOC_THRESHOLDS}
    nof = {t: int((ious < t).all(1).sum()) for t in NOC_THRESHOLDS}
    miou = ious.mean(0)
    at = {k: float(miou[k - 1]) if k <= max_clicks else None for k in MIOU_CLICKS}
    return InteractiveResult(
        name=name, objects=len(ious), images=images, max_clicks=max_clicks,
        noc85=float(noc[0.85].mean()), noc90=float(noc[0.90].mean()), nof85=nof[0.85], nof90=nof[0.90],
        miou_at_1=at[1], miou_at_3=at[3], miou_at_5=at[5], miou_per_click=[float(v) for v in miou],
        fixed_positive=float(np.mean(fixed[True])) if fixed[True] else None,
        fixed_negative=float(np.mean(fixed[False])) if fixed[False] else None,
        seconds_per_click=seconds_per_click, seconds_per_image=seconds_per_image,
        object_ids=object_ids, object_ious=[[round(float(v), 6) for v in row] for row in ious],
    )

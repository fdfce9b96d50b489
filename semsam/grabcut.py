"""OpenCV's GrabCut (Rother et al. 2004) as an edge refinement of a model's masks; `import_cv2` also serves the
classical GrabCut baseline (`semsam.evaluation.segmenters`).

The refinement keeps the pixels the model is sure of and lets GrabCut re-decide the uncertain band by colour, with
the clicks as sure seeds: a low-resolution mask's boundary then follows the image's edges.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch

from semsam.data.records import mask_boxes

if TYPE_CHECKING:
    from semsam.prediction import Prediction
    from semsam.predictor import Predictor


def import_cv2() -> ModuleType:
    """OpenCV, or a ValueError saying how to install it."""
    try:
        import cv2
    except ImportError as error:
        raise ValueError("GrabCut needs OpenCV: pip install 'semsam[eval]' (or opencv-python-headless)") from error
    return cv2


@dataclass(frozen=True)
class GrabCutRefiner:
    """Re-cuts the uncertain band of a mask with GrabCut.

    Its cost grows with the area of the mask's box (plus context): about 0.1 s for a mask of a 512 x 512 photo on
    one CPU core, seconds for a whole multi-megapixel image; the web demo's request time limit bounds it there.

    Args:
        band: pixels whose logit lies within [-band, band] are re-decided; the others keep the model's answer.
        iterations: GrabCut iterations.
        seed_radius: radius in pixels of each click's disk of sure foreground (positive) or background (negative).
        context: the cut runs on the mask's box grown by this fraction of its longer side on every side.
        max_pixels: a larger window is cut at a reduced scale with this many pixels, which bounds time and memory
            (at full scale the six masks of a click on a 4096 x 4096 image took 539 s and 3.7 GiB); the default fits
            a whole 640 x 640 photo.
    """

    band: float = 4.0
    iterations: int = 3
    seed_radius: int = 5
    context: float = 0.3
    max_pixels: int = 640 * 640

    def __post_init__(self) -> None:
        if (not self.band >= 0 or self.iterations < 1 or self.seed_radius < 1 or not self.context >= 0
                or self.max_pixels < 1):
            raise ValueError(f"GrabCutRefiner needs band >= 0, iterations >= 1, seed_radius >= 1, context >= 0 and "
                             f"max_pixels >= 1, got {self.band}, {self.iterations}, {self.seed_radius}, {self.context}, "
                             f"{self.max_pixels}")

    def refine(
        self, image: np.ndarray, logits: np.ndarray, points: Sequence[Sequence[int]], labels: Sequence[int]
    ) -> np.ndarray:
        """The refined mask.

        Args:
            image: HxWx3 uint8 RGB.
            logits: [H, W] mask logits at the image's size (e.g. `Predictor.upsample_logits`).
            points: clicks as (x, y) pixels.
            labels: 1 for a positive click, 0 for a negative one.

        Returns:
            [H, W] bool. The model's mask (logits > 0) when it leaves GrabCut nothing to learn from: no uncertain
            pixel, or no sure or probable pixel of either kind.

        Raises:
            ValueError: shapes that do not match, or OpenCV missing.
        """
        cv2 = import_cv2()
        if image.ndim != 3 or image.shape[2] != 3 or logits.shape != image.shape[:2]:
            raise ValueError(f"image must be HxWx3 and logits HxW of the same size, got {image.shape} and {logits.shape}")
        if len(points) != len(labels):
            raise ValueError(f"one label per point: {len(points)} points, {len(labels)} labels")
        mask = logits > 0
        # The box from row and column profiles: np.nonzero would make two int64 arrays of the mask's size.
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if len(rows) == 0:
            return mask
        margin = int(self.context * max(rows[-1] - rows[0], cols[-1] - cols[0])) + self.seed_radius
        height, width = mask.shape
        y0, y1 = max(0, rows[0] - margin), min(height, rows[-1] + margin + 1)
        x0, x1 = max(0, cols[0] - margin), min(width, cols[-1] + margin + 1)
        scale = min(1.0, math.sqrt(self.max_pixels / ((y1 - y0) * (x1 - x0))))
        size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
        window_logits = logits[y0:y1, x0:x1]
        work_logits = window_logits if scale == 1 else cv2.resize(window_logits, size, interpolation=cv2.INTER_AREA)
        # Filled in place as uint8: a full-size int64 array per mask would cost 8 bytes a pixel.
        cut = np.where(work_logits > 0, np.uint8(cv2.GC_PR_FGD), np.uint8(cv2.GC_PR_BGD))
        cut[work_logits > self.band] = cv2.GC_FGD
        cut[work_logits < -self.band] = cv2.GC_BGD
        for (x, y), label in zip(points, labels):
            cv2.circle(cut, (round((x - x0) * scale), round((y - y0) * scale)), max(1, round(self.seed_radius * scale)),
                       int(cv2.GC_FGD if label else cv2.GC_BGD), thickness=-1)
        foreground = np.isin(cut, (cv2.GC_FGD, cv2.GC_PR_FGD))
        if not np.isin(cut, (cv2.GC_PR_FGD, cv2.GC_PR_BGD)).any() or foreground.all() or not foreground.any():
            return mask
        crop = image[y0:y1, x0:x1]
        work_image = crop if scale == 1 else cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        bgr = np.ascontiguousarray(work_image[..., ::-1])
        models = (np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64))
        # GrabCut seeds its colour models by k-means from OpenCV's per-thread random state: fixed here, so that one
        # input always gives one mask (unseeded, a rerun on a COCO photo moved up to 2931 pixels).
        cv2.setRNGSeed(0)
        cv2.grabCut(bgr, cut, None, *models, self.iterations, cv2.GC_INIT_WITH_MASK)
        decided = np.isin(cut, (cv2.GC_FGD, cv2.GC_PR_FGD))
        # `mask` is this call's own array, so the window is written into it rather than into a full-size copy.
        if scale == 1:
            mask[y0:y1, x0:x1] = decided
            return mask
        # At a reduced scale GrabCut decides only the uncertain band; sure pixels and click disks keep full resolution.
        upsampled = cv2.resize(decided.view(np.uint8), (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        window = np.where(np.abs(window_logits) <= self.band, upsampled.view(bool), mask[y0:y1, x0:x1])
        for (x, y), label in zip(points, labels):
            cv2.circle(window.view(np.uint8), (int(x) - x0, int(y) - y0), self.seed_radius, int(bool(label)),
                       thickness=-1)
        mask[y0:y1, x0:x1] = window
        return mask

    def refine_prediction(
        self, predictor: Predictor, image: np.ndarray, prediction: Prediction, points: Sequence[Sequence[int]],
        labels: Sequence[int],
    ) -> Prediction:
        """`prediction` (from `predictor` on `image`) with every mask refined and its box re-measured.

        The logits are upsampled a few masks at a time (`Predictor.upsampled_chunks`), so memory stays bounded.
        """
        masks = np.stack([self.refine(image, level_logits, points, labels)
                          for chunk in predictor.upsampled_chunks(torch.from_numpy(prediction.logits))
                          for level_logits in chunk.cpu().numpy()])
        return replace(prediction, masks=masks, boxes=mask_boxes(masks).astype(np.float32))

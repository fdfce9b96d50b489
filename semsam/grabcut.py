"""OpenCV's GrabCut (Rother et al. 2004) as an edge refinement of a model's masks; `import_cv2` also serves the
classical GrabCut baseline (`semsam.evaluation.segmenters`).

The refinement keeps the pixels the model is sure of and lets GrabCut re-decide the uncertain band by colour, with
the clicks as sure seeds: a low-resolution mask's boundary then follows the image's edges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch

from semsam.data.records import mask_boxes

if TYPE_CHECKING:
    from semsam.predictor import Prediction, Predictor


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
    """

    band: float = 4.0
    iterations: int = 3
    seed_radius: int = 5
    context: float = 0.3

    def __post_init__(self) -> None:
        if not self.band >= 0 or self.iterations < 1 or self.seed_radius < 1 or not self.context >= 0:
            raise ValueError(f"GrabCutRefiner needs band >= 0, iterations >= 1, seed_radius >= 1 and context >= 0, "
                             f"got {self.band}, {self.iterations}, {self.seed_radius}, {self.context}")

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
        # Filled in place as uint8: a full-size int64 array per mask would cost 8 bytes a pixel.
        cut = np.where(mask, np.uint8(cv2.GC_PR_FGD), np.uint8(cv2.GC_PR_BGD))
        cut[logits > self.band] = cv2.GC_FGD
        cut[logits < -self.band] = cv2.GC_BGD
        for (x, y), label in zip(points, labels):
            cv2.circle(cut, (int(x), int(y)), self.seed_radius, int(cv2.GC_FGD if label else cv2.GC_BGD), thickness=-1)
        rows, cols = np.nonzero(mask)
        if len(rows) == 0:
            return mask
        margin = int(self.context * max(np.ptp(rows), np.ptp(cols))) + self.seed_radius
        height, width = mask.shape
        y0, y1 = max(0, rows.min() - margin), min(height, rows.max() + margin + 1)
        x0, x1 = max(0, cols.min() - margin), min(width, cols.max() + margin + 1)
        window = np.ascontiguousarray(cut[y0:y1, x0:x1])
        foreground = np.isin(window, (cv2.GC_FGD, cv2.GC_PR_FGD))
        uncertain = np.isin(window, (cv2.GC_PR_FGD, cv2.GC_PR_BGD))
        if not uncertain.any() or foreground.all() or not foreground.any():
            return mask
        bgr = np.ascontiguousarray(image[y0:y1, x0:x1, ::-1])
        models = (np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64))
        cv2.grabCut(bgr, window, None, *models, self.iterations, cv2.GC_INIT_WITH_MASK)
        refined = mask.copy()
        refined[y0:y1, x0:x1] = np.isin(window, (cv2.GC_FGD, cv2.GC_PR_FGD))
        return refined

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

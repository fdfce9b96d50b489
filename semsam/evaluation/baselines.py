"""Classical 1-click baselines that answer like a `Predictor`: the gPb-owt-ucm hierarchy and concentric squares."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from semsam.data.bsds500 import read_mat_variable
from semsam.prediction import Prediction

UCM_THRESHOLDS = (0.03, 0.08, 0.15, 0.25, 0.4, 0.6)
SQUARE_FRACTIONS = (0.04, 0.08, 0.16, 0.3, 0.5, 0.8)


def _image_key(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def _answer(masks: np.ndarray, scores: np.ndarray) -> Prediction:
    return Prediction(masks=masks, scores=scores.astype(np.float32), logits=masks.astype(np.float32),
                      boxes=np.zeros((len(masks), 4), np.float32), labels=None)


class UcmBaseline:
    """Regions of an ultrametric contour map (BSDS500's `ucm2`) at fixed thresholds, finest first.

    The click's region at each threshold is one mask; the middle threshold scores highest, so `miou_top1`
    measures that level, as in the issue's reference figures.

    Args:
        images: the images to be evaluated, each with the path of its `ucm2` .mat file (double resolution).
        thresholds: contour strengths below which regions merge.
    """

    def __init__(
        self, *, images: Sequence[tuple[np.ndarray, Path]], thresholds: Sequence[float] = UCM_THRESHOLDS
    ) -> None:
        self.paths = {_image_key(image): Path(path) for image, path in images}
        self.thresholds = tuple(thresholds)
        self.scores = np.zeros(len(self.thresholds))
        self.scores[(len(self.thresholds) - 1) // 2] = 1.0
        self._regions: np.ndarray | None = None

    def set_image(self, image: np.ndarray) -> None:
        """Labels the regions of the image's hierarchy at every threshold."""
        key = _image_key(image)
        if key not in self.paths:
            raise ValueError("this image has no ucm2 file among those the baseline was given")
        ucm = read_ucm2(self.paths[key])
        if ucm.shape != (2 * image.shape[0] + 1, 2 * image.shape[1] + 1):
            raise ValueError(f"{self.paths[key]}: ucm2 is {ucm.shape}, expected twice the image size plus one")
        # Pixels sit at odd coordinates of the doubled grid; boundaries live between them.
        self._regions = np.stack([ndimage.label(ucm <= t)[0][1::2, 1::2] for t in self.thresholds])

    def predict(self, points: Sequence[Sequence[float]], labels: Sequence[int] | None = None) -> Prediction:
        """One mask per threshold: the region holding the first click."""
        x, y = (int(v) for v in points[0])
        ids = self._regions[:, y, x]
        return _answer(self._regions == ids[:, None, None], self.scores)


class ConcentricSquares:
    """The null model: six squares centred on the click, sides a fixed fraction of the image's mean side."""

    def __init__(self, *, fractions: Sequence[float] = SQUARE_FRACTIONS) -> None:
        self.fractions = tuple(fractions)
        self._size: tuple[int, int] | None = None

    def set_image(self, image: np.ndarray) -> None:
        self._size = image.shape[:2]

    def predict(self, points: Sequence[Sequence[float]], labels: Sequence[int] | None = None) -> Prediction:
        """Squares of every size around the first click, clipped to the image; the middle one scores highest."""
        height, width = self._size
        x, y = (int(v) for v in points[0])
        rows, cols = np.arange(height)[:, None], np.arange(width)[None]
        masks = []
        for fraction in self.fractions:
            half = fraction * (height + width) / 4
            masks.append((np.abs(rows - y) <= half) & (np.abs(cols - x) <= half))
        scores = np.zeros(len(masks))
        scores[(len(masks) - 1) // 2] = 1.0
        return _answer(np.stack(masks), scores)


def read_ucm2(path: Path) -> np.ndarray:
    """The `ucm2` array of a BSDS500 hierarchy file."""
    return np.asarray(read_mat_variable(path, "ucm2", "BSDS500 gPb-owt-ucm"), dtype=np.float64)

"""What a `Predictor` is asked and answers: prompts, and masks with their scores and labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Prompt:
    """One independent prompt in pixel coordinates of the original image.

    Args:
        points: clicks as (x, y) pixel positions.
        labels: 1 for a positive click, 0 for a negative one; all positive when omitted.
        box: (x0, y0, x1, y1).
        mask_input: low-resolution logits from an earlier `Prediction.logits[i]`, shape [h, w] or [1, h, w].
    """

    points: Sequence[Sequence[float]] | np.ndarray | None = None
    labels: Sequence[int] | np.ndarray | None = None
    box: Sequence[float] | np.ndarray | None = None
    mask_input: np.ndarray | None = None


@dataclass(frozen=True)
class MaskLabel:
    """Best object and part name for one mask, with their softmax probabilities."""

    object: str
    object_score: float
    part: str
    part_score: float


@dataclass
class Prediction:
    """K masks for one prompt, ordered finest -> coarsest by area."""

    masks: np.ndarray  # bool [K, H, W]
    scores: np.ndarray  # float32 [K], predicted IoU (the rank head's, where the model has one)
    logits: np.ndarray  # float32 [K, h, w], accepted back as a mask input
    boxes: np.ndarray  # float32 [K, 4], x0, y0, x1, y1 of each mask in pixels
    labels: list[MaskLabel] | None  # None when the model's classification heads were never trained
    # Object [K, objects] and part [K, parts] probabilities over `Predictor.vocabulary`; None without trained heads.
    label_probabilities: tuple[np.ndarray, np.ndarray] | None = None


@dataclass
class LowResPrediction:
    """K masks per prompt before upsampling, in the model's token order (not sorted by area).

    Map `logits` to original pixels with `Predictor.upsample_logits`.
    """

    logits: torch.Tensor  # float [N, K, h, w], low-resolution logits over the padded model input
    scores: torch.Tensor  # float [N, K], predicted IoU that ranks a prompt's masks, as `Prediction.scores`
    proposal_scores: torch.Tensor  # float [N, K], the trained IoU head's, which gates segment-everything proposals
    labels: list[list[MaskLabel]] | None  # N lists of K labels; None when the heads were never trained
    # Object [N, K, objects] and part [N, K, parts] probabilities; None when the heads were never trained.
    label_probabilities: tuple[torch.Tensor, torch.Tensor] | None
    valid_size: tuple[int, int]  # (h, w) of the top-left part of `logits` that covers the image; the rest is padding

"""Sampling mask logits at continuous points, and picking the points where a mask is least certain."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sample_logits(logits: Tensor, points: Tensor) -> Tensor:
    """Bilinearly samples maps at normalised points.

    Args:
        logits: [Q, C, h, w] maps covering the padded input.
        points: [Q, P, 2] (x, y) in [0, 1] of the padded input.

    Returns:
        [Q, C, P].
    """
    grid = points[:, None].to(logits.dtype) * 2 - 1
    return F.grid_sample(logits, grid, mode="bilinear", padding_mode="border", align_corners=False)[:, :, 0]


def uncertain_points(
    logits: Tensor, *, num_points: int, oversample_ratio: float, importance_sample_ratio: float
) -> Tensor:
    """PointRend-style training points: the most uncertain of an oversampled random set, plus uniform ones.

    Args:
        logits: [Q, h, w] mask logits; uncertainty is -|logit|.
        num_points: points per mask.
        oversample_ratio: random candidates per point (>= 1).
        importance_sample_ratio: share of points taken from the most uncertain candidates.

    Returns:
        [Q, num_points, 2] (x, y) in [0, 1].
    """
    count = logits.shape[0]
    num_candidates = max(int(num_points * oversample_ratio), num_points)
    num_uncertain = min(int(num_points * importance_sample_ratio), num_points)
    with torch.no_grad():
        candidates = torch.rand(count, num_candidates, 2, device=logits.device)
        uncertainty = -sample_logits(logits[:, None].detach(), candidates)[:, 0].abs()
        picked = uncertainty.topk(num_uncertain, dim=1, sorted=False).indices
        uncertain = torch.gather(candidates, 1, picked[..., None].expand(-1, -1, 2))
        uniform = torch.rand(count, num_points - num_uncertain, 2, device=logits.device)
    return torch.cat([uncertain, uniform], dim=1)

"""Box conversions and the generalized IoU, for boxes as [..., 4] tensors."""

from __future__ import annotations

import torch
from torch import Tensor


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(cx, cy, w, h) -> (x0, y0, x1, y1)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(x0, y0, x1, y1) -> (cx, cy, w, h)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def generalized_iou(boxes_a: Tensor, boxes_b: Tensor, *, eps: float = 1e-7) -> Tensor:
    """Generalized IoU of broadcastable (x0, y0, x1, y1) boxes; pairwise with a[..., :, None, :], b[..., None, :, :].

    Args:
        boxes_a, boxes_b: [..., 4] xyxy boxes, broadcastable against each other.
        eps: keeps degenerate (zero-area) boxes finite.

    Returns:
        [...] generalized IoU in [-1, 1].
    """
    area_a = (boxes_a[..., 2] - boxes_a[..., 0]).clamp(min=0) * (boxes_a[..., 3] - boxes_a[..., 1]).clamp(min=0)
    area_b = (boxes_b[..., 2] - boxes_b[..., 0]).clamp(min=0) * (boxes_b[..., 3] - boxes_b[..., 1]).clamp(min=0)
    inner = (torch.minimum(boxes_a[..., 2:], boxes_b[..., 2:]) - torch.maximum(boxes_a[..., :2], boxes_b[..., :2]))
    intersection = inner.clamp(min=0).prod(-1)
    union = area_a + area_b - intersection
    outer = (torch.maximum(boxes_a[..., 2:], boxes_b[..., 2:]) - torch.minimum(boxes_a[..., :2], boxes_b[..., :2]))
    enclosing = outer.clamp(min=0).prod(-1)
    return intersection / (union + eps) - (enclosing - union) / (enclosing + eps)

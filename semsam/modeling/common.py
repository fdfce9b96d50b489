"""Small building blocks shared by the model's modules."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MLP(nn.Module):
    """A plain MLP with ReLU between layers (module names `layers.{i}` as in the official release)."""

    def __init__(self, *, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(d_in, d_out) for d_in, d_out in zip(dims, dims[1:] + [output_dim]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class Conv2dNorm(nn.Conv2d):
    """A convolution followed by a normalisation (and optional ReLU), keyed `weight` and `norm.*`."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int, num_groups: int, relu: bool) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = nn.GroupNorm(num_groups, out_channels)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(super().forward(x))
        return F.relu(x) if self.relu else x


def sine_position_encoding(mask_shape: tuple[int, int, int], num_feats: int, device: torch.device) -> Tensor:
    """Normalised 2-D sine position encoding (DETR style) for a [B, H, W] grid.

    Returns:
        [B, 2 * num_feats, H, W] with y features first, then x.
    """
    batch, height, width = mask_shape
    eps, scale = 1e-6, 2 * math.pi
    y = torch.arange(1, height + 1, dtype=torch.float32, device=device)[:, None].expand(height, width)
    x = torch.arange(1, width + 1, dtype=torch.float32, device=device)[None, :].expand(height, width)
    y = y / (height + eps) * scale
    x = x / (width + eps) * scale
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    dim_t = 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    pos_x = _interleave_sin_cos(x[..., None] / dim_t)
    pos_y = _interleave_sin_cos(y[..., None] / dim_t)
    pos = torch.cat((pos_y, pos_x), dim=-1).permute(2, 0, 1)
    return pos[None].expand(batch, -1, -1, -1)


def box_sine_embedding(boxes: Tensor, num_feats: int) -> Tensor:
    """Sine embedding of (cx, cy, w, h) boxes in [0, 1] for the positional query.

    Returns:
        [..., 4 * num_feats] ordered y, x, w, h as in DINO.
    """
    scale = 2 * math.pi
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=boxes.device)
    dim_t = 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    embedded = _interleave_sin_cos(boxes[..., None] * scale / dim_t)  # [..., 4, num_feats]
    return torch.cat([embedded[..., 1, :], embedded[..., 0, :], embedded[..., 2:, :].flatten(-2)], dim=-1)


def _interleave_sin_cos(x: Tensor) -> Tensor:
    return torch.stack((x[..., 0::2].sin(), x[..., 1::2].cos()), dim=-1).flatten(-2)


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def mask_logits_to_boxes(logits: Tensor) -> Tensor:
    """Bounding boxes of `logits > 0` as (cx, cy, w, h) in [0, 1]; an empty mask gives the whole image.

    Args:
        logits: [..., H, W].

    Returns:
        [..., 4].
    """
    height, width = logits.shape[-2:]
    inside = logits > 0
    ys = (torch.arange(height, device=logits.device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=logits.device, dtype=torch.float32) + 0.5) / width
    rows, cols = inside.any(-1), inside.any(-2)
    x0 = torch.where(cols, xs, 2.0).amin(-1)
    x1 = torch.where(cols, xs, -2.0).amax(-1)
    y0 = torch.where(rows, ys, 2.0).amin(-1)
    y1 = torch.where(rows, ys, -2.0).amax(-1)
    boxes = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0 + 1 / width, y1 - y0 + 1 / height], -1)
    whole = torch.tensor([0.5, 0.5, 1.0, 1.0], device=logits.device)
    empty = ~inside.flatten(-2).any(-1)
    return torch.where(empty[..., None], whole, boxes).clamp(0, 1)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a [B, C, H, W] map (keys `weight`, `bias` as in Segment Anything)."""

    def __init__(self, num_channels: int, *, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)

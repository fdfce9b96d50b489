"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch: runs on CPU, no custom CUDA op."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def ms_deform_attn_sample(
    value: Tensor, spatial_shapes: list[tuple[int, int]], sampling_locations: Tensor, attention_weights: Tensor
) -> Tensor:
    """Bilinearly samples every level at the given locations and sums them with the attention weights.

    Args:
        value: [B, S, heads, head_dim], the levels flattened one after another.
        spatial_shapes: (H, W) of each level, in the order they are flattened.
        sampling_locations: [B, Q, heads, levels, points, 2] as (x, y) in [0, 1].
        attention_weights: [B, Q, heads, levels, points], softmax-normalised over levels and points.

    Returns:
        [B, Q, heads * head_dim].
    """
    batch, _, heads, head_dim = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    grids = 2 * sampling_locations - 1
    sampled = []
    start = 0
    for level, (height, width) in enumerate(spatial_shapes):
        level_value = value[:, start : start + height * width]
        start += height * width
        level_value = level_value.permute(0, 2, 3, 1).reshape(batch * heads, head_dim, height, width)
        level_grid = grids[:, :, :, level].transpose(1, 2).reshape(batch * heads, queries, points, 2)
        sampled.append(F.grid_sample(level_value, level_grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    stacked = torch.stack(sampled, dim=-2).flatten(-2)
    weights = attention_weights.transpose(1, 2).reshape(batch * heads, 1, queries, levels * points)
    output = (stacked * weights).sum(-1).view(batch, heads * head_dim, queries)
    return output.transpose(1, 2)


class MSDeformAttn(nn.Module):
    """Deformable attention over several feature levels (keys as in Deformable DETR / MaskDINO)."""

    def __init__(self, *, d_model: int, num_levels: int, num_heads: int, num_points: int) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} must be divisible by num_heads {num_heads}")
        self.num_levels, self.num_heads, self.num_points = num_levels, num_heads, num_points
        self.sampling_offsets = nn.Linear(d_model, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(d_model, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.num_heads, dtype=torch.float32) * (2 * math.pi / self.num_heads)
        grid = torch.stack([angles.cos(), angles.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.num_heads, 1, 1, 2).repeat(1, self.num_levels, self.num_points, 1)
        grid = grid * torch.arange(1, self.num_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(
        self,
        query: Tensor,
        reference_points: Tensor,
        value: Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> Tensor:
        """Attends from each query to a few learned points around its reference point or box.

        Args:
            query: [B, Q, C].
            reference_points: [B, Q, levels, 2] as (x, y), or [B, Q, levels, 4] as (cx, cy, w, h), in [0, 1].
            value: [B, S, C], all levels flattened, already through `value_proj` (features attended to by many
                queries, as an image by many prompts, are then projected only once).
            spatial_shapes: (H, W) per level.

        Returns:
            [B, Q, C].
        """
        batch, queries, _ = query.shape
        value = value.view(batch, value.shape[1], self.num_heads, -1)
        shape = (batch, queries, self.num_heads, self.num_levels, self.num_points)
        offsets = self.sampling_offsets(query).view(*shape, 2)
        weights = self.attention_weights(query).view(batch, queries, self.num_heads, -1).softmax(-1).view(*shape)
        if reference_points.shape[-1] == 2:
            normaliser = torch.tensor([(w, h) for h, w in spatial_shapes], dtype=query.dtype, device=query.device)
            locations = reference_points[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
        else:
            centre = reference_points[:, :, None, :, None, :2]
            size = reference_points[:, :, None, :, None, 2:]
            locations = centre + offsets / self.num_points * size * 0.5
        return self.output_proj(ms_deform_attn_sample(value, spatial_shapes, locations, weights))

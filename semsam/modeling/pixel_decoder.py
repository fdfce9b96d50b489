"""Multi-scale deformable-attention pixel decoder (the MaskDINO encoder) in pure PyTorch."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semsam.config import PixelDecoderConfig
from semsam.modeling.common import Conv2dNorm, sine_position_encoding
from semsam.modeling.ms_deform_attn import MSDeformAttn

NUM_LEVELS = 4


@dataclass
class PixelFeatures:
    """What the prompt decoder reads: per-pixel mask features and the multi-scale memory."""

    mask_features: Tensor  # [B, mask_dim, H/4, W/4]
    memory: Tensor  # [B, S, C], levels flattened coarsest first (s64, s32, s16, s8)
    spatial_shapes: list[tuple[int, int]]  # (H, W) of each level in `memory`, same order
    # Each prompt-decoder layer's value projection of `memory`, set by `SemanticSam.encode_image`.
    memory_values: list[Tensor] = field(default_factory=list)
    # The click refiner's per-pixel embeddings, set by `SemanticSam.encode_image` for a model with a refiner.
    click_embeddings: Tensor | None = None


class DeformableEncoderLayer(nn.Module):
    """Post-norm deformable self-attention followed by an FFN."""

    def __init__(self, *, d_model: int, ffn_dim: int, num_heads: int, num_points: int) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d_model=d_model, num_levels=NUM_LEVELS, num_heads=num_heads, num_points=num_points)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: Tensor, pos: Tensor, reference_points: Tensor, spatial_shapes: list[tuple[int, int]]) -> Tensor:
        src = self.norm1(src + self.self_attn(src + pos, reference_points, self.self_attn.value_proj(src),
                                              spatial_shapes))
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class DeformableEncoder(nn.Module):
    def __init__(self, *, config: PixelDecoderConfig) -> None:
        super().__init__()
        self.level_embed = nn.Parameter(torch.empty(NUM_LEVELS, config.conv_dim))
        nn.init.normal_(self.level_embed)
        # A bare container so that the weights are keyed `transformer.encoder.layers.{i}` as in the official files.
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(
            DeformableEncoderLayer(d_model=config.conv_dim, ffn_dim=config.ffn_dim, num_heads=config.num_heads,
                                   num_points=config.num_points)
            for _ in range(config.num_layers)
        )

    def forward(self, sources: list[Tensor]) -> list[Tensor]:
        """Refines the levels jointly; returns them with their input shapes."""
        shapes = [(s.shape[2], s.shape[3]) for s in sources]
        batch, channels = sources[0].shape[:2]
        flat, pos = [], []
        for level, source in enumerate(sources):
            flat.append(source.flatten(2).transpose(1, 2))
            level_pos = sine_position_encoding((batch, *shapes[level]), channels // 2, source.device)
            pos.append(level_pos.flatten(2).transpose(1, 2) + self.level_embed[level])
        src, pos_all = torch.cat(flat, 1), torch.cat(pos, 1)
        reference = _encoder_reference_points(shapes, src.device).expand(batch, -1, len(shapes), -1)
        for layer in self.encoder.layers:
            src = layer(src, pos_all, reference, shapes)
        return [chunk.transpose(1, 2).reshape(batch, channels, h, w)
                for chunk, (h, w) in zip(src.split([h * w for h, w in shapes], dim=1), shapes)]


def _encoder_reference_points(shapes: list[tuple[int, int]], device: torch.device) -> Tensor:
    points = []
    for height, width in shapes:
        ys, xs = torch.meshgrid(
            (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height,
            (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width,
            indexing="ij",
        )
        points.append(torch.stack((xs.reshape(-1), ys.reshape(-1)), -1))
    return torch.cat(points, 0)[None, :, None, :]


class PixelDecoder(nn.Module):
    """res2..res5 -> 4-level deformable encoder (strides 8..64) -> FPN step -> stride-4 mask features."""

    def __init__(self, *, config: PixelDecoderConfig, in_channels: list[int]) -> None:
        super().__init__()
        dim, groups = config.conv_dim, config.num_groups
        res2_ch, res3_ch, res4_ch, res5_ch = in_channels
        # Ordered res3, res4, res5, then the extra stride-64 level on res5, as the official files key them.
        self.input_proj = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(ch, dim, kernel_size=1), nn.GroupNorm(groups, dim)) for ch in (res3_ch, res4_ch, res5_ch)]
            + [nn.Sequential(nn.Conv2d(res5_ch, dim, kernel_size=3, stride=2, padding=1), nn.GroupNorm(groups, dim))]
        )
        self.transformer = DeformableEncoder(config=config)
        self.adapter_1 = Conv2dNorm(res2_ch, dim, kernel_size=1, num_groups=groups, relu=False)
        self.layer_1 = Conv2dNorm(dim, dim, kernel_size=3, num_groups=groups, relu=True)
        self.mask_features = nn.Conv2d(dim, config.mask_dim, kernel_size=1)

    def forward(self, features: dict[str, Tensor]) -> PixelFeatures:
        res5 = features["res5"].float()
        sources = [proj(features[name].float()) for proj, name in zip(self.input_proj[:3], ("res3", "res4", "res5"))]
        sources.append(self.input_proj[3](res5))
        levels = self.transformer(sources)
        stride8 = levels[0]
        fused = self.adapter_1(features["res2"].float())
        fused = fused + F.interpolate(stride8, size=fused.shape[-2:], mode="bilinear", align_corners=False)
        mask_features = self.mask_features(self.layer_1(fused))
        decoder_levels = levels[::-1]
        memory = torch.cat([level.flatten(2).transpose(1, 2) for level in decoder_levels], 1)
        shapes = [(level.shape[2], level.shape[3]) for level in decoder_levels]
        return PixelFeatures(mask_features=mask_features, memory=memory, spatial_shapes=shapes)

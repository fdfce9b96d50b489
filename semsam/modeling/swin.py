"""Swin Transformer backbone with the module layout of Mask2Former's D2SwinTransformer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semsam.config import SwinConfig


class SwinMlp(nn.Module):
    def __init__(self, *, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside a window, with a learned relative position bias."""

    def __init__(self, *, dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
        coords = coords.flatten(1)
        relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)
        index = relative[..., 0] * (2 * window_size - 1) + relative[..., 1]
        self.register_buffer("relative_position_index", index)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """x: [windows, N, C]; mask: [windows_per_image, N, N] additive, or None."""
        windows, tokens, channels = x.shape
        qkv = self.qkv(x).view(windows, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(tokens, tokens, -1).permute(2, 0, 1)[None]
        if mask is not None:
            per_image = mask.shape[0]
            bias = (bias.view(1, 1, self.num_heads, tokens, tokens) + mask.view(1, per_image, 1, tokens, tokens))
            bias = bias.expand(windows // per_image, -1, -1, -1, -1).reshape(windows, self.num_heads, tokens, tokens)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=bias.to(x.dtype))
        return self.proj(out.transpose(1, 2).reshape(windows, tokens, channels))


class SwinBlock(nn.Module):
    def __init__(self, *, dim: int, num_heads: int, window_size: int, shift: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window_size, self.shift = window_size, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim=dim, num_heads=num_heads, window_size=window_size)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = SwinMlp(dim=dim, hidden_dim=int(dim * mlp_ratio))

    def forward(self, x: Tensor, height: int, width: int, shift_mask: Tensor | None) -> Tensor:
        batch, _, channels = x.shape
        w = self.window_size
        y = self.norm1(x).view(batch, height, width, channels)
        pad_h, pad_w = (-height) % w, (-width) % w
        y = F.pad(y, (0, 0, 0, pad_w, 0, pad_h))
        padded_h, padded_w = height + pad_h, width + pad_w
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = y.view(batch, padded_h // w, w, padded_w // w, w, channels).transpose(2, 3).reshape(-1, w * w, channels)
        windows = self.attn(windows, shift_mask if self.shift else None)
        y = windows.view(batch, padded_h // w, padded_w // w, w, w, channels).transpose(2, 3)
        y = y.reshape(batch, padded_h, padded_w, channels)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y[:, :height, :width].reshape(batch, height * width, channels)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """Halves the resolution and doubles the channels by concatenating 2x2 neighbours."""

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        batch, _, channels = x.shape
        x = x.view(batch, height, width, channels)
        x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(batch, -1, 4 * channels)))


class SwinStage(nn.Module):
    def __init__(self, *, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float, downsample: bool) -> None:
        super().__init__()
        self.window_size = window_size
        self.blocks = nn.ModuleList(
            SwinBlock(dim=dim, num_heads=num_heads, window_size=window_size, shift=(window_size // 2) * (i % 2),
                      mlp_ratio=mlp_ratio)
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim=dim) if downsample else None

    def shift_mask(self, height: int, width: int, device: torch.device) -> Tensor:
        """Additive mask that keeps shifted windows from mixing regions that are not adjacent in the image."""
        w, s = self.window_size, self.window_size // 2
        padded_h, padded_w = height + (-height) % w, width + (-width) % w
        regions = torch.zeros(padded_h, padded_w, device=device)
        label = 0
        for hs in (slice(0, -w), slice(-w, -s), slice(-s, None)):
            for ws in (slice(0, -w), slice(-w, -s), slice(-s, None)):
                regions[hs, ws] = label
                label += 1
        windows = regions.view(padded_h // w, w, padded_w // w, w).transpose(1, 2).reshape(-1, w * w)
        differs = windows[:, None, :] != windows[:, :, None]
        return torch.zeros(differs.shape, device=device).masked_fill(differs, -100.0)

    def forward(self, x: Tensor, height: int, width: int) -> tuple[Tensor, Tensor, int, int]:
        """Returns the stage output, the downsampled input of the next stage and its size."""
        mask = self.shift_mask(height, width, x.device) if len(self.blocks) > 1 else None
        for block in self.blocks:
            x = block(x, height, width, mask)
        if self.downsample is None:
            return x, x, height, width
        return x, self.downsample(x, height, width), (height + 1) // 2, (width + 1) // 2


class PatchEmbed(nn.Module):
    def __init__(self, *, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        p = self.patch_size
        x = F.pad(x, (0, (-x.shape[3]) % p, 0, (-x.shape[2]) % p))
        x = self.proj(x)
        batch, channels, height, width = x.shape
        x = self.norm(x.flatten(2).transpose(1, 2))
        return x.transpose(1, 2).reshape(batch, channels, height, width)


class SwinBackbone(nn.Module):
    """Hierarchical Swin Transformer returning res2..res5 feature maps (strides 4, 8, 16, 32)."""

    def __init__(self, *, config: SwinConfig) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(patch_size=config.patch_size, embed_dim=config.embed_dim)
        self.num_features = [config.embed_dim * 2**i for i in range(len(config.depths))]
        self.layers = nn.ModuleList(
            SwinStage(dim=dim, depth=depth, num_heads=heads, window_size=config.window_size,
                      mlp_ratio=config.mlp_ratio, downsample=i < len(config.depths) - 1)
            for i, (dim, depth, heads) in enumerate(zip(self.num_features, config.depths, config.num_heads))
        )
        for i, dim in enumerate(self.num_features):
            self.add_module(f"norm{i}", nn.LayerNorm(dim))

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """images: [B, 3, H, W] normalised. Returns {"res2": ..., "res5": ...} as [B, C, h, w]."""
        x = self.patch_embed(images)
        batch, _, height, width = x.shape
        x = x.flatten(2).transpose(1, 2)
        outputs = {}
        for i, stage in enumerate(self.layers):
            out, x, next_h, next_w = stage(x, height, width)
            out = getattr(self, f"norm{i}")(out)
            outputs[f"res{i + 2}"] = out.view(batch, height, width, -1).permute(0, 3, 1, 2).contiguous()
            height, width = next_h, next_w
        return outputs

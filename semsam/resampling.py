"""SAM's map from low-resolution mask logits to original pixels, as per-axis matrices (`Predictor.upsample_logits`)."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

# Original-image pixels per tile of the upsampling map.
UPSAMPLING_TILE = 64


@functools.lru_cache(maxsize=32)
def upsampling_map(low: int, valid: int, size: int) -> tuple[tuple[int, torch.Tensor], ...]:
    """SAM's 1-D map from `low` logits to `size` pixels: bilinear to 4 * low, keep the first `valid`, bilinear to
    `size`. Each pixel depends on a few neighbouring logits, so the map is cut into tiles of consecutive pixels,
    each stored with the first logit it uses and its weights [tile pixels, logits used]."""
    impulses = torch.eye(low, dtype=torch.float64).view(low, 1, low, 1)
    padded = F.interpolate(impulses, size=(4 * low, 1), mode="bilinear", align_corners=False)
    weights = F.interpolate(padded[:, :, :valid], size=(size, 1), mode="bilinear", align_corners=False)
    weights = weights.view(low, size).t()
    tiles = []
    for first in range(0, size, UPSAMPLING_TILE):
        used = torch.nonzero(weights[first : first + UPSAMPLING_TILE].abs().sum(0))[:, 0]
        start, stop = int(used[0]), int(used[-1]) + 1
        tiles.append((start, weights[first : first + UPSAMPLING_TILE, start:stop].float()))
    return tuple(tiles)

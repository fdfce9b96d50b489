"""Corrects mask logits where a prompt's clicks say they are wrong, from maps of the clicks (as RITM does).

A mask that is the dot product of one query with image-only features cannot carve out the region a negative
click names when that region looks like the object. The refiner sees, per click, where the click is and which
pixels look like the clicked one (cosine similarity of learned projections of the mask features), and a small
convolutional net turns that into a correction of each output's logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def click_maps(points: Tensor, labels: Tensor, size: tuple[int, int], *, radius: float) -> tuple[Tensor, Tensor]:
    """Gaussian maps of the positive and of the negative clicks of every prompt.

    Args:
        points: [B, N, P, 2] (x, y) in [0, 1] of the padded input; P >= 1.
        labels: [B, N, P] long: 1 positive, 0 negative, -1 padding.
        size: (h, w) of the maps.
        radius: the Gaussians' standard deviation in map pixels.

    Returns:
        Positive and negative maps, each [B, N, h, w] in [0, 1]: 1 at a click, the maximum over clicks.
    """
    height, width = size
    ys = (torch.arange(height, device=points.device, dtype=points.dtype) + 0.5) / height
    xs = (torch.arange(width, device=points.device, dtype=points.dtype) + 0.5) / width
    dy = (ys[:, None] - points[..., 1, None, None]) * height
    dx = (xs[None, :] - points[..., 0, None, None]) * width
    bumps = torch.exp(-(dx.square() + dy.square()) / (2 * radius**2))  # [B, N, P, h, w]
    return _max_per_label(bumps, labels)


def similarity_maps(points: Tensor, labels: Tensor, embeddings: Tensor) -> tuple[Tensor, Tensor]:
    """Per prompt, how much each pixel looks like its most similar positive and negative click.

    Args:
        points, labels: as in `click_maps`.
        embeddings: [B, D, h, w] per-pixel embeddings, L2-normalised over D.

    Returns:
        Positive and negative maps, each [B, N, h, w]: the largest cosine similarity, 0 without such clicks.
    """
    batch, prompts, count = labels.shape
    grid = (points * 2 - 1).reshape(batch, prompts * count, 1, 2).to(embeddings.dtype)
    at_clicks = F.grid_sample(embeddings, grid, align_corners=False).squeeze(-1)  # [B, D, N * P]
    at_clicks = F.normalize(at_clicks, dim=1).view(batch, -1, prompts, count)
    similarity = torch.einsum("bdnp,bdhw->bnphw", at_clicks, embeddings)
    return _max_per_label(similarity, labels)


def _max_per_label(values: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Maximum over the positive and over the negative clicks of [B, N, P, h, w] values; 0 where none."""
    floor = values.new_tensor(-2.0)
    maps = []
    for label in (1, 0):
        chosen = torch.where((labels == label)[..., None, None], values, floor).amax(2)
        maps.append(torch.where(chosen > -2, chosen, torch.zeros_like(chosen)))
    return maps[0], maps[1]


class ClickRefiner(nn.Module):
    """Adds a residual to each output's logits from the logits, the click maps and the fed-back mask.

    The last convolution starts at zero, so a trained model gains the refiner without changing its outputs.

    Args:
        feature_dim: channels of the pixel decoder's mask features.
        channels: width of the convolutional net.
        embedding_dim: channels of the projection the similarity maps compare.
        radius: click Gaussian standard deviation in mask-feature pixels (4 input pixels each).
    """

    def __init__(self, *, feature_dim: int, channels: int = 8, embedding_dim: int = 16, radius: float = 2.0) -> None:
        super().__init__()
        self.radius = radius
        self.project = nn.Conv2d(feature_dim, embedding_dim, 1)
        self.net = nn.Sequential(
            nn.Conv2d(6, channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=2, dilation=2), nn.ReLU(inplace=True),
            nn.Conv2d(channels, 1, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def embed(self, mask_features: Tensor) -> Tensor:
        """The per-pixel embeddings [B, embedding_dim, h, w] that the similarity maps compare, L2-normalised; they
        depend on the image alone, so an image's prompts share them."""
        return F.normalize(self.project(mask_features).float(), dim=1)

    def forward(self, logits: Tensor, points: Tensor, labels: Tensor, prior: Tensor, embeddings: Tensor) -> Tensor:
        """Refined logits.

        Args:
            logits: [B, N, K, h, w] mask logits of every output of every prompt.
            points, labels: every click of every prompt, as in `click_maps`.
            prior: [B, N, h, w] probability of the fed-back mask input, 0 without one.
            embeddings: `embed(mask_features)`.

        Returns:
            [B, N, K, h, w].
        """
        batch, prompts, outputs, height, width = logits.shape
        maps = [*click_maps(points, labels, (height, width), radius=self.radius),
                *similarity_maps(points, labels, embeddings), prior]
        # Channels-last: oneDNN runs these few-channel convolutions about twice as fast in that layout.
        inputs = logits.new_empty(batch, prompts, outputs, height, width, 6)
        inputs[..., 0] = logits.sigmoid()
        inputs[..., 1:] = torch.stack(maps, -1)[:, :, None].to(logits.dtype)
        residual = self.net(inputs.flatten(0, 2).permute(0, 3, 1, 2))
        return logits + residual.view(batch, prompts, outputs, height, width)

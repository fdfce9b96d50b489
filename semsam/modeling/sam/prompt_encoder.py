"""SAM's prompt encoder: points and box corners as Fourier features plus learned type embeddings; masks by convs."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from semsam.config import SamConfig
from semsam.modeling.common import LayerNorm2d

NOT_A_POINT = -1


class PositionEmbeddingRandom(nn.Module):
    """Positional encoding with random spatial frequencies (a fixed Gaussian matrix saved in the checkpoint)."""

    def __init__(self, *, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))

    def encode(self, coords: Tensor) -> Tensor:
        """coords [..., 2] as (x, y) in [0, 1] -> [..., 2 * num_pos_feats]."""
        coords = 2 * math.pi * ((2 * coords - 1) @ self.positional_encoding_gaussian_matrix)
        return torch.cat([coords.sin(), coords.cos()], dim=-1)

    def grid(self, height: int, width: int) -> Tensor:
        """The encoding of every cell centre of a height x width grid: [C, height, width]."""
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
        xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
        coords = torch.stack([xs[None, :].expand(height, -1), ys[:, None].expand(-1, width)], dim=-1)
        return self.encode(coords).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    def __init__(self, *, config: SamConfig) -> None:
        super().__init__()
        dim, chans = config.prompt_embed_dim, config.mask_in_chans
        self.input_size = config.image_size
        self.embedding_size = config.image_size // config.patch_size
        self.pe_layer = PositionEmbeddingRandom(num_pos_feats=dim // 2)
        # negative point, positive point, box top-left, box bottom-right
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(chans // 4),
            nn.GELU(),
            nn.Conv2d(chans // 4, chans, kernel_size=2, stride=2),
            LayerNorm2d(chans),
            nn.GELU(),
            nn.Conv2d(chans, dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, dim)

    @property
    def mask_input_size(self) -> tuple[int, int]:
        return 4 * self.embedding_size, 4 * self.embedding_size

    def dense_pe(self) -> Tensor:
        """[1, C, h, w] positional encoding of the image embedding grid."""
        return self.pe_layer.grid(self.embedding_size, self.embedding_size)[None]

    def _encode_coords(self, coords: Tensor) -> Tensor:
        return self.pe_layer.encode((coords + 0.5) / self.input_size)

    def forward(self, points: Tensor | None, labels: Tensor | None, boxes: Tensor | None,
                masks: Tensor | None) -> tuple[Tensor, Tensor]:
        """Embeds prompts in model-input pixels (resized image, before padding).

        Args:
            points: [B, P, 2] (x, y); labels: [B, P] with 1 positive, 0 negative, -1 padding.
            boxes: [B, 4] (x0, y0, x1, y1).
            masks: [B, 1, 4h, 4w] low-resolution logits.

        Returns:
            Sparse embeddings [B, P (+1 without boxes) (+2 with boxes), C] and dense embeddings [B, C, h, w]
            ([1, C, h, w] without masks).
        """
        batch = next(t.shape[0] for t in (points, boxes, masks) if t is not None)
        sparse = [torch.empty(batch, 0, self.no_mask_embed.embedding_dim, device=self.no_mask_embed.weight.device)]
        if points is not None:
            if boxes is None:
                # A "not a point" pads the points when there is no box, as SAM was trained.
                points = torch.cat([points, points.new_zeros(batch, 1, 2)], dim=1)
                labels = torch.cat([labels, labels.new_full((batch, 1), NOT_A_POINT)], dim=1)
            embedded = self._encode_coords(points.float())
            is_label = [(labels == value)[..., None] for value in (NOT_A_POINT, 0, 1)]
            embedded = torch.where(is_label[0], self.not_a_point_embed.weight, embedded)
            embedded = embedded + is_label[1] * self.point_embeddings[0].weight
            embedded = embedded + is_label[2] * self.point_embeddings[1].weight
            sparse.append(embedded)
        if boxes is not None:
            corners = self._encode_coords(boxes.float().view(batch, 2, 2))
            corner_types = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight])
            sparse.append(corners + corner_types)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            # One shared map, not one per prompt: the decoder then projects the image tokens once for all.
            dense = self.no_mask_embed.weight.view(1, -1, 1, 1).expand(1, -1, self.embedding_size,
                                                                        self.embedding_size)
        return torch.cat(sparse, dim=1), dense

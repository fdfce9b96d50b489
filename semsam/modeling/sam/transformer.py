"""SAM's two-way transformer: prompt tokens and image tokens attend to each other in turn.

Computes what the reference computes, in an order that costs less when many prompts share one image:
image tokens given with batch 1 are projected once for all prompts of the first block, and attention over a few
prompt tokens mixes their values after the output projection, P (V W), rather than before, (P V) W.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semsam.modeling.sam.image_encoder import MLPBlock


class Attention(nn.Module):
    """Multi-head attention whose projections may shrink the internal dimension by `downsample_rate`."""

    def __init__(self, *, dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        internal = dim // downsample_rate
        if internal % num_heads:
            raise ValueError(f"internal dimension {internal} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, internal)
        self.k_proj = nn.Linear(dim, internal)
        self.v_proj = nn.Linear(dim, internal)
        self.out_proj = nn.Linear(internal, dim)

    def heads(self, projected: Tensor) -> Tensor:
        """[B, N, internal] -> [B, heads, N, internal / heads]."""
        batch, tokens, channels = projected.shape
        return projected.view(batch, tokens, self.num_heads, channels // self.num_heads).transpose(1, 2)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return self.attend(self.heads(self.q_proj(q)), self.heads(self.k_proj(k)), self.heads(self.v_proj(v)))

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Attention of projected heads [B, heads, N, d] (batch 1 broadcasts) -> [B, Nq, dim]."""
        heads, keys = k.shape[1], k.shape[2]
        if heads * keys < self.out_proj.in_features:
            # Few keys (prompt tokens): project each head's values to the output first, then mix them. Scores are
            # laid out keys-first, so the softmax runs along the long axis.
            weights = torch.softmax(k @ q.transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-2)
            head_weight = self.out_proj.weight.t().reshape(heads, -1, self.out_proj.out_features)
            values = (v @ head_weight).flatten(1, 2)
            return torch.baddbmm(self.out_proj.bias, weights.flatten(1, 2).transpose(1, 2), values)
        if q.shape[0] != k.shape[0] and k.shape[0] == 1:
            # Shared keys: fold the batch into the query length, so one call serves every prompt.
            batch, queries = q.shape[0], q.shape[2]
            q = q.transpose(0, 1).flatten(1, 2)[None]
            out = F.scaled_dot_product_attention(q, k, v).view(heads, batch, queries, -1).transpose(0, 1)
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).flatten(2))


@dataclass
class ImageProjections:
    """A block's projections of image tokens that do not depend on the prompt (first block, shared image)."""

    keys: Tensor  # k_proj heads for token-to-image attention
    values: Tensor  # v_proj heads for token-to-image attention
    queries: Tensor  # q_proj heads for image-to-token attention


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token-to-image cross-attention, MLP, then image-to-token cross-attention."""

    def __init__(self, *, dim: int, num_heads: int, mlp_dim: int, skip_first_layer_pe: bool) -> None:
        super().__init__()
        self.self_attn = Attention(dim=dim, num_heads=num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = Attention(dim=dim, num_heads=num_heads, downsample_rate=2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim=dim, hidden_dim=mlp_dim, activation=nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = Attention(dim=dim, num_heads=num_heads, downsample_rate=2)
        self.skip_first_layer_pe = skip_first_layer_pe

    def image_projections(self, keys: Tensor, key_pe: Tensor) -> ImageProjections:
        """The projections of image tokens `keys` [B, HW, C] (with positions `key_pe`) that this block uses."""
        to_image, to_token = self.cross_attn_token_to_image, self.cross_attn_image_to_token
        with_pe = keys + key_pe
        return ImageProjections(keys=to_image.heads(to_image.k_proj(with_pe)),
                                values=to_image.heads(to_image.v_proj(keys)),
                                queries=to_token.heads(to_token.q_proj(with_pe)))

    def forward(self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor,
                image: ImageProjections | None = None) -> tuple[Tensor, Tensor]:
        """One block; `image` holds the projections of `keys`, when they were computed beforehand."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        if image is None:
            image = self.image_projections(keys, key_pe)
        to_image, to_token = self.cross_attn_token_to_image, self.cross_attn_image_to_token
        attended = to_image.attend(to_image.heads(to_image.q_proj(queries + query_pe)), image.keys, image.values)
        queries = self.norm2(queries + attended)
        queries = self.norm3(queries + self.mlp(queries))
        tokens = queries + query_pe
        update = to_token.attend(image.queries, to_token.heads(to_token.k_proj(tokens)),
                                 to_token.heads(to_token.v_proj(queries)))
        return queries, self.norm4(keys + update)


class TwoWayTransformer(nn.Module):
    def __init__(self, *, depth: int, dim: int, num_heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(dim=dim, num_heads=num_heads, mlp_dim=mlp_dim, skip_first_layer_pe=i == 0)
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(dim=dim, num_heads=num_heads, downsample_rate=2)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, keys: Tensor, key_pe: Tensor, point_embedding: Tensor,
                first_block: ImageProjections | None = None) -> tuple[Tensor, Tensor]:
        """Runs the blocks.

        Args:
            keys: image tokens [B, HW, C], B = 1 when every prompt shares them; key_pe: [1, HW, C].
            point_embedding: prompt tokens [N, T, C].
            first_block: `layers[0].image_projections(keys, key_pe)`, when computed once for several calls.

        Returns:
            Prompt tokens [N, T, C] and image tokens [N, HW, C].
        """
        queries = point_embedding
        for i, layer in enumerate(self.layers):
            queries, keys = layer(queries, keys, point_embedding, key_pe, first_block if i == 0 else None)
        attended = self.final_attn_token_to_image(queries + point_embedding, keys + key_pe, keys)
        return self.norm_final_attn(queries + attended), keys

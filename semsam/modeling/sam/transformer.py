"""SAM's two-way transformer: prompt tokens and image tokens attend to each other in turn."""

from __future__ import annotations

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

    def _heads(self, x: Tensor) -> Tensor:
        batch, tokens, channels = x.shape
        return x.view(batch, tokens, self.num_heads, channels // self.num_heads).transpose(1, 2)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        out = F.scaled_dot_product_attention(
            self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        )
        return self.out_proj(out.transpose(1, 2).flatten(2))


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

    def forward(self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor) -> tuple[Tensor, Tensor]:
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(queries + query_pe, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, queries + query_pe, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, *, depth: int, dim: int, num_heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(dim=dim, num_heads=num_heads, mlp_dim=mlp_dim, skip_first_layer_pe=i == 0)
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(dim=dim, num_heads=num_heads, downsample_rate=2)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image_embedding: Tensor, image_pe: Tensor, point_embedding: Tensor) -> tuple[Tensor, Tensor]:
        """image_embedding, image_pe: [B, C, H, W]; point_embedding: [B, N, C]. Returns tokens and image tokens."""
        keys = image_embedding.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        attended = self.final_attn_token_to_image(queries + point_embedding, keys + key_pe, keys)
        return self.norm_final_attn(queries + attended), keys

"""DINO-style decoder over prompt queries, with per-prompt attention and iterative box refinement."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semsam.config import DecoderConfig
from semsam.modeling.common import MLP, box_sine_embedding, inverse_sigmoid
from semsam.modeling.ms_deform_attn import MSDeformAttn
from semsam.modeling.pixel_decoder import NUM_LEVELS


class DecoderLayer(nn.Module):
    """Post-norm: self-attention -> norm2 -> deformable cross-attention -> norm1 -> FFN -> norm3."""

    def __init__(self, *, config: DecoderConfig) -> None:
        super().__init__()
        dim = config.hidden_dim
        self.cross_attn = MSDeformAttn(d_model=dim, num_levels=NUM_LEVELS, num_heads=config.num_heads,
                                       num_points=config.num_points)
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, config.num_heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, config.ffn_dim)
        self.linear2 = nn.Linear(config.ffn_dim, dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(
        self,
        tgt: Tensor,
        query_pos: Tensor,
        token_padding: Tensor,
        reference_boxes: Tensor,
        values: Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> Tensor:
        """Updates the tokens of every prompt.

        Args:
            tgt, query_pos: [B, N, T, C]; each prompt's T tokens attend only to each other.
            token_padding: [B, N, T], True for tokens that do not exist.
            reference_boxes: [B, N, T, 4] (cx, cy, w, h) in [0, 1].
            values: [B, S, C] multi-scale features through `cross_attn.value_proj`; spatial_shapes: (H, W) per
                level.

        Returns:
            [B, N, T, C].
        """
        batch, prompts, tokens, dim = tgt.shape
        per_prompt = tgt.reshape(batch * prompts, tokens, dim)
        q = (tgt + query_pos).reshape(batch * prompts, tokens, dim)
        # The padding as an attention mask, not key_padding_mask: the same sum inside, but key_padding_mask's shape
        # check imports torch's symbolic-shape machinery (about 1 s) at a process's first prediction.
        heads = self.self_attn.num_heads
        blocked = token_padding.reshape(batch * prompts, 1, 1, tokens).expand(-1, heads, tokens, -1)
        attended = self.self_attn(q, q, per_prompt, attn_mask=blocked.reshape(-1, tokens, tokens),
                                  need_weights=False)[0]
        tgt = self.norm2(tgt + attended.view(batch, prompts, tokens, dim))
        reference = reference_boxes.reshape(batch, -1, 1, 4).expand(-1, -1, NUM_LEVELS, -1)
        crossed = self.cross_attn((tgt + query_pos).reshape(batch, -1, dim), reference, values, spatial_shapes)
        tgt = self.norm1(tgt + crossed.view(batch, prompts, tokens, dim))
        return self.norm3(tgt + self.linear2(F.relu(self.linear1(tgt))))


class PromptDecoder(nn.Module):
    """A stack of decoder layers; each layer refines the output tokens' anchor boxes."""

    def __init__(self, *, config: DecoderConfig, bbox_embed: nn.ModuleList) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(config=config) for _ in range(config.num_layers))
        self.ref_point_head = MLP(input_dim=2 * config.hidden_dim, hidden_dim=config.hidden_dim,
                                  output_dim=config.hidden_dim, num_layers=2)
        self.norm = nn.LayerNorm(config.hidden_dim)
        self.bbox_embed = bbox_embed
        self.num_outputs = config.num_granularities

    def project_memory(self, memory: Tensor) -> list[Tensor]:
        """Each layer's cross-attention values of the multi-scale memory [B, S, C]: they depend on the image
        alone, so an image's prompts share them."""
        return [layer.cross_attn.value_proj(memory) for layer in self.layers]

    def forward(
        self,
        tgt: Tensor,
        reference_boxes: Tensor,
        token_padding: Tensor,
        memory_values: list[Tensor],
        spatial_shapes: list[tuple[int, int]],
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Runs every layer.

        Args:
            tgt: [B, N, T, C] content queries; the first `num_granularities` tokens of a prompt are its outputs.
            reference_boxes: [B, N, T, 4] anchor boxes in [0, 1].
            memory_values: `project_memory(memory)`.

        Returns:
            Per layer, the normalised output tokens [B, N, K, C]; and the output tokens' reference boxes
            [B, N, K, 4]: the anchors, then each layer's refinement (L + 1 entries). A layer reads the refinement
            detached; the list keeps its gradient, so that a layer's box loss also trains the previous layer's box
            update, as in DINO.
        """
        k = self.num_outputs
        hidden_states, references = [], [reference_boxes[:, :, :k]]
        for layer, bbox_embed, values in zip(self.layers, self.bbox_embed, memory_values, strict=True):
            query_pos = self.ref_point_head(box_sine_embedding(reference_boxes, tgt.shape[-1] // 2))
            tgt = layer(tgt, query_pos, token_padding, reference_boxes, values, spatial_shapes)
            outputs = tgt[:, :, :k]
            refined = (bbox_embed(outputs) + inverse_sigmoid(reference_boxes[:, :, :k])).sigmoid()
            hidden_states.append(self.norm(outputs))
            references.append(refined)
            # Only the output tokens move; the prompt tokens stay where the user put them.
            reference_boxes = torch.cat([refined.detach(), reference_boxes[:, :, k:]], dim=2)
        return hidden_states, references

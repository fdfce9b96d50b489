"""SAM's mask decoder: output tokens run through the two-way transformer, then hypernetwork MLPs make masks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semsam.config import SamConfig
from semsam.modeling.common import MLP, LayerNorm2d
from semsam.modeling.sam.transformer import TwoWayTransformer

# Prompts are decoded in chunks whose upscaled features hold about this many values (16 MB in float32).
CHUNK_ELEMENTS = 1 << 22


class MaskDecoder(nn.Module):
    """Token 0 predicts the single-mask output; tokens 1..K the ambiguity-aware multimask set."""

    def __init__(self, *, config: SamConfig) -> None:
        super().__init__()
        dim = config.prompt_embed_dim
        self.num_mask_tokens = config.num_multimask_outputs + 1
        self.transformer = TwoWayTransformer(depth=config.decoder_depth, dim=dim, num_heads=config.decoder_num_heads,
                                             mlp_dim=config.decoder_mlp_dim)
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(input_dim=dim, hidden_dim=dim, output_dim=dim // 8, num_layers=3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(input_dim=dim, hidden_dim=dim, output_dim=self.num_mask_tokens, num_layers=3)

    def forward(self, image_embeddings: Tensor, image_pe: Tensor, sparse: Tensor, dense: Tensor,
                *, multimask: bool) -> tuple[Tensor, Tensor]:
        """Masks for each prompt of one image.

        Args:
            image_embeddings: [1, C, h, w]; image_pe: [1, C, h, w].
            sparse: [N, T, C] prompt tokens; dense: [N or 1, C, h, w] mask-prompt embeddings (1: shared).
            multimask: K multimask outputs, else the single-mask output.

        Returns:
            Mask logits [N, K, 4h, 4w] and predicted IoU [N, K] (K = 1 without multimask).
        """
        prompts = sparse.shape[0]
        _, channels, height, width = image_embeddings.shape
        keys = (image_embeddings + dense).flatten(2).transpose(1, 2).contiguous()
        key_pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        shared = keys.shape[0] == 1
        first_block = self.transformer.layers[0].image_projections(keys, key_pe) if shared else None
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight])
        tokens = torch.cat([output_tokens.expand(prompts, -1, -1), sparse], dim=1)
        outputs = list(range(1, self.num_mask_tokens)) if multimask else [0]
        # Chunks of prompts keep every tensor small: large ones get fresh pages from the system on each
        # allocation, and those page faults cost more than the arithmetic.
        chunk = max(1, CHUNK_ELEMENTS // (16 * height * width * channels // 8))
        masks = keys.new_empty(prompts, len(outputs), 4 * height, 4 * width)
        scores = []
        for start in range(0, prompts, chunk):
            part = slice(start, start + chunk)
            hidden, src = self.transformer(keys if shared else keys[part], key_pe, tokens[part], first_block)
            hyper_in = torch.stack([self.output_hypernetworks_mlps[i](hidden[:, 1 + i]) for i in outputs], dim=1)
            self._masks(src, hyper_in, out=masks[part])
            scores.append(self.iou_prediction_head(hidden[:, 0])[:, outputs])
        return masks, torch.cat(scores)

    def _masks(self, src: Tensor, hyper_in: Tensor, *, out: Tensor) -> None:
        """Upscales image tokens [n, hw, C] 4x and applies the hypernetwork weights [n, K, C/8]; writes `out`
        [n, K, 4h, 4w].

        The stride-2, kernel-2 transposed convolutions are per-pixel linear maps, applied here to token-major
        features so that no layout changes are needed until the masks themselves.
        """
        first, norm, _, second, _ = self.output_upscaling
        prompts, outputs, height, width = out.shape[0], out.shape[1], out.shape[2] // 4, out.shape[3] // 4
        x = torch.addmm(first.bias.repeat(4), src.flatten(0, 1), first.weight.permute(0, 2, 3, 1).flatten(1))
        x = F.gelu(F.layer_norm(x.view(-1, first.out_channels), (first.out_channels,), norm.weight, norm.bias,
                                norm.eps))
        x = torch.addmm(second.bias.repeat(4), x, second.weight.permute(0, 2, 3, 1).flatten(1))
        x = F.gelu(x.view(prompts, -1, second.out_channels))
        masks = (x @ hyper_in.transpose(1, 2)).view(prompts, height, width, 2, 2, 2, 2, outputs)
        # Sub-pixel (a, b) of the first upscaling and (a2, b2) of the second: row 4i + 2a + a2, column 4j + 2b + b2.
        out.view(prompts, outputs, height, 2, 2, width, 2, 2).copy_(masks.permute(0, 7, 1, 3, 5, 2, 4, 6))

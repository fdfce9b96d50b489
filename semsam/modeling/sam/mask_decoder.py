"""SAM's mask decoder: output tokens run through the two-way transformer, then hypernetwork MLPs make masks."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from semsam.config import SamConfig
from semsam.modeling.common import MLP, LayerNorm2d
from semsam.modeling.sam.transformer import TwoWayTransformer


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
            sparse: [N, T, C] prompt tokens; dense: [N or 1, C, h, w] mask-prompt embeddings.
            multimask: K multimask outputs, else the single-mask output.

        Returns:
            Mask logits [N, K, 4h, 4w] and predicted IoU [N, K] (K = 1 without multimask).
        """
        prompts = sparse.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight])
        tokens = torch.cat([output_tokens.expand(prompts, -1, -1), sparse], dim=1)
        src = (image_embeddings + dense).expand(prompts, -1, -1, -1)
        hidden, src = self.transformer(src, image_pe.expand(prompts, -1, -1, -1), tokens)
        batch, channels, height, width = image_embeddings.shape
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(prompts, channels, height, width))
        hyper_in = torch.stack(
            [mlp(hidden[:, 1 + i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        masks = (hyper_in @ upscaled.flatten(2)).view(prompts, -1, *upscaled.shape[-2:])
        iou = self.iou_prediction_head(hidden[:, 0])
        keep = slice(1, None) if multimask else slice(0, 1)
        return masks[:, keep], iou[:, keep]

"""The `SemanticSam` model: Swin backbone -> deformable pixel decoder -> prompt-query decoder and heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semsam.config import SemanticInfo, SemanticSamConfig
from semsam.modeling.pixel_decoder import PixelDecoder, PixelFeatures
from semsam.modeling.prompt_head import DecoderOutput, PromptBatch, PromptHead
from semsam.modeling.swin import SwinBackbone


class SemSegHead(nn.Module):
    """Holds the pixel decoder and the prompt head under the official names."""

    def __init__(self, *, config: SemanticSamConfig, in_channels: list[int]) -> None:
        super().__init__()
        self.pixel_decoder = PixelDecoder(config=config.pixel_decoder, in_channels=in_channels)
        self.predictor = PromptHead(config=config.decoder, mask_dim=config.pixel_decoder.mask_dim)


class SemanticSam(nn.Module):
    """Promptable any-granularity segmentation: K masks per prompt, with IoU and object/part embeddings."""

    def __init__(self, *, config: SemanticSamConfig, semantic: SemanticInfo | None = None) -> None:
        super().__init__()
        self.config = config
        self.semantic = semantic or SemanticInfo()
        self.backbone = SwinBackbone(config=config.backbone)
        self.sem_seg_head = SemSegHead(config=config, in_channels=self.backbone.num_features)
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(1, 3, 1, 1), persistent=False)

    @property
    def num_granularities(self) -> int:
        return self.config.decoder.num_granularities

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess(self, images: Tensor) -> Tensor:
        """Normalises [B, 3, H, W] RGB in 0..255 and pads bottom/right to a multiple of `size_divisibility`."""
        images = (images.float() - self.pixel_mean) / self.pixel_std
        d = self.config.size_divisibility
        return F.pad(images, (0, (-images.shape[-1]) % d, 0, (-images.shape[-2]) % d))

    def encode_image(self, images: Tensor) -> PixelFeatures:
        """Runs the backbone and pixel decoder on pre-processed images [B, 3, H, W]."""
        return self.sem_seg_head.pixel_decoder(self.backbone(images))

    def decode(self, features: PixelFeatures, prompts: PromptBatch, *, with_aux: bool = False) -> DecoderOutput:
        """Predicts K masks per prompt; `with_aux` adds every earlier decoder layer's predictions."""
        return self.sem_seg_head.predictor(features, prompts, with_aux=with_aux)

    def forward(self, images: Tensor, prompts: PromptBatch) -> DecoderOutput:
        """Training entry: pre-processed images and their prompts, with deep supervision outputs."""
        return self.decode(self.encode_image(images), prompts, with_aux=True)

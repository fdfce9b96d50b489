"""A visual prior for object names: a frozen ImageNet MobileNetV2 whose mask-pooled features are projected onto the
names' text embeddings.

The object head learns from few examples per class and overfits them; features learnt on ImageNet and left frozen
name unseen instances of those classes better, and `Predictor` combines the two for vocabularies of the names the
recognizer was fitted on.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semsam.config import MobileNetV2Config, RecognizerConfig
from semsam.image import resize_long_side
from semsam.modeling.mobilenet_v2 import MobileNetV2Embedder


class MaskRecognizer(nn.Module):
    """Object logits of masks from a frozen ImageNet network: mask-average its features, standardise, project.

    Every tensor is fitted once (`semsam.training.recognizer.fit_recognizer`) and frozen; a zero projection, as
    built, gives equal logits to every name and so changes no label.
    """

    def __init__(self, *, config: RecognizerConfig) -> None:
        super().__init__()
        self.config = config
        self.embedder = MobileNetV2Embedder(config=MobileNetV2Config(width_multiplier=config.width_multiplier))
        channels = self.embedder.out_channels
        self.register_buffer("feature_mean", torch.zeros(channels))
        self.register_buffer("feature_std", torch.ones(channels))
        self.projection = nn.Parameter(torch.zeros(channels, config.text_dim))
        self.requires_grad_(False)

    def encode(self, image: np.ndarray) -> Tensor:
        """Feature map [C, h, w] of an HxWx3 uint8 RGB image, its long side resized to `config.input_size`."""
        resized = resize_long_side(image, self.config.input_size)
        pixels = torch.tensor(resized, device=self.projection.device)
        return self.embedder.embed(pixels.permute(2, 0, 1)[None].float() / 127.5 - 1)[0]

    def pool(self, feature_map: Tensor, masks: Tensor) -> Tensor:
        """Mean feature [N, C] inside each of masks [N, H, W] (weights in [0, 1] covering the same image).

        An empty mask gets the mean over the whole image.
        """
        weights = F.adaptive_avg_pool2d(masks[:, None].float(), feature_map.shape[-2:])[:, 0]
        empty = weights.flatten(1).sum(1) <= 0
        weights = torch.where(empty[:, None, None], torch.ones_like(weights), weights)
        pooled = torch.einsum("nhw,chw->nc", weights, feature_map)
        return pooled / weights.flatten(1).sum(1, keepdim=True)

    def logits(self, pooled: Tensor, text_embeddings: Tensor) -> Tensor:
        """Logits [N, V] of pooled features [N, C] against names [V, text_dim]."""
        standardised = (pooled - self.feature_mean) / self.feature_std
        return standardised @ self.projection @ text_embeddings.T.to(pooled.dtype)

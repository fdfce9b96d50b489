"""The `Sam` model behind the same encode_image / prompt_batch / decode contract as `SemanticSam`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semsam.config import SamConfig, SemanticInfo
from semsam.image import resize_long_side
from semsam.modeling.sam.image_encoder import ImageEncoderViT
from semsam.modeling.sam.mask_decoder import MaskDecoder
from semsam.modeling.sam.prompt_encoder import PromptEncoder


@dataclass
class SamPromptBatch:
    """Prompts for one image in model-input pixels (resized image, before padding), one entry per prompt."""

    points: list[Tensor]  # [P, 2] (x, y); P may be 0
    labels: list[Tensor]  # [P] long: 1 positive, 0 negative
    boxes: list[Tensor | None]  # [4] (x0, y0, x1, y1)
    masks: list[Tensor | None]  # [4h, 4w] low-resolution logits


@dataclass
class SamOutput:
    mask_logits: Tensor  # [1, N, K, 4h, 4w]
    iou_scores: Tensor  # [1, N, K]

    @property
    def ranking_scores(self) -> Tensor:
        """The scores that order one prompt's masks: SAM's one IoU head."""
        return self.iou_scores


class Sam(nn.Module):
    """Segment Anything: K = 3 ambiguity-aware masks per prompt, or its single-mask output."""

    def __init__(self, *, config: SamConfig, semantic: SemanticInfo | None = None) -> None:
        super().__init__()
        self.config = config
        # SAM has no classification heads: masks never get labels.
        self.semantic = semantic or SemanticInfo()
        self.image_encoder = ImageEncoderViT(config=config)
        self.prompt_encoder = PromptEncoder(config=config)
        self.mask_decoder = MaskDecoder(config=config)
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(1, 3, 1, 1), persistent=False)

    @property
    def num_granularities(self) -> int:
        return self.config.num_multimask_outputs

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def resize_image(self, image: np.ndarray) -> np.ndarray:
        """Resizes HxWx3 uint8 RGB so that its long side is `image_size`, as `SamPredictor` does."""
        return resize_long_side(image, self.config.image_size)

    def preprocess(self, images: Tensor) -> Tensor:
        """Normalises [B, 3, H, W] RGB in 0..255 and zero-pads bottom/right to image_size x image_size."""
        images = (images.float() - self.pixel_mean) / self.pixel_std
        size = self.config.image_size
        return F.pad(images, (0, size - images.shape[-1], 0, size - images.shape[-2]))

    def encode_image(self, images: Tensor) -> Tensor:
        """Pre-processed images [B, 3, S, S] -> image embeddings [B, C, S/16, S/16]."""
        return self.image_encoder(images)

    def mask_input_size(self, features: Tensor) -> tuple[int, int]:
        """The shape of a mask input (and of the low-resolution logits): 4x the embedding grid."""
        return self.prompt_encoder.mask_input_size

    def prompt_batch(
        self, prompts: Sequence, *, original_size: tuple[int, int], input_size: tuple[int, int], features: Tensor
    ) -> SamPromptBatch:
        """Converts validated prompts (numpy, original-image pixels) into model-input pixels.

        Args:
            prompts: objects with `points` [P, 2], `labels` [P], `box` [4] or None, `mask_input` or None.
            original_size, input_size: (H, W) of the image and of the model input (resized, before padding).
        """
        device = self.device
        xy = np.array([input_size[1] / original_size[1], input_size[0] / original_size[0]], np.float32)

        def tensor(array: np.ndarray | None) -> Tensor | None:
            return None if array is None else torch.as_tensor(array, dtype=torch.float32, device=device)

        return SamPromptBatch(
            points=[tensor(p.points * xy) for p in prompts],
            labels=[torch.as_tensor(p.labels, dtype=torch.long, device=device) for p in prompts],
            boxes=[None if p.box is None else tensor(p.box * np.tile(xy, 2)) for p in prompts],
            masks=[tensor(p.mask_input) for p in prompts],
        )

    def decode(self, features: Tensor, prompts: SamPromptBatch, *, multimask: bool = True) -> SamOutput:
        """Masks for every prompt; prompts of the same form run together, each exactly as if asked alone."""
        groups: dict[tuple[int, bool, bool], list[int]] = {}
        for i, (points, box, mask) in enumerate(zip(prompts.points, prompts.boxes, prompts.masks)):
            groups.setdefault((len(points), box is not None, mask is not None), []).append(i)
        logits: list[Tensor | None] = [None] * len(prompts.points)
        scores: list[Tensor | None] = [None] * len(prompts.points)
        image_pe = self.prompt_encoder.dense_pe()
        for (num_points, has_box, has_mask), members in groups.items():
            points = torch.stack([prompts.points[i] for i in members]) if num_points else None
            labels = torch.stack([prompts.labels[i] for i in members]) if num_points else None
            boxes = torch.stack([prompts.boxes[i] for i in members]) if has_box else None
            masks = torch.stack([prompts.masks[i] for i in members])[:, None] if has_mask else None
            sparse, dense = self.prompt_encoder(points, labels, boxes, masks)
            group_logits, group_scores = self.mask_decoder(features, image_pe, sparse, dense, multimask=multimask)
            for j, i in enumerate(members):
                logits[i], scores[i] = group_logits[j], group_scores[j]
        return SamOutput(mask_logits=torch.stack(logits)[None], iou_scores=torch.stack(scores)[None])

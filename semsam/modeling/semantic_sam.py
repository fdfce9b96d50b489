"""The `SemanticSam` model: Swin or MobileNetV2 backbone -> deformable pixel decoder -> prompt-query decoder and heads."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semsam.config import OFFICIAL_SHORT_SIDE, BackboneConfig, MobileNetV2Config, SemanticInfo, SemanticSamConfig
from semsam.image import resize_long_side, resize_short_side
from semsam.modeling.common import mask_logits_to_boxes
from semsam.modeling.mobilenet_v2 import MobileNetV2Backbone
from semsam.modeling.pixel_decoder import PixelDecoder, PixelFeatures
from semsam.modeling.prompt_head import DecoderOutput, PromptBatch, PromptHead
from semsam.modeling.recognizer import MaskRecognizer
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
        self.backbone = build_backbone(config.backbone)
        self.sem_seg_head = SemSegHead(config=config, in_channels=self.backbone.num_features)
        self.recognizer = None if config.recognizer is None else MaskRecognizer(config=config.recognizer)
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(1, 3, 1, 1), persistent=False)

    @property
    def num_granularities(self) -> int:
        return self.config.decoder.num_granularities

    @property
    def recognizes(self) -> bool:
        """Whether the model has a fitted recognizer (`Predictor` uses it for vocabularies of names it was fitted on)."""
        return self.recognizer is not None and bool(self.semantic.recognizer_names)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def resize_image(self, image: np.ndarray) -> np.ndarray:
        """Resizes HxWx3 uint8 RGB to the model-input size as the weights were trained (`config.resize`)."""
        if self.config.resize == "long_side":
            return resize_long_side(image, self.config.image_size)
        return resize_short_side(image, OFFICIAL_SHORT_SIDE)

    def preprocess(self, images: Tensor) -> Tensor:
        """Normalises [B, 3, H, W] RGB in 0..255 and pads bottom/right to a multiple of `size_divisibility`."""
        images = (images.float() - self.pixel_mean) / self.pixel_std
        d = self.config.size_divisibility
        return F.pad(images, (0, (-images.shape[-1]) % d, 0, (-images.shape[-2]) % d))

    def encode_image(self, images: Tensor) -> PixelFeatures:
        """Runs the backbone and pixel decoder on pre-processed images [B, 3, H, W], and projects the memory
        for the prompt decoder's cross-attention (and the click refiner's embeddings) once for all prompts."""
        features = self.sem_seg_head.pixel_decoder(self.backbone(images))
        head = self.sem_seg_head.predictor
        features.memory_values = head.decoder.project_memory(features.memory)
        if head.click_refiner is not None:
            features.click_embeddings = head.click_refiner.embed(features.mask_features)
        return features

    def mask_input_size(self, features: PixelFeatures) -> tuple[int, int]:
        """The shape of a mask input (and of the low-resolution logits): the mask-feature grid."""
        return tuple(features.mask_features.shape[-2:])

    def prompt_batch(
        self, prompts: Sequence, *, original_size: tuple[int, int], input_size: tuple[int, int],
        features: PixelFeatures,
    ) -> PromptBatch:
        """Converts validated prompts into anchor queries for one image, as the official demo does.

        Args:
            prompts: objects with `points` [P, 2], `labels` [P], `box` [4] or None, `mask_input` or None, all
                numpy in original-image pixels; a click at (x, y) lies at x / W, y / H of the image.
            original_size: (H, W) of the image.
            input_size: (H, W) of the model input (resized, before padding).
        """
        device = self.device
        padded_h, padded_w = (4 * s for s in features.mask_features.shape[-2:])
        (height, width), (input_h, input_w) = original_size, input_size
        to_unit = np.array([input_w / width / padded_w, input_h / height / padded_h], np.float32)
        # A click's size is a fraction of the image, so its anchor shrinks with the padding.
        click = self.sem_seg_head.predictor.click_size * np.array([input_w / padded_w, input_h / padded_h])
        anchors, is_box, extra = [], [], []
        for prompt in prompts:
            points, labels = prompt.points, prompt.labels
            if prompt.box is not None:
                (x0, y0), (x1, y1) = prompt.box[:2] * to_unit, prompt.box[2:] * to_unit
                anchors.append([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0])
                is_box.append(True)
            elif (labels == 1).any():
                first = int(np.argmax(labels == 1))
                anchors.append([*(points[first] * to_unit), *click])
                is_box.append(False)
                keep = np.arange(len(points)) != first
                points, labels = points[keep], labels[keep]
            else:
                anchors.append(mask_logits_to_boxes(torch.from_numpy(prompt.mask_input)).tolist())
                is_box.append(True)
            extra.append((points * to_unit, labels))
        count = max(len(p) for p, _ in extra)
        points = torch.zeros(1, len(prompts), count, 2)
        point_labels = torch.full((1, len(prompts), count), -1, dtype=torch.long)
        for i, (p, lab) in enumerate(extra):
            points[0, i, : len(p)] = torch.from_numpy(p)
            point_labels[0, i, : len(lab)] = torch.from_numpy(lab)
        masks = [p.mask_input for p in prompts]
        mask_inputs = mask_valid = None
        if any(m is not None for m in masks):
            shape = features.mask_features.shape[-2:]
            mask_inputs = torch.stack([torch.zeros(shape) if m is None else torch.from_numpy(m) for m in masks])[None]
            mask_valid = torch.tensor([[m is not None for m in masks]])
        return PromptBatch(
            anchors=torch.tensor([anchors], dtype=torch.float32, device=device),
            anchor_is_box=torch.tensor([is_box], device=device),
            points=points.to(device),
            point_labels=point_labels.to(device),
            mask_inputs=None if mask_inputs is None else mask_inputs.to(device),
            mask_valid=None if mask_valid is None else mask_valid.to(device),
        )

    def decode(
        self, features: PixelFeatures, prompts: PromptBatch, *, with_aux: bool = False, multimask: bool = True
    ) -> DecoderOutput:
        """Predicts K masks per prompt; `with_aux` adds every earlier decoder layer's predictions.

        Without `multimask`, each prompt keeps only its highest predicted-IoU mask (Semantic-SAM has no
        dedicated single-mask output).
        """
        output = self.sem_seg_head.predictor(features, prompts, with_aux=with_aux)
        return output if multimask else _keep_best(output)

    def forward(self, images: Tensor, prompts: PromptBatch) -> DecoderOutput:
        """Training entry: pre-processed images and their prompts, with deep supervision outputs."""
        return self.decode(self.encode_image(images), prompts, with_aux=True)


def build_backbone(config: BackboneConfig) -> SwinBackbone | MobileNetV2Backbone:
    """The backbone a config describes; each has `num_features` and returns res2..res5."""
    if isinstance(config, MobileNetV2Config):
        return MobileNetV2Backbone(config=config)
    return SwinBackbone(config=config)


def _keep_best(output: DecoderOutput) -> DecoderOutput:
    best = output.ranking_scores.argmax(-1, keepdim=True)

    def take(tensor: Tensor) -> Tensor:
        index = best.view(*best.shape, *[1] * (tensor.dim() - best.dim())).expand(-1, -1, -1, *tensor.shape[3:])
        return tensor.gather(2, index)

    return DecoderOutput(mask_logits=take(output.mask_logits), iou_scores=take(output.iou_scores),
                         boxes=take(output.boxes), object_embeddings=take(output.object_embeddings),
                         part_embeddings=take(output.part_embeddings),
                         rank_scores=None if output.rank_scores is None else take(output.rank_scores))

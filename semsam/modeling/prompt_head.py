"""Turns prompts into granularity queries, decodes them, and predicts masks, IoU, boxes and class embeddings."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semsam.config import DecoderConfig
from semsam.modeling.click_refiner import ClickRefiner
from semsam.modeling.common import MLP, inverse_sigmoid, mask_logits_to_boxes
from semsam.modeling.pixel_decoder import PixelFeatures
from semsam.modeling.prompt_decoder import PromptDecoder


@dataclass
class PromptBatch:
    """Prompts for a batch of images, all coordinates normalised to [0, 1] of the padded model input.

    Every prompt has one anchor (a box, or a click as a tiny box) shared by its K output queries; its other
    clicks and its mask input become extra tokens that the output queries attend to.
    """

    anchors: Tensor  # [B, N, 4] (cx, cy, w, h)
    anchor_is_box: Tensor  # [B, N] bool
    points: Tensor  # [B, N, P, 2] (x, y) extra clicks; P may be 0
    point_labels: Tensor  # [B, N, P] long: 1 positive, 0 negative, -1 padding
    mask_inputs: Tensor | None = None  # [B, N, H/4, W/4] logits at the mask-feature resolution
    mask_valid: Tensor | None = None  # [B, N] bool, which prompts have a mask input


@dataclass
class DecoderOutput:
    """Predictions of the last decoder layer; `aux` holds the earlier layers' for deep supervision."""

    mask_logits: Tensor  # [B, N, K, H/4, W/4]
    iou_scores: Tensor  # [B, N, K] the trained IoU head's
    boxes: Tensor  # [B, N, K, 4] (cx, cy, w, h) in [0, 1]
    object_embeddings: Tensor  # [B, N, K, class_dim], L2-normalised
    part_embeddings: Tensor  # [B, N, K, class_dim], L2-normalised
    rank_scores: Tensor | None = None  # [B, N, K] the rank head's, for a model that has one
    aux: list["DecoderOutput"] = field(default_factory=list)

    @property
    def ranking_scores(self) -> Tensor:
        """The scores that order one prompt's masks: the rank head's where the model has one, else the IoU head's."""
        return self.iou_scores if self.rank_scores is None else self.rank_scores


class PromptHead(nn.Module):
    """The `sem_seg_head.predictor` of the official layout: embeddings, decoder and output heads."""

    def __init__(self, *, config: DecoderConfig, mask_dim: int) -> None:
        super().__init__()
        dim = config.hidden_dim
        if mask_dim != dim:
            raise ValueError(f"mask_dim ({mask_dim}) must equal the decoder hidden_dim ({dim})")
        self.num_granularities = config.num_granularities
        self.click_size = config.click_size
        self.label_enc = nn.Embedding(2, dim)
        self.pb_embedding = nn.Embedding(2, dim)
        self.mask_tokens = nn.Embedding(config.num_granularities, dim)
        self._bbox_embed = MLP(input_dim=dim, hidden_dim=dim, output_dim=4, num_layers=3)
        nn.init.zeros_(self._bbox_embed.layers[-1].weight)
        nn.init.zeros_(self._bbox_embed.layers[-1].bias)
        # One box MLP shared by every layer, reachable under the three names the released files use.
        self.bbox_embed = nn.ModuleList([self._bbox_embed] * config.num_layers)
        self.decoder = PromptDecoder(config=config, bbox_embed=self.bbox_embed)
        self.decoder_norm = self.decoder.norm
        self.mask_embed = MLP(input_dim=dim, hidden_dim=dim, output_dim=mask_dim, num_layers=3)
        self.iou_prediction_head = MLP(input_dim=dim, hidden_dim=dim, output_dim=1, num_layers=3)
        self.rank_head = MLP(input_dim=dim, hidden_dim=dim, output_dim=1, num_layers=3) if config.rank_head else None
        self.class_embed = nn.Parameter(torch.empty(dim, config.class_dim))
        self.class_embed_part = nn.Parameter(torch.empty(dim, config.class_dim))
        # The official files' `lang_mapper` [class_dim, hidden_dim] is unused at inference there and here; it is
        # kept so that they load strictly and convert without loss. Ours maps text embeddings to class_dim.
        self.register_buffer("lang_mapper", torch.zeros(config.class_dim, dim))
        self.text_projection = nn.Parameter(torch.empty(config.text_dim, config.class_dim))
        self.logit_scale = nn.Parameter(torch.ones(()))
        for weight in (self.class_embed, self.class_embed_part, self.text_projection):
            nn.init.trunc_normal_(weight, std=0.02)
        self.click_refiner = ClickRefiner(feature_dim=mask_dim) if config.click_refiner else None

    def build_queries(self, prompts: PromptBatch, features: PixelFeatures) -> tuple[Tensor, Tensor, Tensor]:
        """Content queries, anchor boxes and padding for every token of every prompt.

        Returns:
            tgt [B, N, T, C], boxes [B, N, T, 4], padding [B, N, T] with T = K + P (+ 1 with mask inputs).
        """
        batch, prompts_n = prompts.anchors.shape[:2]
        k = self.num_granularities
        base = self.label_enc.weight[0]
        prompt_type = self.pb_embedding(prompts.anchor_is_box.long())
        outputs = (base + prompt_type)[:, :, None] + self.mask_tokens.weight
        output_boxes = prompts.anchors[:, :, None].expand(-1, -1, k, -1)
        labels = prompts.point_labels
        point_tokens = self.label_enc(labels.clamp(min=0)) + self.pb_embedding.weight[0]
        click_wh = torch.full_like(prompts.points, self.click_size)
        point_boxes = torch.cat([prompts.points, click_wh], dim=-1)
        tgt = [outputs, point_tokens]
        boxes = [output_boxes, point_boxes]
        padding = [torch.zeros(batch, prompts_n, k, dtype=torch.bool, device=labels.device), labels < 0]
        if prompts.mask_inputs is not None:
            token, box = self._mask_token(prompts.mask_inputs, features.mask_features)
            tgt.append((base + self.pb_embedding.weight[1] + token)[:, :, None])
            boxes.append(box[:, :, None])
            padding.append(~prompts.mask_valid[:, :, None])
        return torch.cat(tgt, 2), torch.cat(boxes, 2), torch.cat(padding, 2)

    @staticmethod
    def _mask_token(mask_inputs: Tensor, mask_features: Tensor) -> tuple[Tensor, Tensor]:
        """Pools mask features under a prompt's mask logits; its anchor is the mask's bounding box."""
        weights = mask_inputs.sigmoid()
        pooled = torch.einsum("bnhw,bchw->bnc", weights, mask_features) / weights.sum((-2, -1))[..., None].clamp(min=1e-6)
        return pooled, mask_logits_to_boxes(mask_inputs)

    def forward(self, features: PixelFeatures, prompts: PromptBatch, *, with_aux: bool) -> DecoderOutput:
        tgt, boxes, padding = self.build_queries(prompts, features)
        hidden_states, references = self.decoder(tgt, boxes, padding, features.memory_values,
                                                 features.spatial_shapes)
        layers = range(len(hidden_states)) if with_aux else [len(hidden_states) - 1]
        predictions = [self._predict(hidden_states[i], references[i], features.mask_features) for i in layers]
        final = predictions[-1]
        final.aux = predictions[:-1]
        if self.click_refiner is not None:
            final.mask_logits = self._refine(final.mask_logits, prompts, features.click_embeddings)
        return final

    def _refine(self, logits: Tensor, prompts: PromptBatch, embeddings: Tensor) -> Tensor:
        """The last layer's logits corrected by the click refiner; a click anchor counts as a positive click."""
        anchor_labels = torch.where(prompts.anchor_is_box, -1, 1).to(prompts.point_labels.dtype)
        points = torch.cat([prompts.anchors[:, :, None, :2], prompts.points.to(prompts.anchors.dtype)], 2).float()
        labels = torch.cat([anchor_labels[:, :, None], prompts.point_labels], 2)
        if prompts.mask_inputs is None:
            prior = logits.new_zeros(logits.shape[:2] + logits.shape[-2:])
        else:
            prior = prompts.mask_inputs.float().sigmoid() * prompts.mask_valid[..., None, None]
        return self.click_refiner(logits, points, labels, prior, embeddings)

    def _predict(self, hidden: Tensor, reference: Tensor, mask_features: Tensor) -> DecoderOutput:
        """Heads on one layer's output tokens; `reference` is the anchor box that layer was given."""
        # The released weights expect the decoder's LayerNorm applied twice (decoder_norm is decoder.norm).
        hidden = self.decoder_norm(hidden)
        mask_logits = torch.einsum("bnkc,bchw->bnkhw", self.mask_embed(hidden), mask_features)
        return DecoderOutput(
            mask_logits=mask_logits,
            iou_scores=self.iou_prediction_head(hidden).squeeze(-1),
            boxes=(self._bbox_embed(hidden) + inverse_sigmoid(reference)).sigmoid(),
            object_embeddings=F.normalize(hidden @ self.class_embed, dim=-1),
            part_embeddings=F.normalize(hidden @ self.class_embed_part, dim=-1),
            rank_scores=None if self.rank_head is None else self.rank_head(hidden).squeeze(-1),
        )

    def classify(self, embeddings: Tensor, text_embeddings: Tensor) -> Tensor:
        """Cosine similarity times a learned scale between mask embeddings [..., D] and names [V, text_dim].

        Returns:
            Logits [..., V].
        """
        return self.score_names(embeddings, self.name_embeddings(text_embeddings))

    def name_embeddings(self, text_embeddings: Tensor) -> Tensor:
        """Names [V, text_dim] projected into the mask embeddings' space and L2-normalised, [V, D]: a vocabulary's
        are computed once for all its masks."""
        return F.normalize(text_embeddings @ self.text_projection, dim=-1)

    def score_names(self, embeddings: Tensor, names: Tensor) -> Tensor:
        """`classify` of mask embeddings [..., D] against `name_embeddings` [V, D]: logits [..., V]."""
        return self.logit_scale.exp() * embeddings @ names.T

"""Many-to-many multi-choice loss: per-prompt matching, then mask, IoU, box and class losses on matched pairs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semsam.data.prompts import PromptTargets
from semsam.modeling.prompt_head import DecoderOutput
from semsam.training.box_ops import cxcywh_to_xyxy, generalized_iou
from semsam.training.matching import HungarianMatcher, MatchCosts, MatchIndices
from semsam.training.point_sampling import sample_logits, uncertain_points

Classifier = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms in the total."""

    bce: float = 5.0
    dice: float = 5.0
    box_l1: float = 5.0
    giou: float = 2.0
    iou: float = 1.0
    object_class: float = 4.0
    part_class: float = 4.0
    rank: float = 0.0  # the rank head's term, for a model trained with one (0: not computed)


# Temperature of the softmax over a prompt's outputs whose expected IoU the rank term rewards: sharp, so that it
# rewards the best output on top rather than a good average.
RANK_TEMPERATURE = 0.05


class MultiChoiceLoss(nn.Module):
    """Matches each prompt's K outputs to its targets and supervises matched pairs, on every decoder layer.

    All terms are sums over matched pairs divided by the number of matched pairs (class terms: by the number of
    matched pairs with a label). Unmatched outputs get no loss.
    """

    def __init__(
        self,
        *,
        weights: LossWeights = LossWeights(),
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        match_costs: MatchCosts = MatchCosts(),
    ) -> None:
        """Args:
        weights: loss weights in the total.
        num_points: points sampled per matched mask, for matching and for the mask losses.
        oversample_ratio: random candidates per point when looking for uncertain points.
        importance_sample_ratio: share of points taken where the prediction is least certain.
        match_costs: weights of the matching costs.
        """
        super().__init__()
        if oversample_ratio < 1 or not 0 <= importance_sample_ratio <= 1:
            raise ValueError(
                f"need oversample_ratio >= 1 and importance_sample_ratio in [0, 1], got {oversample_ratio} "
                f"and {importance_sample_ratio}"
            )
        self.weights = weights
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.matcher = HungarianMatcher(costs=match_costs, num_points=num_points)

    def forward(
        self,
        outputs: DecoderOutput,
        targets: PromptTargets,
        *,
        classifier: Classifier | None = None,
        object_text: Tensor | None = None,
        part_text: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Computes the loss of the last layer and of every layer in `outputs.aux`, each with its own matching.

        Args:
            outputs: the model's predictions (with aux layers for deep supervision).
            targets: the prompts' ground truth.
            classifier: `model.sem_seg_head.predictor.classify`; needed with object_text or part_text.
            object_text: [V, text_dim] object vocabulary embeddings; an object class loss is added when given
                and the targets carry object class ids.
            part_text: [V, text_dim] part vocabulary embeddings, likewise for part class ids.

        Returns:
            The last layer's unweighted terms ("bce", "dice", "iou", "box_l1", "giou", and "object_class" /
            "part_class" / "rank" when computed), "aux" (the weighted sum over aux layers) and "total".
        """
        if (object_text is not None or part_text is not None) and classifier is None:
            raise ValueError("object_text/part_text need classifier=model.sem_seg_head.predictor.classify")
        low_res_truth = downsample_masks(targets.gt_masks, outputs.mask_logits.shape[-2:])
        texts = {"object_class": (object_text, targets.object_classes, "object_embeddings"),
                 "part_class": (part_text, targets.part_classes, "part_embeddings")}
        aux = torch.zeros((), device=outputs.mask_logits.device)
        for layer in outputs.aux:
            aux = aux + self._weighted(self._layer_terms(layer, targets, low_res_truth, classifier, texts))
        terms = self._layer_terms(outputs, targets, low_res_truth, classifier, texts)
        return {**terms, "aux": aux, "total": self._weighted(terms) + aux}

    def _weighted(self, terms: dict[str, Tensor]) -> Tensor:
        return sum(getattr(self.weights, name) * value for name, value in terms.items())

    def _layer_terms(
        self,
        outputs: DecoderOutput,
        targets: PromptTargets,
        low_res_truth: Tensor,
        classifier: Classifier | None,
        texts: dict[str, tuple[Tensor | None, Tensor | None, str]],
    ) -> dict[str, Tensor]:
        matches = self.matcher(outputs, targets)
        if len(matches) == 0:
            # Keeps every output in the graph so backward works on batches without targets.
            kept = [t for t in (outputs.mask_logits, outputs.iou_scores, outputs.boxes, outputs.rank_scores)
                    if t is not None]
            zero = sum(t.sum() for t in kept) * 0.0
            names = ("bce", "dice", "iou", "box_l1", "giou") + (("rank",) if self._ranks(outputs) else ())
            return {name: zero for name in names}
        logits = outputs.mask_logits.flatten(0, 1)[matches.prompt, matches.pred]
        terms = self._mask_terms(logits, targets, matches)
        ious = _target_ious(outputs, targets, low_res_truth)
        terms["iou"] = self._iou_term(outputs, targets, matches, ious)
        if self._ranks(outputs):
            terms["rank"] = self._rank_term(outputs, targets, ious)
        terms.update(self._box_terms(outputs, targets, matches))
        for name, (text, classes, attribute) in texts.items():
            if text is not None and classes is not None:
                embeddings = getattr(outputs, attribute).flatten(0, 1)[matches.prompt, matches.pred]
                labels = classes.flatten(0, 1)[matches.prompt, matches.target]
                terms[name] = _class_term(classifier, embeddings, labels, text)
        return terms

    def _mask_terms(self, logits: Tensor, targets: PromptTargets, matches: MatchIndices) -> dict[str, Tensor]:
        points = uncertain_points(
            logits,
            num_points=self.num_points,
            oversample_ratio=self.oversample_ratio,
            importance_sample_ratio=self.importance_sample_ratio,
        )
        pred = sample_logits(logits[:, None], points)[:, 0]
        truth = targets.sample_masks(matches.prompt, matches.target[:, None], points)[:, 0].to(pred.dtype)
        bce = F.binary_cross_entropy_with_logits(pred, truth, reduction="none").mean(1)
        prob = pred.sigmoid()
        dice = 1 - (2 * (prob * truth).sum(1) + 1) / (prob.sum(1) + truth.sum(1) + 1)
        return {"bce": bce.sum() / len(matches), "dice": dice.sum() / len(matches)}

    @staticmethod
    def _iou_term(outputs: DecoderOutput, targets: PromptTargets, matches: MatchIndices, ious: Tensor) -> Tensor:
        """MSE between the predicted IoU and the true IoU of the thresholded mask, detached as a fixed target.

        Matched outputs regress the IoU with their matched target. Every other output of a prompt with targets
        regresses its best IoU with any of them: left untrained, their scores drift high and win top-1 choices.
        """
        true_iou = ious.max(2).values
        true_iou[matches.prompt, matches.pred] = ious[matches.prompt, matches.pred, matches.target]
        scored = targets.valid.flatten(0, 1).any(1)
        scores = outputs.iou_scores.flatten(0, 1)[scored]
        return F.mse_loss(scores, true_iou[scored].to(scores.dtype))

    def _ranks(self, outputs: DecoderOutput) -> bool:
        return self.weights.rank > 0 and outputs.rank_scores is not None

    @staticmethod
    def _rank_term(outputs: DecoderOutput, targets: PromptTargets, ious: Tensor) -> Tensor:
        """`rank_loss` of the rank head's scores against each output's IoU with the prompt's own mask (slot 0).

        The IoU head learns every output's best IoU with any mask under the click, so it cannot tell which
        granularity a click meant; the rank head learns to put the prompt's own mask on top, as a user ranks.
        """
        scored = targets.valid.flatten(0, 1)[:, 0]
        return rank_loss(outputs.rank_scores.flatten(0, 1)[scored], ious[scored, :, 0])

    @staticmethod
    def _box_terms(outputs: DecoderOutput, targets: PromptTargets, matches: MatchIndices) -> dict[str, Tensor]:
        pred = outputs.boxes.flatten(0, 1)[matches.prompt, matches.pred]
        truth = targets.boxes.flatten(0, 1)[matches.prompt, matches.target].to(pred.dtype)
        giou = generalized_iou(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(truth))
        return {"box_l1": (pred - truth).abs().sum() / len(matches), "giou": (1 - giou).sum() / len(matches)}


@torch.no_grad()
def _target_ious(outputs: DecoderOutput, targets: PromptTargets, low_res_truth: Tensor) -> Tensor:
    """IoU [B * N, K, T] of each thresholded output mask with each target slot of its prompt; 0 for empty slots."""
    batch, prompts, _ = targets.indices.shape
    valid = targets.valid.flatten(0, 1)
    image_index = torch.arange(batch, device=valid.device).repeat_interleave(prompts)
    truth = low_res_truth[image_index[:, None], targets.indices.flatten(0, 1).clamp(min=0)]
    predicted = outputs.mask_logits.detach().flatten(0, 1) > 0
    intersection = torch.einsum("pkhw,pthw->pkt", predicted.float(), truth.float())
    areas = predicted.flatten(2).sum(2)[..., None] + truth.flatten(2).sum(2)[:, None]
    return (intersection / (areas - intersection).clamp(min=1)) * valid[:, None]


def rank_loss(scores: Tensor, ious: Tensor, *, rank_weight: float = 1.0) -> Tensor:
    """Squared error of scores [N, K] to IoUs [N, K], less `rank_weight` times the IoU expected under a sharp
    softmax of the scores: it rewards putting each row's best output on top. 0 for no rows."""
    if len(scores) == 0:
        return scores.sum() * 0.0
    expected_iou = (F.softmax(scores / RANK_TEMPERATURE, dim=-1) * ious).sum(-1).mean()
    return F.mse_loss(scores, ious) - rank_weight * expected_iou


def _class_term(classifier: Classifier, embeddings: Tensor, labels: Tensor, text: Tensor) -> Tensor:
    """Cross-entropy over the vocabulary on the matched pairs that have a label."""
    labelled = labels >= 0
    if labels.numel() and int(labels.max()) >= text.shape[0]:
        raise ValueError(f"a class id ({int(labels.max())}) is outside the {text.shape[0]}-name vocabulary")
    logits = classifier(embeddings[labelled], text)
    if not labelled.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels[labelled], reduction="sum") / int(labelled.sum())


def downsample_masks(masks: Tensor, size: torch.Size) -> Tensor:
    """Area-averages [B, M, H, W] bool masks to the prediction size and thresholds at one half."""
    height, width = masks.shape[-2:]
    factor_h, factor_w = height // size[0], width // size[1]
    if factor_h * size[0] != height or factor_w * size[1] != width:
        raise ValueError(
            f"ground-truth masks ({height}x{width}) are not a whole multiple of the predicted masks "
            f"({size[0]}x{size[1]}); targets must be built for the same padded input as the predictions"
        )
    blocks = masks.view(torch.uint8).view(*masks.shape[:2], size[0], factor_h, size[1], factor_w)
    return blocks.sum((3, 5), dtype=torch.int32) * 2 > factor_h * factor_w

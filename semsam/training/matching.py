"""Per-prompt Hungarian matching between a prompt's K granularity outputs and its ground-truth masks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from semsam.data.prompts import PromptTargets
from semsam.modeling.prompt_head import DecoderOutput
from semsam.training.box_ops import cxcywh_to_xyxy, generalized_iou
from semsam.training.point_sampling import sample_logits


@dataclass(frozen=True)
class MatchCosts:
    """Weights of the matching cost terms (the official many-to-many recipe)."""

    bce: float = 5.0
    dice: float = 5.0
    box_l1: float = 5.0
    giou: float = 2.0


@dataclass
class MatchIndices:
    """Matched (prediction, target) pairs, one row per pair."""

    prompt: Tensor  # [Q] long, flat prompt index into B * N
    pred: Tensor  # [Q] long, output index into K
    target: Tensor  # [Q] long, target slot into T

    def __len__(self) -> int:
        return int(self.prompt.numel())


class HungarianMatcher:
    """Assigns each valid target of a prompt to one of the prompt's K outputs at the lowest total cost.

    A prompt with T' valid targets gets min(K, T') pairs; outputs left unmatched get no mask loss.
    """

    def __init__(self, *, costs: MatchCosts = MatchCosts(), num_points: int = 12544) -> None:
        """Args:
        costs: weights of the cost terms.
        num_points: uniform random points per prompt for the mask costs, shared by all its pairs.
        """
        if num_points < 1:
            raise ValueError(f"num_points must be positive, got {num_points}")
        self.costs = costs
        self.num_points = num_points

    @torch.no_grad()
    def cost_matrix(self, outputs: DecoderOutput, targets: PromptTargets) -> Tensor:
        """Matching costs of every output against every target slot of its prompt.

        Args:
            outputs: one decoder layer's predictions.
            targets: the prompts' ground truth.

        Returns:
            [B * N, K, T] float; meaningless (but finite) for invalid target slots.
        """
        logits = outputs.mask_logits.flatten(0, 1).float()
        batch, prompts, slots = targets.indices.shape
        count = batch * prompts
        if logits.shape[0] != count:
            raise ValueError(
                f"predictions are for {logits.shape[0]} prompts but targets for {count}; pass the targets "
                "built for the same PromptBatch"
            )
        points = torch.rand(count, self.num_points, 2, device=logits.device)
        pred = sample_logits(logits, points)
        prompt_index = torch.arange(count, device=logits.device)
        truth = targets.sample_masks(prompt_index, torch.arange(slots, device=logits.device).expand(count, -1), points)
        # Mean BCE over points, using softplus(-x) = softplus(x) - x to need one product instead of two.
        bce = (F.softplus(pred).sum(-1)[:, :, None] - torch.einsum("qkp,qtp->qkt", pred, truth)) / self.num_points
        prob = pred.sigmoid()
        overlap = torch.einsum("qkp,qtp->qkt", prob, truth)
        dice = 1 - (2 * overlap + 1) / (prob.sum(-1)[:, :, None] + truth.sum(-1)[:, None, :] + 1)
        pred_boxes = outputs.boxes.flatten(0, 1).float()
        target_boxes = targets.boxes.flatten(0, 1).float()
        box_l1 = (pred_boxes[:, :, None] - target_boxes[:, None]).abs().sum(-1)
        giou = generalized_iou(cxcywh_to_xyxy(pred_boxes)[:, :, None], cxcywh_to_xyxy(target_boxes)[:, None])
        c = self.costs
        return c.bce * bce + c.dice * dice + c.box_l1 * box_l1 - c.giou * giou

    def __call__(self, outputs: DecoderOutput, targets: PromptTargets) -> MatchIndices:
        """Matches every prompt independently.

        Returns:
            The matched pairs, ordered by prompt.
        """
        costs = self.cost_matrix(outputs, targets).cpu().numpy()
        valid = targets.valid.flatten(0, 1).cpu().numpy()
        prompts, preds, slots = [], [], []
        for prompt in np.flatnonzero(valid.any(1)):
            columns = np.flatnonzero(valid[prompt])
            rows, picked = linear_sum_assignment(costs[prompt][:, columns])
            prompts.append(np.full(len(rows), prompt))
            preds.append(rows)
            slots.append(columns[picked])
        device = outputs.mask_logits.device
        return MatchIndices(
            prompt=_long_tensor(prompts, device), pred=_long_tensor(preds, device), target=_long_tensor(slots, device)
        )


def _long_tensor(parts: list[np.ndarray], device: torch.device) -> Tensor:
    return torch.as_tensor(np.concatenate(parts) if parts else np.zeros(0), dtype=torch.long, device=device)

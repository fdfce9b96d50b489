"""Simulated corrective clicks during training (RITM, SAM): the model's own errors become its next prompts."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import Tensor

from semsam.clicks import corrective_click
from semsam.data.prompts import PromptTargets
from semsam.modeling import DecoderOutput, PromptBatch


def single_targets(
    targets: PromptTargets, generator: torch.Generator, *, copies: int = 1
) -> tuple[PromptTargets, Tensor]:
    """Keeps one random target per prompt (the object a simulated user wants) in slots 0..copies-1.

    With `copies` equal to the number of outputs, matching gives every output the same target, so all of a
    corrected prompt's outputs learn to follow its clicks instead of the one that happens to match.

    Returns:
        The narrowed targets and the [B, N] bool of prompts that have a target.
    """
    valid = targets.valid
    weights = valid.flatten(0, 1).float()
    has_target = valid.any(-1)
    weights[~has_target.flatten()] = 1.0
    slot = torch.multinomial(weights.cpu(), 1, generator=generator).view(valid.shape[:2]).to(valid.device)
    slots = max(valid.shape[2], copies)

    def keep(tensor: Tensor | None, empty: float) -> Tensor | None:
        if tensor is None:
            return None
        index = slot.view(*slot.shape, 1, *[1] * (tensor.dim() - 3)).expand(-1, -1, 1, *tensor.shape[3:])
        narrowed = tensor.new_full((*tensor.shape[:2], slots, *tensor.shape[3:]), empty)
        narrowed[:, :, :copies] = tensor.gather(2, index)
        return narrowed

    narrowed = replace(targets, indices=keep(targets.indices, -1), boxes=keep(targets.boxes, 0.0),
                       object_classes=keep(targets.object_classes, -1), part_classes=keep(targets.part_classes, -1))
    return narrowed, has_target


def feed_back_best(prompts: PromptBatch, output: DecoderOutput) -> PromptBatch:
    """The prompts with each one's highest-scored predicted mask as its mask input, as a user would refine."""
    best = output.iou_scores.argmax(-1)
    index = best[..., None, None, None].expand(-1, -1, 1, *output.mask_logits.shape[-2:])
    logits = output.mask_logits.gather(2, index).squeeze(2).float()
    valid = torch.ones(logits.shape[:2], dtype=torch.bool, device=logits.device)
    return replace(prompts, mask_inputs=logits, mask_valid=valid)


def add_corrective_clicks(
    prompts: PromptBatch, output: DecoderOutput, truth: Tensor, has_target: Tensor
) -> PromptBatch:
    """One round of the protocol: each prompt's highest-scored mask is fed back as its mask input, and a click
    goes to the interior-most pixel of its larger error (positive in a miss, negative in an excess).

    Args:
        prompts: the prompts that produced `output`.
        output: predictions without gradients.
        truth: [B, N, h, w] bool, each prompt's target at the predictions' resolution.
        has_target: [B, N] bool; prompts without a target get no click.

    Returns:
        The prompts with their mask inputs set and one more click slot.
    """
    prompts = feed_back_best(prompts, output)
    predicted = (prompts.mask_inputs > 0).cpu().numpy()
    wanted, active = truth.cpu().numpy(), has_target.cpu().numpy()
    height, width = predicted.shape[-2:]
    batch, count = predicted.shape[:2]
    clicks = np.zeros((batch, count, 2), np.float32)
    labels = np.full((batch, count), -1, np.int64)
    for b, n in zip(*np.nonzero(active)):
        click = corrective_click(predicted[b, n], wanted[b, n])
        if click is not None:
            clicks[b, n] = ((click.col + 0.5) / width, (click.row + 0.5) / height)
            labels[b, n] = int(click.positive)
    device = prompts.points.device
    return replace(
        prompts,
        points=torch.cat([prompts.points, torch.from_numpy(clicks)[:, :, None].to(device)], 2),
        point_labels=torch.cat([prompts.point_labels, torch.from_numpy(labels)[:, :, None].to(device)], 2),
    )

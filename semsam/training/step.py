"""One training forward pass, from a prepared batch to the losses, as a module that DistributedDataParallel can wrap."""

from __future__ import annotations

import contextlib
from dataclasses import fields, is_dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from semsam.data.prompts import PromptTargets
from semsam.modeling import DecoderOutput, PromptBatch, SemanticSam
from semsam.training.corrections import add_corrective_clicks, feed_back_best, single_targets
from semsam.training.losses import MultiChoiceLoss, downsample_masks

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision to train in; "auto" means fp16 on CUDA and bf16 on CPU.

    bf16 autocast is the CPU default because it measured faster: semsam_tiny at 384 px, batch 2, one thread on
    the project's AMD EPYC (avx512_bf16), 1.60-1.66 CPU seconds per step against 2.02-2.29 in fp32
    (benchmarks/train_step_precision.py). On a CPU without native bf16, set precision = "fp32".

    Raises:
        ValueError: an unknown name, or fp16 on a CPU (no fast fp16 kernels there: use bf16).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is unknown; use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "bf16"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision 'fp16' needs a CUDA device; on a CPU use 'bf16' or 'fp32'")
    return precision


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed-precision autocast for a resolved precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(value: Any, device: torch.device) -> Any:
    """Moves every tensor of a batch dataclass (PromptBatch, PromptTargets) to `device`."""
    if isinstance(value, Tensor):
        return value.to(device, non_blocking=True)
    if is_dataclass(value):
        return replace(value, **{f.name: to_device(getattr(value, f.name), device) for f in fields(value)})
    return value


def _to_float(output: DecoderOutput) -> DecoderOutput:
    """Predictions in fp32, so that the losses are computed in full precision under autocast."""
    values = {f.name: getattr(output, f.name) for f in fields(output) if f.name != "aux"}
    tensors = {name: None if value is None else value.float() for name, value in values.items()}
    return DecoderOutput(**tensors, aux=[_to_float(layer) for layer in output.aux])


class TrainingForward(nn.Module):
    """Model plus loss: everything that touches parameters happens in `forward`, as DDP needs.

    Args:
        model: the model being trained.
        criterion: the multi-choice loss.
        object_text, part_text: [V, text_dim] embeddings of the training vocabulary, or None without labels.
        precision: a resolved precision ("fp32", "bf16" or "fp16"); the model runs under autocast, the loss in fp32.
        correct_all_outputs: after simulated corrections, supervise every output with the prompt's target, as SAM
            supervises its single refinement output; otherwise only the output matched to it.
    """

    def __init__(
        self,
        *,
        model: SemanticSam,
        criterion: MultiChoiceLoss,
        object_text: Tensor | None,
        part_text: Tensor | None,
        precision: str,
        correct_all_outputs: bool = False,
    ) -> None:
        super().__init__()
        self.correct_all_outputs = correct_all_outputs
        self.model = model
        self.criterion = criterion
        self.object_text = object_text
        self.part_text = part_text
        self.precision = precision

    def forward(
        self, images: Tensor, prompts: PromptBatch, targets: PromptTargets, feed_back_masks: bool, corrections: int = 0
    ) -> dict[str, Tensor]:
        """Losses of one batch.

        Args:
            feed_back_masks: first predict without gradients and feed the best masks back as mask inputs.
            corrections: simulate this many rounds of corrective clicks first, each feeding back the best mask
                and clicking on its larger error with respect to one target per prompt, which the loss then
                supervises alone (overrides `feed_back_masks`).
        """
        device = self.model.device
        with autocast(self.precision, device):
            features = self.model.encode_image(self.model.preprocess(images))
            if corrections:
                prompts, targets = self._corrected(features, prompts, targets, corrections)
            elif feed_back_masks:
                prompts = self._with_mask_prompts(features, prompts)
            output = self.model.decode(features, prompts, with_aux=True)
        labelled = self.object_text is not None or self.part_text is not None
        return self.criterion(
            _to_float(output), targets,
            classifier=self.model.sem_seg_head.predictor.classify if labelled else None,
            object_text=self.object_text, part_text=self.part_text,
        )

    def _corrected(
        self, features: Any, prompts: PromptBatch, targets: PromptTargets, rounds: int
    ) -> tuple[PromptBatch, PromptTargets]:
        """Prompts after `rounds` simulated corrections toward one random target each, and those targets."""
        generator = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        copies = self.model.sem_seg_head.predictor.num_granularities if self.correct_all_outputs else 1
        targets, has_target = single_targets(targets, generator, copies=copies)
        size = features.mask_features.shape[-2:]
        low_res = downsample_masks(targets.gt_masks, size)
        image_index = torch.arange(low_res.shape[0], device=low_res.device)[:, None]
        truth = low_res[image_index, targets.indices[..., 0].clamp(min=0)]
        for _ in range(rounds):
            with torch.no_grad():
                output: DecoderOutput = self.model.decode(features, prompts)
            prompts = add_corrective_clicks(prompts, output, truth, has_target)
        return prompts, targets

    def _with_mask_prompts(self, features: Any, prompts: PromptBatch) -> PromptBatch:
        """Feeds each prompt's highest-scored earlier prediction back as a mask input, as a user would."""
        with torch.no_grad():
            first: DecoderOutput = self.model.decode(features, prompts)
        return feed_back_best(prompts, first)

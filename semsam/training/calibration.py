"""Fitting the rank head on clicks (`semsam calibrate-iou`): a second IoU head that learns to score each output by
its IoU with the segment a click was meant for.

Training teaches the IoU head, for an output matched to no target, its best IoU with any segment at the click, so
every output that fits some segment scores high, the coarse ones, which fit a whole person or scene region, highest.
The top-scored mask then often misses what was clicked. The rank head has the IoU head's shape and input (the
decoder's frozen output tokens) and is fitted afresh: squared error to each output's IoU with the clicked segment,
plus a ranking term (the IoU expected under a sharp softmax of the scores) that rewards putting the best output on
top. Its scores rank one prompt's masks; the trained head's, a better gate for proposals (docs/evaluation.md, text
prompts), still filter segment everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from semsam.data.records import SegmentationDataset
from semsam.evaluation.click import click_targets, mask_ious
from semsam.prediction import Prompt
from semsam.predictor import Predictor
from semsam.training.losses import rank_loss

HOLDOUT_FRACTION = 0.15


@dataclass(frozen=True)
class HeadSamples:
    """Per click target of one data set: the IoU head's input `hidden` [N, K, D], each output's IoU [N, K] with the
    segment, and the index [N] of the image clicked."""

    hidden: np.ndarray
    ious: np.ndarray
    images: np.ndarray

    def top1_miou(self, scores: np.ndarray) -> float:
        """Mean IoU of the top-scored output under `scores` [N, K]; nan when there are no clicks."""
        if len(self.ious) == 0:
            return float("nan")
        return float(self.ious[np.arange(len(self.ious)), scores.argmax(1)].mean())

    def split(self, fraction: float) -> tuple[HeadSamples, HeadSamples]:
        """(fit, held out): the clicks of the last images clicked, about `fraction` of all, are held out; an image's
        clicks stay together."""
        cut = np.quantile(self.images, 1.0 - fraction) if len(self.images) else 0
        held = self.images > cut if len(np.unique(self.images)) > 1 else np.zeros(len(self.images), bool)
        return self._take(~held), self._take(held)

    def _take(self, keep: np.ndarray) -> HeadSamples:
        return HeadSamples(hidden=self.hidden[keep], ious=self.ious[keep], images=self.images[keep])


@dataclass(frozen=True)
class HeadFit:
    """The fit's report per data set: top-1 mIoU of the held-out clicks before and after (nan for a data set
    without clicks), and the steps after which the kept weights were taken."""

    before: list[float]
    after: list[float]
    steps: int


def collect_head_samples(
    predictor: Predictor, dataset: SegmentationDataset, *, max_images: int | None = None, progress: bool = True
) -> HeadSamples:
    """Clicks every segment covering >= 0.5% of its image at its interior-most pixel, as `semsam eval click` does,
    recording what the IoU head sees.

    Args:
        predictor: wraps a Semantic-SAM model.
        dataset: images with their segments.
        max_images: read only the first N images.
        progress: show a progress bar.
    """
    # The rank head sees what the trained IoU head sees, and every Semantic-SAM model has the latter.
    head = predictor.model.sem_seg_head.predictor.iou_prediction_head
    seen: list[Tensor] = []
    hook = head.register_forward_pre_hook(lambda _module, inputs: seen.append(inputs[0].detach()))
    hidden, ious, images = [], [], []
    try:
        count = len(dataset) if max_images is None else min(max_images, len(dataset))
        for index in tqdm(range(count), desc="clicking", unit="image", disable=not progress):
            record = dataset[index]
            targets = click_targets(record.masks)
            if not targets:
                continue
            predictor.set_image(record.image)
            for target, (x, y) in targets:
                seen.clear()
                output = predictor.predict_low_res([Prompt(points=[(x, y)], labels=[1])])
                masks = (predictor.upsample_logits(output.logits[0]) > 0).cpu().numpy()
                hidden.append(seen[-1][0, 0].float().cpu().numpy())
                ious.append(mask_ious(masks, record.masks[target]))
                images.append(index)
    finally:
        hook.remove()
    width, dim = predictor.model.num_granularities, head.layers[0].in_features
    return HeadSamples(hidden=np.array(hidden, np.float32).reshape(-1, width, dim),
                       ious=np.array(ious, np.float32).reshape(-1, width), images=np.array(images, np.int64))


def rank_head(model: nn.Module) -> nn.Module:
    """The rank head of a Semantic-SAM model.

    Raises:
        ValueError: the model has none (`semsam.build.load_with_rank_head` adds one).
    """
    head = model.sem_seg_head.predictor.rank_head
    if head is None:
        raise ValueError("this model has no rank head: load it with semsam.build.load_with_rank_head to add one")
    return head


def fit_rank_head(
    head: nn.Module,
    samples: Sequence[HeadSamples],
    *,
    epochs: int = 40,
    steps_per_epoch: int = 50,
    batch_size: int = 256,
    lr: float = 1e-3,
    rank_weight: float = 1.0,
    seed: int = 0,
) -> HeadFit:
    """Re-initialises `head` and fits it in place; keeps the weights of the epoch whose held-out clicks (those of
    each data set's last images, about 15% of its clicks; a data set of one image is checked on its own) have the
    best top-1 mIoU, averaged over data sets.

    Args:
        head: the rank head (`rank_head(model)`), an MLP from the decoder's output tokens to one score.
        samples: `collect_head_samples` of each data set.
        epochs: epochs of `steps_per_epoch` steps.
        batch_size: clicks drawn from every data set per step, so each weighs as much as any other however many
            clicks it has.
        lr: AdamW learning rate.
        rank_weight: weight of the ranking term (the IoU expected under a softmax of the scores) beside the squared
            error.
        seed: seeds the initialisation and the batches.

    Raises:
        ValueError: no data set has clicks.
    """
    if not any(len(s.ious) for s in samples):
        raise ValueError("no click targets to fit on: the data sets hold no segment covering >= 0.5% of an image")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    parts = [s.split(HOLDOUT_FRACTION) for s in samples]
    held = [h if len(h.ious) else f for f, h in parts]
    checked = [h for h in held if len(h.ious)]
    device = next(head.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    before = [h.top1_miou(_scores(head, h)) for h in held]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for layer in head.modules():
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
    fit = [(torch.from_numpy(f.hidden).to(device), torch.from_numpy(f.ious).to(device))
           for f, _ in parts if len(f.ious)]
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    best, best_state, best_epoch = -1.0, None, 0
    for epoch in range(1, epochs + 1):
        head.train()
        for _ in range(steps_per_epoch):
            loss = sum(_loss(head, hidden, ious, batch_size, rank_weight, generator) for hidden, ious in fit)
            optimizer.zero_grad()
            (loss / len(fit)).backward()
            optimizer.step()
        score = float(np.mean([h.top1_miou(_scores(head, h)) for h in checked]))
        if score > best:
            best, best_epoch = score, epoch
            best_state = {name: value.detach().clone() for name, value in head.state_dict().items()}
    head.load_state_dict(best_state)
    head.eval()
    return HeadFit(before=before, after=[h.top1_miou(_scores(head, h)) for h in held],
                   steps=best_epoch * steps_per_epoch)


def _loss(head: nn.Module, hidden: Tensor, ious: Tensor, batch_size: int, rank_weight: float,
          generator: torch.Generator) -> Tensor:
    pick = torch.randint(len(hidden), (batch_size,), generator=generator).to(hidden.device)
    return rank_loss(head(hidden[pick]).squeeze(-1), ious[pick], rank_weight=rank_weight)


@torch.no_grad()
def _scores(head: nn.Module, samples: HeadSamples) -> np.ndarray:
    head.eval()
    device = next(head.parameters()).device
    return head(torch.from_numpy(samples.hidden).to(device)).squeeze(-1).float().cpu().numpy()

"""Training batches: resized, padded images with simulated click, box and multi-click prompts and their targets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from semsam.data.augment import AugmentedImage, augment
from semsam.data.records import SegmentationRecord, mask_boxes
from semsam.modeling.prompt_head import PromptBatch


@dataclass(frozen=True)
class PromptSampling:
    """How training prompts are simulated.

    Args:
        box_fraction: share of prompts that are (jittered) boxes instead of clicks.
        multi_click_fraction: share of click prompts that get extra positive/negative clicks.
        max_extra_clicks: a multi-click prompt gets 1..max_extra_clicks extra clicks.
        max_targets: a prompt keeps at most this many targets (a random subset that includes the sampled mask).
        box_noise: each box side moves by up to this fraction of the box's width/height.
        click_size: width and height of a click's anchor box, as a fraction of the image (before padding).
        duplicate_iou: masks overlapping above this IoU after resizing count as one.
    """

    box_fraction: float = 0.2
    multi_click_fraction: float = 0.2
    max_extra_clicks: int = 2
    max_targets: int = 6
    box_noise: float = 0.1
    click_size: float = 0.005
    duplicate_iou: float = 0.95

    def __post_init__(self) -> None:
        for name in ("box_fraction", "multi_click_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"PromptSampling.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.max_targets < 1 or self.max_extra_clicks < 1:
            raise ValueError("PromptSampling.max_targets and max_extra_clicks must be at least 1")


@dataclass
class PromptTargets:
    """Ground truth of every prompt, as indices into the batch's masks to keep memory at O(masks), not O(prompts).

    Masks stay at the padded input resolution because the losses sample them at continuous point coordinates.
    """

    gt_masks: Tensor  # [B, M, Hp, Wp] bool, every mask of each image, padded with empty masks to a common M
    indices: Tensor  # [B, N, T] long into M, slot 0 the mask the prompt was made from; -1 where it has fewer
    boxes: Tensor  # [B, N, T, 4] (cx, cy, w, h) normalised to the padded input; 0 where invalid
    object_classes: Tensor | None = None  # [B, N, T] long, -1 for none; None when no record has object labels
    part_classes: Tensor | None = None  # [B, N, T] long, -1 for none; None when no record has part labels

    @property
    def valid(self) -> Tensor:
        """[B, N, T] bool: which target slots hold a target."""
        return self.indices >= 0

    def sample_masks(self, prompt_index: Tensor, target_index: Tensor, points: Tensor) -> Tensor:
        """Ground truth of some targets at normalised points (nearest pixel).

        Args:
            prompt_index: [Q] flat prompt indices into B * N.
            target_index: [Q, T'] target slots of each prompt (into T).
            points: [Q, P, 2] (x, y) in [0, 1] of the padded input.

        Returns:
            [Q, T', P] float, 1 inside the target; 0 for invalid slots.
        """
        batch, prompts = self.indices.shape[:2]
        num_masks, height, width = self.gt_masks.shape[1:]
        mask_index = self.indices.reshape(batch * prompts, -1)[prompt_index[:, None], target_index]
        image_index = torch.div(prompt_index, prompts, rounding_mode="floor")
        xs = (points[..., 0] * width).long().clamp(0, width - 1)
        ys = (points[..., 1] * height).long().clamp(0, height - 1)
        mask_start = (image_index[:, None] * num_masks + mask_index.clamp(min=0)) * (height * width)
        values = torch.take(self.gt_masks, mask_start[..., None] + (ys * width + xs)[:, None])
        return (values & (mask_index >= 0)[..., None]).float()


class TrainingBatch(NamedTuple):
    """Everything one training step needs; unpacks as `images, prompts, targets`."""

    images: Tensor  # [B, 3, Hp, Wp] float RGB 0..255, padded bottom/right
    prompts: PromptBatch
    targets: PromptTargets


@dataclass
class _ImagePrompts:
    """One image's simulated prompts, in pixels of the resized image."""

    anchors: np.ndarray  # [N, 4] (cx, cy, w, h); a click is its pixel's centre with w = h = 0
    is_box: np.ndarray  # [N] bool
    extra_clicks: list[np.ndarray]  # per prompt [E, 3] (x, y, label) with (x, y) a pixel's centre
    targets: list[np.ndarray]  # per prompt the indices of its target masks


def prepare_batch(
    records: list[SegmentationRecord],
    *,
    image_size: int,
    size_divisibility: int,
    prompts_per_image: int,
    rng: np.random.Generator,
    sampling: PromptSampling = PromptSampling(),
    flip: bool = False,
    scale_range: tuple[float, float] | None = None,
    pad_value: float | tuple[float, float, float] = 0.0,
) -> TrainingBatch:
    """Resizes, augments and pads records, and simulates prompts with their targets.

    Args:
        records: the images of the batch.
        image_size: the longest side after resizing (before scale jitter).
        size_divisibility: padded height and width are multiples of this.
        prompts_per_image: N, the number of prompts per image.
        rng: the source of all randomness, for reproducible batches.
        sampling: prompt simulation settings.
        flip: flip each image horizontally with probability 0.5.
        scale_range: (low, high) scale jitter on the longest side; images larger than `image_size` are then
            randomly cropped to `image_size` x `image_size`.
        pad_value: pixel value of the padding; pass the model's pixel mean for padding that normalises to 0
            like the model's own `preprocess` padding at inference.

    Returns:
        The batch, with prompt coordinates normalised to the padded input (x / Wp, y / Hp).
    """
    if not records:
        raise ValueError("prepare_batch needs at least one record")
    if image_size < 1 or size_divisibility < 1 or prompts_per_image < 1:
        raise ValueError(
            f"image_size ({image_size}), size_divisibility ({size_divisibility}) and prompts_per_image "
            f"({prompts_per_image}) must all be positive"
        )
    views = [
        augment(record, image_size=image_size, rng=rng, flip=flip, scale_range=scale_range,
                duplicate_iou=sampling.duplicate_iou)
        for record in records
    ]
    height = -(-max(v.image.shape[0] for v in views) // size_divisibility) * size_divisibility
    width = -(-max(v.image.shape[1] for v in views) // size_divisibility) * size_divisibility
    simulated = [_simulate_prompts(v.masks, count=prompts_per_image, sampling=sampling, rng=rng) for v in views]
    return TrainingBatch(
        images=_pad_images(views, height, width, pad_value),
        prompts=_prompt_batch(simulated, [v.image.shape[:2] for v in views], height, width, sampling.click_size),
        targets=_targets(views, simulated, height, width),
    )


def _simulate_prompts(
    masks: np.ndarray, *, count: int, sampling: PromptSampling, rng: np.random.Generator
) -> _ImagePrompts:
    """Samples `count` prompts on one image's masks.

    Masks are sampled uniformly (not by area) so small parts get as many prompts as large regions. A click's
    targets are all masks under it; a box's target is its mask; extra clicks keep only the masks that contain
    every positive click and no negative one.

    Args:
        masks: [M, H, W] bool, without near-duplicates.
        count: number of prompts.
        sampling: simulation settings.
        rng: randomness.

    Returns:
        The prompts in pixel coordinates of the image.
    """
    num, height, width = masks.shape
    anchors = np.zeros((count, 4))
    extra: list[np.ndarray] = [np.zeros((0, 3))] * count
    if num == 0:
        anchors[:, :2] = (width / 2, height / 2)
        return _ImagePrompts(anchors, np.zeros(count, bool), extra, [np.zeros(0, np.int64)] * count)
    chosen = rng.integers(num, size=count)
    is_box = rng.random(count) < sampling.box_fraction
    targets: list[np.ndarray] = [np.zeros(0, np.int64)] * count
    boxes = mask_boxes(masks).astype(np.float64)
    for i in np.flatnonzero(is_box):
        anchors[i] = _jittered_box(boxes[chosen[i]], sampling.box_noise, height, width, rng)
        targets[i] = chosen[i : i + 1]
    clicks = np.flatnonzero(~is_box)
    ys, xs = _random_pixels(masks, chosen[clicks], rng)
    anchors[clicks, 0], anchors[clicks, 1] = xs + 0.5, ys + 0.5
    under_click = masks[:, ys, xs].T
    multi = rng.random(len(clicks)) < sampling.multi_click_fraction
    for j, i in enumerate(clicks):
        consistent = under_click[j]
        if multi[j]:
            pixels = _extra_clicks(masks, chosen[i], consistent, sampling.max_extra_clicks, rng)
            consistent = consistent & (masks[:, pixels[:, 1], pixels[:, 0]] == (pixels[:, 2] == 1)).all(1)
            extra[i] = pixels + [0.5, 0.5, 0.0]
        targets[i] = _limit_targets(np.flatnonzero(consistent), chosen[i], sampling.max_targets, rng)
    return _ImagePrompts(anchors, is_box, extra, targets)


def _random_pixels(masks: np.ndarray, which: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A uniform random pixel (row, column) of each listed mask."""
    width = masks.shape[2]
    flat = np.zeros(len(which), np.int64)
    for mask_index in np.unique(which):
        slots = np.flatnonzero(which == mask_index)
        flat[slots] = rng.choice(np.flatnonzero(masks[mask_index]), size=len(slots))
    return flat // width, flat % width


def _jittered_box(box: np.ndarray, noise: float, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A mask's box with every side moved by up to `noise` of its size, as (cx, cy, w, h) pixels."""
    x0, y0, x1, y1 = box
    scale = np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0])
    x0, y0, x1, y1 = box + rng.uniform(-noise, noise, size=4) * scale
    x0, x1 = np.clip(x0, 0, width - 1), np.clip(x1, 1, width)
    y0, y1 = np.clip(y0, 0, height - 1), np.clip(y1, 1, height)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0])


def _extra_clicks(
    masks: np.ndarray, chosen: int, under_click: np.ndarray, max_clicks: int, rng: np.random.Generator
) -> np.ndarray:
    """1..max_clicks clicks that single out `chosen`: positives inside it, negatives outside it.

    Negatives go preferably inside a larger mask that also holds the first click, since that is the ambiguity
    a negative click is for.

    Returns:
        [E, 3] int64 (column, row, label) with label 1 positive, 0 negative.
    """
    inside = masks[chosen]
    outside = masks[under_click].any(0) & ~inside
    if not outside.any():
        outside = ~inside
    clicks = []
    for _ in range(rng.integers(1, max_clicks + 1)):
        positive = rng.random() < 0.5 or not outside.any()
        region = inside if positive else outside
        flat = rng.choice(np.flatnonzero(region))
        clicks.append((flat % masks.shape[2], flat // masks.shape[2], int(positive)))
    return np.array(clicks, dtype=np.int64)


def _limit_targets(candidates: np.ndarray, chosen: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    """At most `limit` of the candidates, the sampled mask first: it is the prompt's own target."""
    others = candidates[candidates != chosen]
    if len(others) >= limit:
        others = rng.choice(others, size=limit - 1, replace=False)
    return np.concatenate([[chosen], others]).astype(np.int64)


def _pad_images(
    views: list[AugmentedImage], height: int, width: int, pad_value: float | tuple[float, float, float]
) -> Tensor:
    images = torch.empty(len(views), 3, height, width)
    images[:] = torch.as_tensor(pad_value, dtype=torch.float32).reshape(-1, 1, 1)
    for i, view in enumerate(views):
        h, w = view.image.shape[:2]
        images[i, :, :h, :w] = torch.from_numpy(view.image).permute(2, 0, 1)
    return images


def _prompt_batch(
    simulated: list[_ImagePrompts], sizes: list[tuple[int, int]], height: int, width: int, click_size: float
) -> PromptBatch:
    count = len(simulated[0].anchors)
    num_points = max(len(e) for s in simulated for e in s.extra_clicks)
    scale = np.array([width, height, width, height], dtype=np.float64)
    anchors = np.stack([s.anchors for s in simulated]) / scale
    is_box = np.stack([s.is_box for s in simulated])
    # A click's size is a fraction of its image, as at inference: its anchor shrinks with the padding.
    click_wh = click_size * np.array([(w / width, h / height) for h, w in sizes])[:, None]
    anchors[..., 2:] = np.where(is_box[..., None], anchors[..., 2:], click_wh)
    points = np.zeros((len(simulated), count, num_points, 2))
    labels = np.full((len(simulated), count, num_points), -1, dtype=np.int64)
    for b, image_prompts in enumerate(simulated):
        for n, clicks in enumerate(image_prompts.extra_clicks):
            points[b, n, : len(clicks)] = clicks[:, :2] / scale[:2]
            labels[b, n, : len(clicks)] = clicks[:, 2]
    return PromptBatch(
        anchors=torch.from_numpy(anchors).float(),
        anchor_is_box=torch.from_numpy(is_box),
        points=torch.from_numpy(points).float(),
        point_labels=torch.from_numpy(labels),
    )


def _targets(views: list[AugmentedImage], simulated: list[_ImagePrompts], height: int, width: int) -> PromptTargets:
    batch, count = len(views), len(simulated[0].anchors)
    slots = max(1, max(len(t) for s in simulated for t in s.targets))
    # At least one (empty) mask slot, so that a batch where no image has a mask left still gathers its targets.
    num_masks = max(1, max(len(v.masks) for v in views))
    # np.zeros leaves untouched pages to the OS's zero pages, which is much faster than torch.zeros at this size.
    masks = torch.from_numpy(np.zeros((batch, num_masks, height, width), dtype=bool))
    mask_boxes_xyxy = np.zeros((batch, num_masks, 4))
    indices = torch.full((batch, count, slots), -1, dtype=torch.long)
    for b, (view, image_prompts) in enumerate(zip(views, simulated)):
        masks[b, : len(view.masks), : view.masks.shape[1], : view.masks.shape[2]] = torch.from_numpy(view.masks)
        mask_boxes_xyxy[b, : len(view.masks)] = mask_boxes(view.masks) / [width, height, width, height]
        for n, target in enumerate(image_prompts.targets):
            indices[b, n, : len(target)] = torch.from_numpy(target)
    valid = indices >= 0
    gather_index = indices.clamp(min=0)
    x0, y0, x1, y1 = torch.from_numpy(mask_boxes_xyxy).float().unbind(-1)
    image_boxes = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], -1)
    boxes = image_boxes[torch.arange(batch)[:, None, None], gather_index] * valid[..., None]
    return PromptTargets(
        gt_masks=masks,
        indices=indices,
        boxes=boxes,
        object_classes=_class_targets([v.object_classes for v in views], gather_index, valid),
        part_classes=_class_targets([v.part_classes for v in views], gather_index, valid),
    )


def _class_targets(classes: list[list[int | None] | None], gather_index: Tensor, valid: Tensor) -> Tensor | None:
    """Per target slot the class id of its mask, -1 for unlabelled masks and empty slots."""
    if all(c is None for c in classes):
        return None
    table = torch.full((len(classes), int(gather_index.max()) + 1), -1, dtype=torch.long)
    for b, image_classes in enumerate(classes):
        for m, class_id in enumerate(image_classes or []):
            if class_id is not None and m < table.shape[1]:
                table[b, m] = class_id
    ids = torch.gather(table, 1, gather_index.flatten(1)).view_as(gather_index)
    return torch.where(valid, ids, -1)

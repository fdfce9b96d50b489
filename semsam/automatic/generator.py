"""Segment everything: prompt a grid of points, keep good masks per granularity level, link them into a tree."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from semsam.automatic.grid import crop_boxes, point_grid
from semsam.automatic.hierarchy import CONTAINMENT_THRESHOLD, GeneratedMask, link_tree
from semsam.automatic.masks import (
    encode_rle, grouped_nms, mask_areas, mask_boxes, remove_small_regions, stability_scores,
)
from semsam.image import as_rgb_uint8
from semsam.io import rle_to_mask
from semsam.prediction import MaskLabel, Prompt
from semsam.predictor import Predictor

OUTPUT_MODES = ("binary_mask", "coco_rle")
# Grid and filters chosen for the embedded model (SAM's are 32, 0.88 and 0.95); the command line shares them.
DEFAULT_POINTS_PER_SIDE = 32
DEFAULT_PRED_IOU_THRESH = 0.4
DEFAULT_STABILITY_THRESH = 0.3
# Masks whose box comes this close (pixels) to a crop's inner edge are cut by the crop: left to other crops.
CROP_EDGE_MARGIN = 20.0
# Boxes from low-res masks are off by up to a low-res pixel (5 px for semsam_tiny on BSDS500), so the first NMS
# on them drops only near-duplicates (box IoU > threshold + this); the NMS on exact boxes decides the rest.
LOW_RES_NMS_MARGIN = 0.2


@dataclass
class _Candidates:
    """Masks kept so far, with everything needed to rank them and build the result."""

    rles: list[dict]
    boxes: torch.Tensor  # [M, 4] x0, y0, x1, y1 in original pixels
    areas: torch.Tensor  # [M]
    scores: torch.Tensor  # [M] predicted IoU
    stability: torch.Tensor  # [M]
    levels: torch.Tensor  # [M]
    points: torch.Tensor  # [M, 2] prompt (x, y) in original pixels
    crop_boxes: torch.Tensor  # [M, 4] x0, y0, x1, y1
    labels: list[MaskLabel | None]
    label_probabilities: list[tuple[np.ndarray, np.ndarray] | None]  # object and part probabilities per mask

    def select(self, index: torch.Tensor) -> _Candidates:
        keep = index.tolist()
        return _Candidates(
            rles=[self.rles[i] for i in keep], boxes=self.boxes[index], areas=self.areas[index],
            scores=self.scores[index], stability=self.stability[index], levels=self.levels[index],
            points=self.points[index], crop_boxes=self.crop_boxes[index], labels=[self.labels[i] for i in keep],
            label_probabilities=[self.label_probabilities[i] for i in keep],
        )

    @staticmethod
    def concat(parts: list[_Candidates]) -> _Candidates:
        return _Candidates(
            rles=[r for p in parts for r in p.rles], boxes=torch.cat([p.boxes for p in parts]),
            areas=torch.cat([p.areas for p in parts]), scores=torch.cat([p.scores for p in parts]),
            stability=torch.cat([p.stability for p in parts]), levels=torch.cat([p.levels for p in parts]),
            points=torch.cat([p.points for p in parts]), crop_boxes=torch.cat([p.crop_boxes for p in parts]),
            labels=[label for p in parts for label in p.labels],
            label_probabilities=[probabilities for p in parts for probabilities in p.label_probabilities],
        )


class MaskGenerator:
    """Masks for everything in an image at chosen granularity levels, with a whole/part tree.

    Levels are named by measured size: for every prompt the model's K masks are sorted by area, finest first,
    so level 1 is a prompt's smallest mask and level K its largest. Filters and NMS run per level, so a part and
    the whole it belongs to never suppress each other. Masks are judged on the model's low-resolution logits:
    predicted IoU, stability, and boxes for a first NMS that drops near-duplicates; only its survivors are
    upsampled to original pixels, where the NMS on their exact boxes decides the rest.

    With `match_sam`, the mask set is that of SAM's `SamAutomaticMaskGenerator`: one box NMS over all levels of
    a crop, on its inclusive-end boxes, and stability judged on logits upsampled to original pixels (slower: every
    mask that passes the predicted-IoU filter is upsampled, as the reference upsamples every mask). Levels are
    still reported, and a predicted-IoU threshold of 0 or less turns that filter off, as in SAM. Both modes keep
    masks with predicted IoU > its threshold and stability >= its threshold, as the reference does.

    The default thresholds suit the embedded default model, whose predicted IoUs (its trained head's, not the rank
    head's) are modest and whose logits are soft; SAM's own defaults (0.88 and 0.95) suit SAM models.

    Args:
        model: a model that `semsam.Predictor` accepts.
        levels: which granularity levels to produce (1 = finest ... K = coarsest); None: all K of the model.
        points_per_side: the prompt grid is points_per_side x points_per_side on the whole image.
        points_per_batch: prompts decoded together; results do not depend on it, only speed and memory do.
        pred_iou_thresh: keep masks whose predicted IoU is above this.
        stability_score_thresh: keep masks whose stability score is at least this.
        stability_score_offset: logit offset of the stability score (area(> +offset) / area(> -offset)).
        box_nms_thresh: box IoU above which the lower-scored of two masks of the same level is dropped.
        crop_n_layers: also prompt 2^i x 2^i overlapping crops for i = 1..crop_n_layers (finer masks).
        crop_nms_thresh: box IoU for removing duplicates between crops (the mask from the smaller crop wins).
        crop_overlap_ratio: overlap of neighbouring crops at layer 1, as a fraction of the shorter image side.
        crop_n_points_downscale_factor: layer i is prompted with points_per_side / factor**i points per side.
        min_mask_region_area: fill holes and remove islands smaller than this many pixels (0: off).
        output_mode: "binary_mask" (HxW bool arrays) or "coco_rle" (COCO RLE dicts, counts as str).
        containment_threshold: mask B contains mask A when area(A & B) >= this * area(A) (for the tree).
        match_sam: reproduce SAM's mask set (see above) instead of suppressing per level.
        objects: object vocabulary for labels, as for `Predictor`.
        parts: part vocabulary for labels, as for `Predictor`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        levels: Sequence[int] | None = (1, 2, 3, 4, 5, 6),
        points_per_side: int = DEFAULT_POINTS_PER_SIDE,
        points_per_batch: int = 64,
        pred_iou_thresh: float = DEFAULT_PRED_IOU_THRESH,
        stability_score_thresh: float = DEFAULT_STABILITY_THRESH,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        containment_threshold: float = CONTAINMENT_THRESHOLD,
        match_sam: bool = False,
        objects: str | Sequence[str] | None = None,
        parts: str | Sequence[str] | None = None,
    ) -> None:
        levels = None if levels is None else tuple(int(level) for level in levels)
        if levels is not None and (not levels or min(levels) < 1 or len(set(levels)) != len(levels)):
            raise ValueError(f"levels must be distinct integers from 1 (finest) upwards, got {levels}")
        if points_per_side < 1 or points_per_batch < 1:
            raise ValueError(f"points_per_side and points_per_batch must be positive, got {points_per_side}, "
                             f"{points_per_batch}")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {', '.join(OUTPUT_MODES)}, got {output_mode!r}")
        if crop_n_points_downscale_factor < 1:
            raise ValueError(f"crop_n_points_downscale_factor must be at least 1, got {crop_n_points_downscale_factor}")
        if min_mask_region_area < 0:
            raise ValueError(f"min_mask_region_area must be 0 or more, got {min_mask_region_area}")
        for name, value in (("box_nms_thresh", box_nms_thresh), ("crop_nms_thresh", crop_nms_thresh),
                            ("containment_threshold", containment_threshold)):
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        self.predictor = Predictor(model, objects=objects, parts=parts)
        self.levels = None if levels is None else tuple(sorted(levels))
        self.points_per_side = points_per_side
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.containment_threshold = containment_threshold
        self.match_sam = match_sam

    @torch.inference_mode()
    def generate(self, image: np.ndarray | Image.Image, *, predictor: Predictor | None = None) -> list[GeneratedMask]:
        """Segments everything in one image.

        Args:
            image: HxWx3 uint8 RGB (grey, RGBA, 16-bit and [0, 1] float are converted).
            predictor: a `Predictor` of the same model whose image is already set to `image` (a cached
                embedding): the whole image is not encoded again, and its vocabulary labels the masks.
                Crops are still encoded by the generator's own predictor.

        Returns:
            Masks ordered by level, then largest first; `id` is the index in this list and `parent`/`children`
            link each mask to the smallest coarser-level mask containing it.
        """
        rgb = as_rgb_uint8(image)
        height, width = rgb.shape[:2]
        # A predictor holding another image would answer with masks of the wrong image, silently.
        if predictor is not None and predictor.image_size != (height, width):
            raise ValueError(f"the predictor holds a {predictor.image_size} (h, w) image but the image given is "
                             f"{(height, width)}: call predictor.set_image(image) first, or pass no predictor")
        boxes, layers = crop_boxes(width, height, crop_n_layers=self.crop_n_layers,
                                   overlap_ratio=self.crop_overlap_ratio)
        found = _Candidates.concat([
            self._crop_candidates(rgb, box, layer, predictor if layer == 0 else None)
            for box, layer in zip(boxes, layers)
        ])
        if len(boxes) > 1 and len(found.rles):
            crops = found.crop_boxes
            crop_area = (crops[:, 2] - crops[:, 0]) * (crops[:, 3] - crops[:, 1])
            # Duplicates between crops: the mask from the smaller crop (the more detailed view) wins.
            found = found.select(self._nms(found.boxes, 1.0 / crop_area, found.levels, self.crop_nms_thresh))
        if self.min_mask_region_area > 0 and len(found.rles):
            found = self._clean(found)
        return self._results(found)

    def _nms(self, boxes: torch.Tensor, scores: torch.Tensor, levels: torch.Tensor, threshold: float) -> torch.Tensor:
        """Box NMS per level, or as SAM does it with `match_sam`: over all levels, on inclusive-end boxes."""
        if self.match_sam:
            return grouped_nms(boxes - boxes.new_tensor([0, 0, 1, 1]), scores, torch.zeros_like(levels), threshold)
        return grouped_nms(boxes, scores, levels, threshold)

    def _crop_candidates(
        self, rgb: np.ndarray, box: tuple[int, int, int, int], layer: int, encoded: Predictor | None
    ) -> _Candidates:
        """Masks of one crop; `encoded` is a predictor that already holds the crop's embedding, if any."""
        x0, y0, x1, y1 = box
        predictor = encoded or self.predictor
        if encoded is None:
            predictor.set_image(rgb[y0:y1, x0:x1])
        per_side = max(1, self.points_per_side // (self.crop_n_points_downscale_factor**layer))
        points = point_grid(per_side) * np.array([x1 - x0, y1 - y0], np.float32)
        kept, logits = [], []
        for start in range(0, len(points), self.points_per_batch):
            batch_kept, batch_logits = self._batch_candidates(
                predictor, points[start : start + self.points_per_batch], box, rgb.shape[:2])
            kept.append(batch_kept)
            logits.append(batch_logits)
        found, logits = _Candidates.concat(kept), torch.cat(logits)
        margin = 0.0 if self.match_sam else LOW_RES_NMS_MARGIN
        index = self._nms(found.boxes, found.scores, found.levels, min(1.0, self.box_nms_thresh + margin))
        found, logits = found.select(index), logits[index]
        found.rles, boxes, areas = [], [], []
        # Chunk by chunk into two buffers made once, so that memory stays bounded however many masks there are
        # and freed full-size temporaries cannot fragment the heap.
        height, width = rgb.shape[:2]
        masks_buffer, rle_buffer = torch.zeros(0, dtype=torch.bool), np.zeros(0, np.uint8)
        for chunk in predictor.upsampled_chunks(logits):
            count = len(chunk)
            if len(masks_buffer) < count:
                masks_buffer = torch.zeros(count, height, width, dtype=torch.bool)
                rle_buffer = np.zeros((height, width, count), np.uint8, order="F")
            masks = masks_buffer[:count]
            if (x0, y0, x1, y1) != (0, 0, width, height):
                masks.zero_()
            torch.gt(chunk, 0, out=masks[:, y0:y1, x0:x1])
            del chunk
            boxes.append(mask_boxes(masks))
            areas.append(mask_areas(masks))
            found.rles.extend(encode_rle(masks.numpy(), buffer=rle_buffer[..., :count]))
        found.boxes = torch.cat(boxes) if boxes else found.boxes
        found.areas = torch.cat(areas) if areas else found.areas
        found = found.select(torch.nonzero(found.areas > 0)[:, 0])
        # Exact boxes now: suppress again, so that the IoU bound holds whatever the low-res boxes missed.
        return found.select(self._nms(found.boxes, found.scores, found.levels, self.box_nms_thresh))

    def _batch_candidates(
        self, predictor: Predictor, points: np.ndarray, box: tuple[int, int, int, int], image_size: tuple[int, int]
    ) -> tuple[_Candidates, torch.Tensor]:
        """Decodes one batch of prompts and keeps the masks that pass the filters, with their low-res logits.

        Boxes are in original pixels: exact with `match_sam`, else from the low-res mask (about a low-res pixel
        off), good enough for the crop-edge test and a first NMS. Areas are filled in once masks are upsampled.
        """
        low = predictor.predict_low_res([Prompt(points=[point]) for point in points])
        count = low.logits.shape[1]
        levels = self.levels or tuple(range(1, count + 1))
        if levels[-1] > count:
            raise ValueError(f"this model gives {count} masks per prompt, so levels must be 1..{count}; "
                             f"got {list(levels)}")
        valid_h, valid_w = low.valid_size
        areas = mask_areas(low.logits[..., :valid_h, :valid_w] > 0)
        tokens = torch.argsort(areas, dim=1, stable=True)[:, [level - 1 for level in levels]]
        prompt_index = torch.arange(len(points))[:, None].expand_as(tokens)
        level = torch.tensor(levels)[None].expand_as(tokens)
        # SAM skips its predicted-IoU filter when the threshold is 0 or less.
        skip_iou_filter = self.match_sam and self.pred_iou_thresh <= 0
        scores = low.proposal_scores[prompt_index, tokens]
        keep = scores > (float("-inf") if skip_iou_filter else self.pred_iou_thresh)
        prompt_index, tokens, level, scores = prompt_index[keep], tokens[keep], level[keep], scores[keep]
        logits = low.logits[prompt_index, tokens]
        crop_h, crop_w = box[3] - box[1], box[2] - box[0]
        if self.match_sam:
            stability, boxes = torch.zeros(0), torch.zeros(0, 4)
            for chunk in predictor.upsampled_chunks(logits):
                stability = torch.cat([stability, stability_scores(chunk, self.stability_score_offset)])
                boxes = torch.cat([boxes, mask_boxes(chunk > 0)])
        else:
            valid = logits[..., :valid_h, :valid_w]
            stability = stability_scores(valid, self.stability_score_offset)
            scale = torch.tensor([crop_w / valid_w, crop_h / valid_h] * 2)
            boxes = torch.minimum(mask_boxes(valid > 0) * scale, torch.tensor([crop_w, crop_h] * 2))
        offset = torch.tensor([box[0], box[1], box[0], box[1]], dtype=torch.float32)
        boxes = boxes + offset
        keep = ((stability >= self.stability_score_thresh) & (boxes[:, 2] > boxes[:, 0])
                & ~_near_crop_edge(boxes, box, image_size))
        prompt_index, tokens = prompt_index[keep], tokens[keep]
        pairs = list(zip(prompt_index.tolist(), tokens.tolist()))
        labels = [None if low.labels is None else low.labels[p][t] for p, t in pairs]
        probabilities = low.label_probabilities
        label_probabilities = [None if probabilities is None else (probabilities[0][p, t].numpy(),
                                                                   probabilities[1][p, t].numpy()) for p, t in pairs]
        kept = int(keep.sum())
        found = _Candidates(
            rles=[None] * kept, boxes=boxes[keep], areas=torch.zeros(kept, dtype=torch.int64), scores=scores[keep],
            stability=stability[keep], levels=level[keep],
            points=torch.from_numpy(points)[prompt_index] + offset[:2],
            crop_boxes=offset.new_tensor(box)[None].expand(kept, 4), labels=labels,
            label_probabilities=label_probabilities,
        )
        return found, logits[keep]

    def _clean(self, found: _Candidates) -> _Candidates:
        """Removes small holes and islands; where that changed masks, NMS again preferring untouched ones.

        One mask at a time, so that only one full-size mask is ever decoded.
        """
        unchanged = []
        for i, rle in enumerate(found.rles):
            mask, changed = remove_small_regions(rle_to_mask(rle), self.min_mask_region_area)
            unchanged.append(not changed)
            if changed:
                cleaned = torch.from_numpy(mask[None])
                found.rles[i] = encode_rle(mask[None])[0]
                found.boxes[i], found.areas[i] = mask_boxes(cleaned)[0], mask_areas(cleaned)[0]
        if all(unchanged):
            return found
        return found.select(self._nms(found.boxes, torch.tensor(unchanged, dtype=torch.float32), found.levels,
                                      self.box_nms_thresh))

    def _results(self, found: _Candidates) -> list[GeneratedMask]:
        order = sorted(range(len(found.rles)), key=lambda i: (int(found.levels[i]), -int(found.areas[i])))
        results = []
        for new_id, i in enumerate(order):
            x0, y0, x1, y1 = found.boxes[i].tolist()
            cx0, cy0, cx1, cy1 = (int(v) for v in found.crop_boxes[i].tolist())
            results.append(GeneratedMask(
                id=new_id, level=int(found.levels[i]), segmentation=found.rles[i], area=int(found.areas[i]),
                bbox=(x0, y0, x1 - x0, y1 - y0), predicted_iou=float(found.scores[i]),
                stability_score=float(found.stability[i]), point_coords=tuple(found.points[i].tolist()),
                crop_box=(cx0, cy0, cx1 - cx0, cy1 - cy0), label=found.labels[i],
                label_probabilities=found.label_probabilities[i],
            ))
        link_tree(results, [m.segmentation for m in results], self.containment_threshold)
        if self.output_mode == "binary_mask":
            for mask in results:
                mask.segmentation = mask.mask()
        return results


def _near_crop_edge(boxes: torch.Tensor, crop: tuple[int, int, int, int], image_size: tuple[int, int]) -> torch.Tensor:
    """Which boxes touch an edge of the crop that is not also an edge of the image (cut-off masks)."""
    height, width = image_size
    crop_box = torch.tensor(crop, dtype=torch.float32)
    image_box = torch.tensor([0, 0, width, height], dtype=torch.float32)
    near_crop = torch.isclose(boxes, crop_box[None], atol=CROP_EDGE_MARGIN, rtol=0)
    near_image = torch.isclose(boxes, image_box[None], atol=CROP_EDGE_MARGIN, rtol=0)
    return (near_crop & ~near_image).any(1)

"""MaskGenerator on a SAM model gives the reference SamAutomaticMaskGenerator's masks (same random weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semsam import MODEL_CONFIGS, load_model
from semsam.automatic import GeneratedMask, MaskGenerator
from semsam.automatic.masks import grouped_nms
from sam_reference import SMALL, import_segment_anything, reference_model


def assert_same_masks(ours: list[GeneratedMask], expected: list[dict]) -> None:
    """One of ours per reference mask, from the same prompt point, at mask IoU >= 0.95 and the same score."""
    assert len(ours) == len(expected)
    unmatched = list(range(len(ours)))
    for mask in expected:
        point = tuple(mask["point_coords"][0])
        candidates = [i for i in unmatched if np.allclose(ours[i].point_coords, point)]
        ious = [(ours[i].mask() & mask["segmentation"]).sum() / (ours[i].mask() | mask["segmentation"]).sum()
                for i in candidates]
        best = int(np.argmax(ious))
        assert ious[best] >= 0.95
        assert ours[candidates[best]].predicted_iou == pytest.approx(mask["predicted_iou"], abs=1e-4)
        unmatched.remove(candidates[best])


def test_masks_match_the_reference_generator(tmp_path, monkeypatch):
    sam = import_segment_anything(monkeypatch)
    torch.manual_seed(0)
    reference = reference_model(SMALL)
    path = tmp_path / "sam_small.pth"
    torch.save(reference.state_dict(), path)
    monkeypatch.setitem(MODEL_CONFIGS, "sam_small_test", SMALL)
    model = load_model("sam_small_test", checkpoint=path)
    from segment_anything import automatic_mask_generator

    # The reference's NMS is torchvision's batched_nms, which the stand-in lacks: ours has the same contract.
    monkeypatch.setattr(automatic_mask_generator, "batched_nms",
                        lambda boxes, scores, groups, iou_threshold: grouped_nms(boxes, scores, groups, iou_threshold))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(192, 256, 3), dtype=np.uint8)
    image[40:150, 60:200] = (220, 40, 40)
    # No filtering and no suppression: mask by mask, whatever the mode (the reference skips a 0 threshold).
    settings = dict(points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
    everything = [m for m in sam.SamAutomaticMaskGenerator(reference, **settings).generate(image) if m["area"] > 0]
    assert len(everything) > 50
    assert_same_masks(MaskGenerator(model, levels=(1, 2, 3), match_sam=True, **settings).generate(image), everything)
    ours = MaskGenerator(model, levels=(1, 2, 3), **dict(settings, pred_iou_thresh=float("-inf"))).generate(image)
    assert_same_masks(ours, everything)

    # Filters on, at thresholds that keep a part: match_sam judges stability as the reference does.
    settings = dict(points_per_side=6, box_nms_thresh=1.0,
                    pred_iou_thresh=float(np.median([m["predicted_iou"] for m in everything])),
                    stability_score_thresh=float(np.quantile([m["stability_score"] for m in everything], 0.75)))
    expected = [m for m in sam.SamAutomaticMaskGenerator(reference, **settings).generate(image) if m["area"] > 0]
    assert 5 < len(expected) < len(everything) / 2
    assert_same_masks(MaskGenerator(model, levels=(1, 2, 3), match_sam=True, **settings).generate(image), expected)
    # And NMS across levels (the random model's masks are blobs with much the same box, so few are left).
    settings["box_nms_thresh"] = 0.7
    expected = [m for m in sam.SamAutomaticMaskGenerator(reference, **settings).generate(image) if m["area"] > 0]
    assert_same_masks(MaskGenerator(model, levels=(1, 2, 3), match_sam=True, **settings).generate(image), expected)

"""MaskGenerator on a SAM model gives the reference SamAutomaticMaskGenerator's masks (same random weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semsam import MODEL_CONFIGS, load_model
from semsam.automatic import MaskGenerator
from semsam.automatic.masks import grouped_nms
from sam_reference import import_segment_anything
from test_sam_parity import SMALL, _reference_model


def test_masks_match_the_reference_generator(tmp_path, monkeypatch):
    sam = import_segment_anything(monkeypatch)
    reference = _reference_model(sam, SMALL)
    path = tmp_path / "sam_small.pth"
    torch.save(reference.state_dict(), path)
    monkeypatch.setitem(MODEL_CONFIGS, "sam_small_test", SMALL)
    from segment_anything import automatic_mask_generator

    # The reference's NMS is torchvision's batched_nms, which the stand-in lacks: ours has the same contract.
    monkeypatch.setattr(automatic_mask_generator, "batched_nms",
                        lambda boxes, scores, groups, iou_threshold: grouped_nms(boxes, scores, groups, iou_threshold))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(192, 256, 3), dtype=np.uint8)
    image[40:150, 60:200] = (220, 40, 40)
    # No filtering and no suppression, so that both keep every mask and the comparison is mask by mask (their
    # filters differ by design: ours judge stability at low resolution and suppress per level).
    settings = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
    expected = sam.SamAutomaticMaskGenerator(reference, **settings).generate(image)
    expected = [m for m in expected if m["area"] > 0]
    ours = MaskGenerator(load_model("sam_small_test", checkpoint=path), levels=(1, 2, 3),
                         **dict(settings, pred_iou_thresh=float("-inf"))).generate(image)
    assert len(ours) == len(expected) > 20
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

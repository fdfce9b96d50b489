"""Zoom-in for corrective clicks: the crop's geometry, the logits-to-mask-prompt map and a zoomed segmenter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import BENCHMARK_OBJECT, rect, scene_image

from semsam import load_model
from semsam.clicks import Click
from semsam.evaluation.segmenters import ModelSegmenter
from semsam.prediction import Prompt
from semsam.predictor import Predictor
from semsam.zoom import BACKGROUND_LOGIT, ZoomIn, box_iou, clicks_in_crop, paste


def test_crop_box_spans_the_mask_and_positive_clicks_scaled_around_their_centre():
    mask = rect(40, 40, 60, 80, size=(200, 300))
    zoom = ZoomIn(expansion=2.0, min_size=10)
    # The negative click far away does not count; the positive one at x = 99 widens the box to columns 40..99.
    assert zoom.crop_box(mask, [(99, 50), (250, 150)], [1, 0]) == (10, 30, 130, 70)


def test_crop_box_grows_to_min_size_and_stays_inside_the_image():
    mask = np.zeros((50, 80), bool)
    mask[0:4, 76:80] = True
    assert ZoomIn(expansion=1.0, min_size=20).crop_box(mask, [(78, 2)], [1]) == (68, 0, 80, 12)
    empty = np.zeros((50, 80), bool)
    assert ZoomIn().crop_box(empty, [(40, 25)], [0]) == (0, 0, 80, 50)


def test_next_crop_keeps_the_current_one_while_the_object_stays_in_it():
    zoom = ZoomIn(expansion=1.0, min_size=1, recompute_iou=0.5)
    mask = rect(40, 40, 60, 80, size=(200, 300))
    assert zoom.next_crop(mask, [(50, 50)], [1], None) == (40, 40, 80, 60)
    assert zoom.next_crop(mask, [(50, 50)], [1], (38, 40, 80, 62)) == (38, 40, 80, 62)  # IoU 0.88: kept
    assert zoom.next_crop(mask, [(50, 50)], [1], (0, 0, 80, 60)) == (40, 40, 80, 60)  # IoU 0.33: moved


def test_clicks_in_crop_are_shifted_and_the_others_left_out():
    points, labels = clicks_in_crop([(15, 25), (5, 25), (29, 39), (30, 20)], [1, 0, 0, 1], (10, 20, 30, 40))
    assert points == [(5, 5), (19, 19)] and labels == [1, 0]


def test_paste_puts_a_crops_values_into_the_whole_image():
    logits = np.arange(6, dtype=np.float32).reshape(2, 3)
    whole = paste(logits, (1, 2, 4, 4), (5, 6), BACKGROUND_LOGIT)
    assert whole.shape == (5, 6) and whole.dtype == np.float32
    assert np.array_equal(whole[2:4, 1:4], logits) and (np.delete(whole.ravel(), [13, 14, 15, 19, 20, 21]) == -20).all()
    masks = paste(np.ones((3, 2, 3), bool), (1, 2, 4, 4), (5, 6), False)
    assert masks.shape == (3, 5, 6) and masks.dtype == bool and masks.sum() == 18 and masks[:, 2:4, 1:4].all()


def test_zoom_settings_are_validated():
    with pytest.raises(ValueError, match="expansion >= 1"):
        ZoomIn(expansion=0.5)
    with pytest.raises(ValueError, match="skip_clicks >= 1"):
        ZoomIn(skip_clicks=0)


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_mask_input_from_logits_inverts_upsampling(small_model, scene):
    predictor = Predictor(small_model)
    predictor.set_image(scene)
    output = predictor.predict_low_res([Prompt(points=[(60, 45)], labels=[1])])
    low, (valid_h, valid_w) = output.logits[0, 0], output.valid_size
    full = predictor.upsample_logits(low).numpy()
    mask_input = predictor.mask_input_from_logits(full)
    assert mask_input.shape == tuple(low.shape)
    assert (mask_input[valid_h:] == -20).all() and (mask_input[:, valid_w:] == -20).all()
    # Smooth logits come back close to where they came from, and give the same mask.
    again = predictor.upsample_logits(torch.from_numpy(mask_input)).numpy()
    assert np.mean((again > 0) == (full > 0)) > 0.97
    with pytest.raises(ValueError, match="image's size"):
        predictor.mask_input_from_logits(full[:-1])


def test_zoomed_segmenter_answers_later_clicks_on_a_crop(monkeypatch):
    model = load_model()  # the embedded model finds the bright object, so the crop is smaller than the image
    encoded = []
    monkeypatch.setattr(Predictor, "set_image", lambda self, image, real=Predictor.set_image: (
        encoded.append(image.shape[:2]), real(self, image)))
    image = scene_image(BENCHMARK_OBJECT)
    plain = ModelSegmenter(Predictor(model))
    zoomed = ModelSegmenter(Predictor(model), zoom_in=ZoomIn(skip_clicks=1, expansion=1.2, min_size=8,
                                                                       recompute_iou=0.0))
    clicks = (Click(row=24, col=30, positive=True), Click(row=20, col=25, positive=True))
    for segmenter in (plain, zoomed):
        segmenter.set_image(image)
        segmenter.start_object((16, 12, 44, 36))
    first = [segmenter.add_click(clicks[0]) for segmenter in (plain, zoomed)]
    assert np.array_equal(first[0], first[1]), "the first clicks see the whole image"
    box = zoomed.zoom_in.crop_box(first[1], [(30, 24), (25, 20)], [1, 1])
    second = zoomed.add_click(clicks[1])
    x0, y0, x1, y1 = box
    assert (x1 - x0) * (y1 - y0) < second.size / 2, "the fixture must make a crop smaller than the image"
    assert second.shape == BENCHMARK_OBJECT.shape and not second[:y0].any() and not second[:, x1:].any()
    assert zoomed.crop == box and encoded[-1] == (y1 - y0, x1 - x0) and len(encoded) == 3
    # With recompute_iou 0 the crop, once made, is kept for the object's later clicks.
    zoomed.add_click(Click(row=22, col=28, positive=False))
    assert len(encoded) == 3 and zoomed.crop == box
    zoomed.start_object((16, 12, 44, 36))
    assert zoomed.crop is None

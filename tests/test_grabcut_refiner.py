"""GrabCut edge refinement: the uncertain band follows the image's edges, sure pixels and clicks stay."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from semsam.clicks import Click
from semsam.evaluation.interactive import masked_iou
from semsam.evaluation.segmenters import ModelSegmenter
from semsam.grabcut import GrabCutRefiner
from semsam.predictor import Predictor

from helpers import BENCHMARK_OBJECT, scene_image


def blurred_logits(mask: np.ndarray, *, shift: int, scale: float = 1.5) -> np.ndarray:
    """Logits of `mask` moved `shift` pixels right: positive inside, falling off over a few pixels at the edge."""
    moved = np.roll(mask, shift, axis=1)
    inside = ndimage.distance_transform_edt(moved)
    outside = ndimage.distance_transform_edt(~moved)
    return np.where(moved, inside, -outside).astype(np.float32) / scale


def test_the_uncertain_band_snaps_to_the_object_edge():
    image = scene_image(BENCHMARK_OBJECT)
    logits = blurred_logits(BENCHMARK_OBJECT, shift=2)
    before = masked_iou(logits > 0, BENCHMARK_OBJECT)
    refined = GrabCutRefiner(band=4.0).refine(image, logits, [(30, 24)], [1])
    assert masked_iou(refined, BENCHMARK_OBJECT) > max(0.97, before + 0.05)
    sure = np.abs(logits) > 4.0
    assert np.array_equal(refined[sure], (logits > 0)[sure])


def test_a_window_above_max_pixels_is_cut_at_a_reduced_scale_keeping_sure_pixels_and_clicks():
    large = BENCHMARK_OBJECT.repeat(8, 0).repeat(8, 1)
    image = scene_image(large)
    logits = blurred_logits(large, shift=16, scale=12.0)
    # A negative click inside the sure foreground: GrabCut would take it back, so it must be kept at full size.
    row, col = np.argwhere(logits > 4.0)[0] + 3
    refiner = GrabCutRefiner(band=4.0, max_pixels=large.size // 64)
    refined = refiner.refine(image, logits, [(240, 192), (int(col), int(row))], [1, 0])
    assert masked_iou(refined, large) > max(0.95, masked_iou(logits > 0, large) + 0.05)
    distance = np.hypot(*np.ogrid[-int(row):large.shape[0] - int(row), -int(col):large.shape[1] - int(col)])
    assert not refined[distance <= 4].any()
    sure = (np.abs(logits) > 4.0) & (distance > 6)
    assert np.array_equal(refined[sure], (logits > 0)[sure])


def test_one_input_gives_one_mask_whatever_opencv_random_state():
    cv2 = pytest.importorskip("cv2")
    noise = np.random.default_rng(6).integers(0, 256, (96, 128, 3))
    image = ndimage.uniform_filter(noise.astype(float), (5, 5, 1)).astype(np.uint8)
    rows, cols = np.mgrid[:96, :128]
    ellipse = (cols - 64) ** 2 / 900 + (rows - 48) ** 2 / 400 < 1
    logits = np.where(ellipse, ndimage.distance_transform_edt(ellipse), -ndimage.distance_transform_edt(~ellipse))
    masks = []
    for seed in (1, 2, 3):  # unseeded, GrabCut's k-means start differed between these by up to 6 pixels
        cv2.setRNGSeed(seed)
        masks.append(GrabCutRefiner().refine(image, (logits / 6).astype(np.float32), [(64, 48)], [1]))
    assert all(np.array_equal(mask, masks[0]) for mask in masks)


def test_clicks_are_sure_seeds():
    image = scene_image(BENCHMARK_OBJECT)
    logits = blurred_logits(BENCHMARK_OBJECT, shift=0)
    negative = (int(np.argwhere(BENCHMARK_OBJECT)[0][1]), int(np.argwhere(BENCHMARK_OBJECT)[0][0]))
    refined = GrabCutRefiner(band=1.0).refine(image, logits, [(30, 24), negative], [1, 0])
    assert refined[24, 30] and not refined[negative[1], negative[0]]


def test_nothing_uncertain_or_nothing_to_learn_returns_the_model_mask():
    image = scene_image(BENCHMARK_OBJECT)
    sure = np.where(BENCHMARK_OBJECT, 10.0, -10.0).astype(np.float32)
    assert np.array_equal(GrabCutRefiner(band=2.0).refine(image, sure, [], []), BENCHMARK_OBJECT)
    empty = np.full(BENCHMARK_OBJECT.shape, -1.0, np.float32)
    assert not GrabCutRefiner().refine(image, empty, [], []).any()


@pytest.mark.parametrize(("settings", "message"), [
    ({"band": -1.0}, "band >= 0"), ({"iterations": 0}, "iterations >= 1"), ({"context": float("nan")}, "context"),
    ({"max_pixels": 0}, "max_pixels >= 1"),
])
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        GrabCutRefiner(**settings)


def test_mismatched_inputs_are_refused():
    image = scene_image(BENCHMARK_OBJECT)
    with pytest.raises(ValueError, match="logits HxW of the same size"):
        GrabCutRefiner().refine(image, np.zeros((3, 3), np.float32), [], [])
    with pytest.raises(ValueError, match="one label per point"):
        GrabCutRefiner().refine(image, np.zeros(image.shape[:2], np.float32), [(1, 1)], [])


def test_a_refined_model_segmenter_answers_with_the_refinement(small_model):
    image = scene_image(BENCHMARK_OBJECT)
    plain, refined = (ModelSegmenter(Predictor(small_model), refiner=refiner)
                      for refiner in (None, GrabCutRefiner(band=50.0)))
    masks = []
    for segmenter in (plain, refined):
        segmenter.set_image(image)
        segmenter.start_object((16, 12, 44, 36))
        masks.append(segmenter.add_click(Click(row=24, col=30, positive=True)))
    assert masks[1].shape == BENCHMARK_OBJECT.shape and masks[1].dtype == bool
    # Everything is uncertain at band 50: the answer is GrabCut's, seeded by the model's mask and the click.
    assert masks[1][24, 30] and masked_iou(masks[1], BENCHMARK_OBJECT) > masked_iou(masks[0], BENCHMARK_OBJECT)
    assert np.array_equal(refined._logits, plain._logits)

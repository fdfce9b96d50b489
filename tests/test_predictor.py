import numpy as np
import pytest
import torch
import torch.nn.functional as F

from semsam import Prediction, Predictor, Prompt


@pytest.fixture()
def predictor(small_model, scene):
    p = Predictor(small_model)
    p.set_image(scene)
    return p


def test_prediction_shapes_and_order(predictor, scene):
    result = predictor.predict(points=[(60, 45)], labels=[1])
    k = predictor.model.num_granularities
    assert k == 6
    assert result.masks.shape == (k, *scene.shape[:2]) and result.masks.dtype == np.bool_
    assert result.scores.shape == (k,) and result.scores.dtype == np.float32
    assert result.logits.ndim == 3 and result.logits.shape[0] == k
    assert result.boxes.shape == (k, 4)
    areas = result.masks.reshape(k, -1).sum(1)
    assert (np.diff(areas) >= 0).all(), "masks must be ordered finest -> coarsest"
    assert result.labels is None


def test_every_prompt_kind(predictor):
    first = predictor.predict(points=[(60, 45)])
    kinds = [
        Prompt(points=[(60, 45), (10, 10)], labels=[1, 0]),
        Prompt(box=(30, 20, 110, 80)),
        Prompt(box=(30, 20, 110, 80), points=[(60, 45), (100, 30)], labels=[1, 0]),
        Prompt(mask_input=first.logits[-1]),
        Prompt(points=[(60, 45)], mask_input=first.logits[None, 0]),
    ]
    for prompt, result in zip(kinds, predictor.predict_batch(kinds)):
        assert isinstance(result, Prediction)
        assert result.masks.shape[0] == 6 and np.isfinite(result.scores).all()


def test_batched_prompts_are_independent(predictor):
    target = Prompt(points=[(60, 45), (20, 70)], labels=[1, 0])
    alone = predictor.predict_batch([target])[0]
    others = [
        Prompt(box=(0, 0, 50, 50)),
        Prompt(points=[(5, 5), (6, 90), (120, 3), (64, 64)], labels=[1, 0, 0, 1]),
        Prompt(mask_input=alone.logits[0]),
    ]
    for batch in ([target, *others], [*others, target], [others[1], target]):
        result = predictor.predict_batch(batch)[batch.index(target)]
        np.testing.assert_allclose(result.logits, alone.logits, atol=1e-4)
        np.testing.assert_allclose(result.scores, alone.scores, atol=1e-5)


def test_more_prompts_than_one_pass(predictor):
    prompts = [Prompt(points=[(x % 128, (x * 7) % 96)]) for x in range(70)]
    results = predictor.predict_batch(prompts)
    assert len(results) == 70
    single = predictor.predict_batch([prompts[69]])[0]
    np.testing.assert_allclose(results[69].logits, single.logits, atol=1e-4)


def test_predict_needs_an_image(small_model):
    with pytest.raises(RuntimeError, match="set_image"):
        Predictor(small_model).predict(points=[(1, 1)])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "empty prompt"),
        ({"points": [(10, 10)], "labels": [0]}, "empty prompt"),
        ({"points": [(500, 10)]}, "outside"),
        ({"points": [(-1, 10)]}, "outside"),
        ({"points": [(10, 10, 3)]}, r"shape \[P, 2\]"),
        ({"points": [(10, 10)], "labels": [1, 1]}, "one entry per point"),
        ({"points": [(10, 10)], "labels": [2]}, "1 \\(positive\\) or 0"),
        ({"points": [(float("nan"), 10)]}, "NaN"),
        ({"box": (50, 10, 20, 40)}, "x0 < x1"),
        ({"box": (0, 0, 10)}, "4 finite numbers"),
        ({"mask_input": np.zeros((5, 5))}, "mask_input must be"),
    ],
)
def test_bad_prompts_are_named(predictor, kwargs, message):
    with pytest.raises(ValueError, match=message):
        predictor.predict(**kwargs)
    assert predictor.predict(points=[(60, 45)]).masks.shape[0] == 6


def test_empty_batch(predictor):
    with pytest.raises(ValueError, match="at least one prompt"):
        predictor.predict_batch([])


def test_mask_prompt_changes_the_answer(predictor):
    first = predictor.predict(points=[(60, 45)])
    again = predictor.predict(points=[(60, 45)], mask_input=first.logits[0])
    assert not np.allclose(first.logits, again.logits)


def test_set_image_accepts_common_formats(small_model, scene):
    p = Predictor(small_model)
    reference = None
    grey = scene.mean(2).astype(np.uint8)
    for image in (
        np.dstack([grey] * 3),
        grey,
        grey[..., None],
        np.dstack([grey] * 3 + [np.full_like(grey, 255)]),
        grey.astype(np.uint16) * 257,
        grey.astype(np.float32) / 255,
    ):
        p.set_image(image)
        logits = p.predict(points=[(60, 45)]).logits
        reference = logits if reference is None else reference
        np.testing.assert_allclose(logits, reference, atol=1e-3)


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.zeros((10, 10, 2), np.uint8), "shape"),
        (np.zeros((2, 10, 10, 3), np.uint8), "shape"),
        (np.zeros((10, 10), bool), "mask, not an image"),
        (np.full((10, 10, 3), 2.0, np.float32), r"\[0, 1\]"),
        (np.full((10, 10, 3), np.nan, np.float32), "NaN"),
        (np.full((10, 10, 3), 300, np.int32), "0..255"),
        (np.zeros((10, 10, 3), np.complex64), "dtype"),
        ("not an image", "numpy array or PIL image"),
    ],
)
def test_bad_images_are_named(small_model, image, message):
    with pytest.raises(ValueError, match=message):
        Predictor(small_model).set_image(image)


@pytest.mark.parametrize("height, width", [(90, 120), (120, 37), (301, 301), (1000, 1500)])
def test_upsampling_is_sams_two_bilinear_steps(small_model, height, width):
    """x4 to the padded input, crop to the resized image, resize to the original: as SamPredictor does."""
    predictor = Predictor(small_model)
    predictor.set_image(np.zeros((height, width, 3), np.uint8))
    size = small_model.config.image_size
    scale = size / max(height, width)
    input_h, input_w = round(height * scale), round(width * scale)
    logits = torch.randn(3, size // 4, size // 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 5
    padded = F.interpolate(logits[:, None], size=(size, size), mode="bilinear", align_corners=False)
    expected = F.interpolate(padded[..., :input_h, :input_w], size=(height, width), mode="bilinear",
                             align_corners=False)[:, 0]
    upsampled = predictor.upsample_logits(logits.float())
    assert upsampled.shape == (3, height, width)
    np.testing.assert_allclose(upsampled.numpy(), expected.numpy(), rtol=0, atol=1e-4)

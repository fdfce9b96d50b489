"""Numerical parity with the reference segment-anything package, on random weights saved as an official .pth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from semsam import MODEL_CONFIGS, Predictor, Prompt, build_model, load_model, read_image
from semsam.modeling.sam import mask_decoder
from sam_reference import SMALL, import_segment_anything, reference_model

EXAMPLE = Path(__file__).resolve().parents[1] / "semsam" / "assets" / "example.jpg"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The reference package, a random reference model, and ours loaded from it as an official .pth."""
    monkeypatch = pytest.MonkeyPatch()
    sam = import_segment_anything(monkeypatch)
    reference = reference_model(SMALL)
    path = tmp_path_factory.mktemp("sam") / "sam_small.pth"
    torch.save(reference.state_dict(), path)
    monkeypatch.setitem(MODEL_CONFIGS, "sam_small_test", SMALL)
    yield sam, reference, load_model("sam_small_test", checkpoint=path)
    monkeypatch.undo()


@pytest.fixture(scope="module")
def pair(models):
    sam, reference, ours = models
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(192, 256, 3), dtype=np.uint8)  # longest side = image_size: no resizing
    image[40:150, 60:200] = (220, 40, 40)
    reference_predictor = sam.SamPredictor(reference)
    reference_predictor.set_image(image)
    predictor = Predictor(ours)
    predictor.set_image(image)
    return reference_predictor, predictor


PROMPTS = {
    "one point": dict(points=[(120, 90)], labels=[1]),
    "points with a negative": dict(points=[(120, 90), (30, 20)], labels=[1, 0]),
    "box": dict(box=(50, 30, 210, 160)),
    "box and point": dict(points=[(120, 90)], labels=[1], box=(50, 30, 210, 160)),
}


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("prompt", list(PROMPTS))
def test_outputs_match_the_reference(pair, prompt, multimask):
    reference, predictor = pair
    kwargs = PROMPTS[prompt]
    ours = predictor.predict(**kwargs, multimask=multimask)
    _assert_matches(reference, ours, kwargs, multimask)
    # Feeding the logits back as a mask input, as both APIs allow.
    refined = predictor.predict(**kwargs, mask_input=ours.logits[-1], multimask=multimask)
    _assert_matches(reference, refined, dict(kwargs, mask_input=ours.logits[-1]), multimask)


def _assert_matches(reference, ours, kwargs, multimask):
    masks, scores, logits = reference.predict(
        point_coords=np.array(kwargs["points"], dtype=np.float32) if "points" in kwargs else None,
        point_labels=np.array(kwargs["labels"]) if "labels" in kwargs else None,
        box=np.array(kwargs["box"], dtype=np.float32) if "box" in kwargs else None,
        mask_input=kwargs["mask_input"][None] if "mask_input" in kwargs else None,
        multimask_output=multimask,
    )
    assert ours.logits.shape == logits.shape == (3 if multimask else 1, 64, 64)
    order = np.argsort(masks.reshape(len(masks), -1).sum(1), kind="stable")  # ours are ordered by area
    np.testing.assert_allclose(ours.logits, logits[order], rtol=0, atol=1e-4)
    np.testing.assert_allclose(ours.scores, scores[order], rtol=0, atol=1e-5)
    assert np.abs(logits).max() > 0.5, "the comparison must not be between near-zero outputs"


def test_image_embeddings_match(pair):
    reference, predictor = pair
    diff = (reference.features - predictor._features).abs().max().item()
    assert diff <= 1e-4


@pytest.mark.parametrize("name", ["sam_vit_b", "sam_vit_l", "sam_vit_h"])
def test_official_key_lists(monkeypatch, name):
    sam = import_segment_anything(monkeypatch)
    with torch.device("meta"):
        reference = sam.sam_model_registry[name.removeprefix("sam_")]()
        ours = build_model(name)
    expected = {key: tuple(t.shape) for key, t in reference.state_dict().items()}
    assert {key: tuple(t.shape) for key, t in ours.state_dict().items()} == expected


def test_a_mixed_batch_answers_each_prompt_as_if_alone(pair):
    _, predictor = pair
    prompts = [Prompt(**kwargs) for kwargs in PROMPTS.values()]
    batch = predictor.predict_batch(prompts)
    for prompt, result in zip(prompts, batch):
        alone = predictor.predict(points=prompt.points, labels=prompt.labels, box=prompt.box)
        np.testing.assert_allclose(result.logits, alone.logits, rtol=0, atol=1e-5)
        np.testing.assert_allclose(result.scores, alone.scores, rtol=0, atol=1e-6)


def test_prompts_decoded_in_chunks_match_the_reference(pair, monkeypatch):
    """Shared image tokens (clicks alone) and per-prompt ones (mask inputs), split over several chunks."""
    reference, predictor = pair
    per_prompt = 16 * 16 * 16 * 256 // 8  # upscaled features of one prompt on the 16x16 test grid
    monkeypatch.setattr(mask_decoder, "CHUNK_ELEMENTS", 2 * per_prompt)
    points = [[(30 + 40 * i, 20 + 30 * i)] for i in range(5)]
    clicks = predictor.predict_batch([Prompt(points=p) for p in points])
    for p, ours in zip(points, clicks):
        _assert_matches(reference, ours, {"points": p, "labels": [1]}, multimask=True)
    refined = predictor.predict_batch([Prompt(points=p, mask_input=c.logits[0]) for p, c in zip(points, clicks)])
    for p, c, ours in zip(points, clicks, refined):
        _assert_matches(reference, ours, {"points": p, "labels": [1], "mask_input": c.logits[0]}, multimask=True)


@pytest.mark.parametrize("prompt", ["one point", "box"])
def test_masks_on_a_real_photo_are_the_references(models, prompt):
    """A 3:2 photo, resized as SamPredictor does (PIL bilinear on uint8, 341 * 256 / 512 = 170.5 rounded up)."""
    sam, reference, ours = models
    image = read_image(EXAMPLE)[:341]
    reference_predictor, predictor = sam.SamPredictor(reference), Predictor(ours)
    reference_predictor.set_image(image)
    predictor.set_image(image)
    assert tuple(reference_predictor.input_size) == (171, 256) == ours.resize_image(image).shape[:2]
    kwargs = {"one point": dict(points=[(300, 200)], labels=[1]), "box": dict(box=(100, 60, 400, 300))}[prompt]
    ours_result = predictor.predict(**kwargs)
    upsampled, scores, _ = reference_predictor.predict(
        point_coords=np.array(kwargs["points"], np.float32) if "points" in kwargs else None,
        point_labels=np.array(kwargs["labels"]) if "labels" in kwargs else None,
        box=np.array(kwargs["box"], np.float32) if "box" in kwargs else None, return_logits=True)
    order = np.argsort((upsampled > 0).reshape(3, -1).sum(1), kind="stable")
    np.testing.assert_allclose(ours_result.scores, scores[order], rtol=0, atol=1e-5)
    differing = ours_result.masks != (upsampled[order] > 0)
    # Float32 noise can flip a pixel only where the reference's logit is that close to 0.
    assert np.abs(upsampled[order][differing]).max(initial=0.0) <= 1e-4
    assert differing.sum() <= 2, f"{differing.sum()} pixels differ"

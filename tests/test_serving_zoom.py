"""Zoom-in in the HTTP API: later clicks answered on a crop around the object, as the interactive evaluator does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from serving_helpers import png_bytes, upload

from semsam import load_model
from semsam.io import rle_to_mask
from semsam.predictor import Predictor
from semsam.serving import create_app, interactive
from semsam.serving.schemas import LowResLogits
from semsam.serving.store import ImageStore
from semsam.zoom import ZoomIn

CLICKS = [[70, 30], [50, 45], [100, 70]]  # on the red rectangle (30..110 x 20..80), off the green square
LEVEL = 3


@pytest.fixture(scope="module")
def trained_model():
    """The embedded default: its masks follow the rectangle, so a crop around one is smaller than the image."""
    return load_model()


@pytest.fixture()
def tight_zoom(monkeypatch):
    """The crop is the object's box itself, so that on a 128 x 96 scene it leaves most of the image out."""
    zoom = ZoomIn(expansion=1.0)
    monkeypatch.setattr(interactive, "ZOOM", zoom)
    return zoom


def _clicks(client: TestClient, image_id: str, count: int, **extra: object) -> list[dict]:
    """The first `count` clicks, each sending back the chosen level's logits (and crop) of the answer before."""
    answers: list[dict] = []
    for n in range(1, count + 1):
        body = {"points": CLICKS[:n], "return_logits": True, **extra}
        if answers:
            body |= {"mask_input": answers[-1]["logits"][LEVEL], "crop": answers[-1]["crop"]}
        response = client.post(f"/api/images/{image_id}/predict", json=body)
        assert response.status_code == 200, response.text
        answers.append(response.json())
    return answers


def _pasted(predictor: Predictor, logits: dict, crop: list[int] | None, size: tuple[int, int]) -> np.ndarray:
    """A response's low-res logits, upsampled on `predictor` (encoded on `crop`), in the whole image."""
    upsampled = predictor.upsample_logits(torch.from_numpy(LowResLogits.model_validate(logits).to_array())).numpy()
    if crop is None:
        return upsampled
    whole = np.full(size, -20.0, np.float32)
    x0, y0, x1, y1 = crop
    whole[y0:y1, x0:x1] = upsampled
    return whole


def test_the_third_click_is_answered_on_a_crop_around_the_object(trained_model, tight_zoom, scene):
    with TestClient(create_app(model=trained_model, model_name="default")) as client:
        image_id = upload(client, png_bytes(scene)).json()["image_id"]
        answers = _clicks(client, image_id, 3, zoom_in=True)
    assert [a["crop"] is None for a in answers] == [True, True, False]
    # What the evaluator's zoom-in does with the second answer: crop around it and the clicks, cropped prompt.
    whole = Predictor(trained_model)
    whole.set_image(scene)
    previous = _pasted(whole, answers[1]["logits"][LEVEL], None, scene.shape[:2])
    crop = tight_zoom.crop_box(previous > 0, CLICKS, [1, 1, 1])
    x0, y0, x1, y1 = crop
    assert tuple(answers[2]["crop"]) == crop and (x1 - x0) * (y1 - y0) < 0.6 * 128 * 96
    on_crop = Predictor(trained_model)
    on_crop.set_image(scene[y0:y1, x0:x1])
    inside = [(x - x0, y - y0) for x, y in CLICKS if x0 <= x < x1 and y0 <= y < y1]
    expected = on_crop.predict(points=inside, mask_input=on_crop.mask_input_from_logits(previous[y0:y1, x0:x1]))
    masks = np.stack([rle_to_mask(rle) for rle in answers[2]["masks"]])
    assert masks.shape == (6, 96, 128) and masks[:, y0:y1, x0:x1].sum() == masks.sum() > 0
    assert np.array_equal(masks[:, y0:y1, x0:x1], expected.masks)
    assert np.allclose(answers[2]["boxes"], expected.boxes + [x0, y0, x0, y0])
    assert answers[2]["logits"][0]["shape"] == list(expected.logits.shape[1:])
    assert answers[2]["labels"][0] is not None  # the crop's masks are named too


def test_the_crop_is_kept_while_the_object_stays_and_left_when_zoom_is_off(trained_model, tight_zoom, scene):
    with TestClient(create_app(model=trained_model, model_name="default")) as client:
        image_id = upload(client, png_bytes(scene)).json()["image_id"]
        third = _clicks(client, image_id, 3, zoom_in=True)[-1]
        body = {"points": CLICKS + [[65, 47]], "labels": [1, 1, 1, 0], "mask_input": third["logits"][LEVEL],
                "crop": third["crop"], "return_logits": True}
        kept = client.post(f"/api/images/{image_id}/predict", json={**body, "zoom_in": True}).json()
        back = client.post(f"/api/images/{image_id}/predict", json=body).json()
    on_crop = Predictor(trained_model)
    x0, y0, x1, y1 = third["crop"]
    on_crop.set_image(scene[y0:y1, x0:x1])
    previous = _pasted(on_crop, third["logits"][LEVEL], third["crop"], scene.shape[:2])
    assert tight_zoom.next_crop(previous > 0, body["points"], body["labels"], tuple(third["crop"])) == tuple(
        third["crop"])
    # The crop kept: the fed-back logits are its own, and the answer is as if asked of the crop.
    assert kept["crop"] == third["crop"]
    inside = [(x - x0, y - y0) for x, y in body["points"] if x0 <= x < x1 and y0 <= y < y1]
    labels = [label for (x, y), label in zip(body["points"], body["labels"]) if x0 <= x < x1 and y0 <= y < y1]
    expected = on_crop.predict(points=inside, labels=labels,
                               mask_input=LowResLogits.model_validate(third["logits"][LEVEL]).to_array())
    assert np.array_equal(np.stack([rle_to_mask(rle) for rle in kept["masks"]])[:, y0:y1, x0:x1], expected.masks)
    # Without zoom_in the answer is on the whole image again, the crop's answer as its mask prompt.
    assert back["crop"] is None
    whole = Predictor(trained_model)
    whole.set_image(scene)
    expected = whole.predict(points=body["points"], labels=body["labels"],
                             mask_input=whole.mask_input_from_logits(previous))
    assert np.array_equal(np.stack([rle_to_mask(rle) for rle in back["masks"]]), expected.masks)


def test_bad_crops_get_422_naming_the_problem(small_model, scene):
    with TestClient(create_app(model=small_model, model_name="small")) as client:
        image_id = upload(client, png_bytes(scene)).json()["image_id"]
        first = _clicks(client, image_id, 1)[0]
        url, logits = f"/api/images/{image_id}/predict", first["logits"][LEVEL]
        outside = client.post(url, json={"points": [[60, 45]], "mask_input": logits, "crop": [10, 10, 200, 50]})
        assert outside.status_code == 422 and "crop [10, 10, 200, 50] must satisfy" in outside.json()["detail"]
        alone = client.post(url, json={"points": [[60, 45]], "crop": [10, 10, 60, 50]})
        assert alone.status_code == 422 and "send both" in alone.json()["detail"]
        # Whole-image logits said to be a crop's: they do not fit the crop's frame.
        frame = client.post(url, json={"points": [[60, 45]], "mask_input": logits, "crop": [10, 10, 60, 50]})
        assert frame.status_code == 422
        assert "mask_input must be one mask of this image's logits" in frame.json()["detail"]


def test_a_forgotten_image_takes_its_crops_embeddings_along(small_model, scene):
    store = ImageStore(model=small_model, max_images=1, max_embeddings=4)
    image_id = store.add(scene)
    shape = store.with_predictor(image_id, lambda predictor: predictor.image_size, crop=(10, 20, 60, 50))
    assert shape == (30, 50) and store.cached_embeddings == 1 and not store.is_encoded(image_id)
    store.add(scene[::-1].copy())
    assert store.cached_embeddings == 0


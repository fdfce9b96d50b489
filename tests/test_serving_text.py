"""POST /api/images/{id}/text: ranked matches for a phrase, the explicit "nothing matches", and refusals."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from serving_helpers import png_bytes, upload

from semsam import load_model
from semsam.image import read_image
from semsam.io import rle_to_mask
from semsam.serving import ServeLimits, create_app


@pytest.fixture(scope="module")
def client():
    app = create_app(model=load_model(), model_name="semsam_mobilenet", limits=ServeLimits(max_points_per_side=8))
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def example_id(client):
    return upload(client, png_bytes(read_image("semsam/assets/example.jpg"))).json()["image_id"]


def test_a_phrase_with_a_click_gives_ranked_labelled_matches(client, example_id):
    response = client.post(f"/api/images/{example_id}/text", json={"text": "hair", "points": [[220, 40]]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["found"] and body["reason"] is None and body["text"] == "hair"
    assert body["names"][0]["vocabulary"] == "part" and body["names"][0]["nearest"][0] == ["hair", 1.0]
    scores = [m["score"] for m in body["matches"]]
    assert scores == sorted(scores, reverse=True) and min(scores) >= body["threshold"]
    top = body["matches"][0]
    mask = rle_to_mask(top["segmentation"])
    assert mask.shape == (512, 512) and int(mask.sum()) == top["area"] and mask[40, 220]
    assert top["label"]["part"] == "hair"


def test_a_phrase_alone_searches_the_whole_image(client, example_id):
    body = client.post(f"/api/images/{example_id}/text", json={"text": "hair"}).json()
    mask = rle_to_mask(body["matches"][0]["segmentation"])
    # The best match is the astronaut's hair: it holds a point of the hair, and nearly all of it lies above the
    # mouth (y = 140); the hair with the face below it has 81% there.
    rows = mask.nonzero()[0]
    assert body["found"] and mask[40, 220] and (rows < 140).mean() >= 0.95


def test_nothing_matches_is_an_answer_not_an_error(client, example_id):
    body = client.post(f"/api/images/{example_id}/text", json={"text": "giraffe"}).json()
    assert body == {**body, "found": False, "matches": []} and "giraffe" in body["reason"]


@pytest.mark.parametrize(("request_body", "message"), [
    ({"text": ""}, "the text prompt is empty"),
    ({"text": "person:"}, "give both"),
    ({"text": "x" * 201}, "at most 200 characters"),
    ({"text": "dog", "points": [[10, 10]], "labels": [0]}, "at least one positive point or a box"),
    ({"text": "dog", "points": [[9999, 10]]}, "lie outside the 512x512 image"),
    ({"text": "dog", "objects": ","}, "contains an empty name"),
])
def test_bad_text_requests_are_refused_saying_why(client, example_id, request_body, message):
    response = client.post(f"/api/images/{example_id}/text", json=request_body)
    assert response.status_code == 422 and message in response.json()["detail"], response.text


def test_a_model_without_trained_heads_refuses_text_prompts(small_model, scene):
    with TestClient(create_app(model=small_model, model_name="random")) as client:
        image_id = upload(client, png_bytes(scene)).json()["image_id"]
        response = client.post(f"/api/images/{image_id}/text", json={"text": "dog"})
    assert response.status_code == 422 and "trained object/part heads" in response.json()["detail"]


def test_an_unknown_image_is_404(client):
    assert client.post("/api/images/nope/text", json={"text": "dog"}).status_code == 404

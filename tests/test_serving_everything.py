"""POST /api/images/{id}/everything: masks per level with the whole/part tree, and its limits."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from semsam import load_model
from semsam.io import rle_to_mask
from semsam.serving import ServeLimits, create_app
from serving_helpers import png_bytes, upload


@pytest.fixture(scope="module")
def client():
    # The embedded model: the small random one of conftest finds nothing that passes the quality filters.
    app = create_app(model=load_model(), model_name="semsam_mobilenet", limits=ServeLimits(max_points_per_side=8))
    with TestClient(app) as test_client:
        yield test_client


def test_everything_gives_levels_and_a_consistent_tree(client, scene):
    image_id = upload(client, png_bytes(scene)).json()["image_id"]
    response = client.post(f"/api/images/{image_id}/everything", json={"levels": [1, 3, 6], "points_per_side": 4})
    assert response.status_code == 200
    body = response.json()
    masks = body["masks"]
    assert body["levels"] == [1, 3, 6] and len(masks) > 0
    assert {m["level"] for m in masks} <= {1, 3, 6}
    assert [(m["level"], -m["area"]) for m in masks] == sorted((m["level"], -m["area"]) for m in masks)
    for mask in masks:
        decoded = rle_to_mask(mask["segmentation"])
        assert decoded.shape == (96, 128) and int(decoded.sum()) == mask["area"]
        if mask["parent"] is not None:
            parent = masks[mask["parent"]]
            assert parent["level"] > mask["level"] and mask["id"] in parent["children"]
            inside = (decoded & rle_to_mask(parent["segmentation"])).sum() / decoded.sum()
            assert inside >= 0.9
        for child in mask["children"]:
            assert masks[child]["parent"] == mask["id"]


def test_everything_names_objects_and_their_parts(client, scene):
    image_id = upload(client, png_bytes(scene)).json()["image_id"]
    masks = client.post(f"/api/images/{image_id}/everything", json={"points_per_side": 4}).json()["masks"]
    assert masks and all(mask["label"] is not None for mask in masks)
    for mask in masks:
        label = mask["label"]
        parent = None if mask["parent"] is None else masks[mask["parent"]]
        if parent is None or parent["label"]["object"] != label["object"]:
            assert mask["name"] == mask["path"] == label["object"]
        else:
            assert mask["name"] == label["part"]
            assert mask["path"] in (parent["path"], f"{parent['path']} > {label['part']}")


def test_everything_defaults_to_all_levels(client, scene):
    image_id = upload(client, png_bytes(scene)).json()["image_id"]
    body = client.post(f"/api/images/{image_id}/everything", json={"points_per_side": 2}).json()
    assert body["levels"] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    "request_body, status, message",
    [
        ({"levels": [0, 2]}, 422, "levels must be in 1..6"),
        ({"levels": [7]}, 422, "levels must be in 1..6"),
        ({"points_per_side": 9}, 422, "above this server's limit of 8"),
        ({"points_per_side": 0}, 422, "points_per_side: Input should be greater than or equal to 1"),
        ({"objects": ","}, 422, "contains an empty name"),
    ],
)
def test_bad_everything_requests(client, scene, request_body, status, message):
    image_id = upload(client, png_bytes(scene)).json()["image_id"]
    response = client.post(f"/api/images/{image_id}/everything", json=request_body)
    assert response.status_code == status and message in response.json()["detail"]


def test_everything_on_an_unknown_image_is_404(client):
    assert client.post("/api/images/feedbeef/everything", json={}).status_code == 404

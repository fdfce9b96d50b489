"""The HTTP API: uploads and their checks, predictions, the embedding cache, limits and errors."""

from __future__ import annotations

import base64
import copy
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from semsam import SemanticInfo
from semsam.cli.main import main
from semsam.grabcut import GrabCutRefiner
from semsam.io import rle_to_mask
from semsam.predictor import Predictor
from semsam.serving import ServeLimits, create_app
from semsam.serving.schemas import LowResLogits
from serving_helpers import png_bytes, upload


@pytest.fixture()
def counted_model(small_model, monkeypatch):
    """The small model with its image encoder's calls counted."""
    calls = []
    encode = small_model.encode_image

    def counting(*args, **kwargs):
        calls.append(1)
        return encode(*args, **kwargs)

    monkeypatch.setattr(small_model, "encode_image", counting)
    small_model.encode_calls = calls
    yield small_model
    del small_model.encode_calls


def make_client(model, **limits) -> TestClient:
    return TestClient(create_app(model=model, model_name="small", limits=ServeLimits(**limits)))


def slow_decoder(model, monkeypatch, seconds: float) -> None:
    decode = model.decode

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return decode(*args, **kwargs)

    monkeypatch.setattr(model, "decode", slow)


def test_upload_click_and_get_k_rle_masks(counted_model, scene):
    with make_client(counted_model) as client:
        uploaded = upload(client, png_bytes(scene))
        assert uploaded.status_code == 200
        info = uploaded.json()
        assert (info["width"], info["height"], info["encoded"]) == (128, 96, False)
        response = client.post(f"/api/images/{info['image_id']}/predict",
                               json={"points": [[60, 45], [10, 10]], "labels": [1, 0], "box": None})
        assert response.status_code == 200
        body = response.json()
        assert len(body["masks"]) == len(body["scores"]) == len(body["labels"]) == 6
        masks = [rle_to_mask(rle) for rle in body["masks"]]
        assert all(mask.shape == (96, 128) for mask in masks)
        assert body["areas"] == [int(mask.sum()) for mask in masks] and body["areas"] == sorted(body["areas"])
        assert body["labels"] == [None] * 6 and body["labels_available"] is False
        boxed = client.post(f"/api/images/{info['image_id']}/predict", json={"box": [30, 20, 110, 80]})
        assert boxed.status_code == 200 and len(boxed.json()["masks"]) == 6


def test_a_corrective_click_sends_back_the_chosen_masks_logits(small_model, scene):
    with make_client(small_model) as client:
        image_id = upload(client, png_bytes(scene)).json()["image_id"]
        first = client.post(f"/api/images/{image_id}/predict", json={"points": [[60, 45]], "return_logits": True})
        logits = first.json()["logits"]
        assert len(logits) == 6 and all(entry["shape"] == [24, 32] for entry in logits)
        assert client.post(f"/api/images/{image_id}/predict", json={"points": [[60, 45]]}).json()["logits"] is None
        chosen = LowResLogits.model_validate(logits[2])
        prompt = {"points": [[60, 45], [10, 10]], "labels": [1, 0]}
        second = client.post(f"/api/images/{image_id}/predict", json={**prompt, "mask_input": logits[2]})
        assert second.status_code == 200
    predictor = Predictor(small_model)
    predictor.set_image(scene)
    expected = predictor.predict(**prompt, mask_input=chosen.to_array())
    without = predictor.predict(**prompt)
    masks = np.stack([rle_to_mask(rle) for rle in second.json()["masks"]])
    assert np.array_equal(masks, expected.masks) and not np.array_equal(masks, without.masks)
    # float16 keeps the logits to about 3 significant digits.
    assert np.allclose(chosen.to_array(), predictor.predict(points=[[60, 45]]).logits[2], rtol=2e-3, atol=2e-3)


def test_refine_edges_answers_with_the_grabcut_refinement(small_model, scene):
    prompt = {"points": [[60, 45], [10, 10]], "labels": [1, 0]}
    with make_client(small_model) as client:
        image_id = upload(client, png_bytes(scene)).json()["image_id"]
        response = client.post(f"/api/images/{image_id}/predict", json={**prompt, "refine_edges": True})
        assert response.status_code == 200
    predictor = Predictor(small_model)
    predictor.set_image(scene)
    expected = GrabCutRefiner().refine_prediction(predictor, scene, predictor.predict(**prompt), prompt["points"],
                                                  prompt["labels"])
    body = response.json()
    masks = np.stack([rle_to_mask(rle) for rle in body["masks"]])
    assert np.array_equal(masks, expected.masks)
    assert body["areas"] == [int(mask.sum()) for mask in masks]
    assert np.allclose(body["boxes"], expected.boxes)


@pytest.mark.parametrize(
    "mask_input, message",
    [
        ({"shape": [24, 31], "data": base64.b64encode(bytes(24 * 31 * 2)).decode()}, "shape (24, 32)"),
        ({"shape": [24, 32], "data": "not base64!"}, "not valid base64"),
        ({"shape": [24, 32], "data": base64.b64encode(bytes(10)).decode()}, "needs 1536"),
        ({"shape": [24, 32], "data": base64.b64encode(np.full((24, 32), np.inf, "<f2").tobytes()).decode()},
         "NaN or infinite"),
        ({"shape": [4096, 32], "data": ""}, "less than or equal to 512"),
    ],
)
def test_bad_mask_inputs_get_422_naming_the_problem(small_model, scene, mask_input, message):
    with make_client(small_model) as client:
        image_id = upload(client, png_bytes(scene)).json()["image_id"]
        response = client.post(f"/api/images/{image_id}/predict",
                               json={"points": [[10, 10]], "mask_input": mask_input})
        assert response.status_code == 422 and message in str(response.json()["detail"])


def test_embedding_is_computed_once_per_image_and_the_cache_is_bounded(counted_model, scene):
    other = scene[::-1].copy()
    with make_client(counted_model, max_embeddings=1) as client:
        first = upload(client, png_bytes(scene)).json()["image_id"]
        for x in (60, 40, 90):
            assert client.post(f"/api/images/{first}/predict", json={"points": [[x, 45]]}).status_code == 200
        everything = client.post(f"/api/images/{first}/everything", json={"points_per_side": 2, "levels": [1]})
        assert everything.status_code == 200
        assert len(counted_model.encode_calls) == 1, "segment everything reuses the cached embedding"
        assert upload(client, png_bytes(scene)).json() == {"image_id": first, "width": 128, "height": 96,
                                                          "encoded": True}
        second = upload(client, png_bytes(other)).json()["image_id"]
        assert second != first
        client.post(f"/api/images/{second}/everything", json={"points_per_side": 2})
        client.post(f"/api/images/{second}/predict", json={"points": [[60, 45]]})
        assert len(counted_model.encode_calls) == 2, "an image first seen by segment everything is cached too"
        # The cache holds one embedding, so going back to the first image encodes it again.
        client.post(f"/api/images/{first}/predict", json={"points": [[60, 45]]})
        assert len(counted_model.encode_calls) == 3
        assert client.get("/api/info").json()["encodes"] == 3


def test_labels_use_the_requested_vocabulary(small_model, scene, tmp_path, monkeypatch):
    monkeypatch.setenv("SEMSAM_CACHE_DIR", str(tmp_path))
    model = copy.deepcopy(small_model)
    model.semantic = SemanticInfo(trained=True, objects=["person"], parts=["head"])
    with make_client(model) as client:
        image_id = upload(client, png_bytes(scene)).json()["image_id"]
        body = client.post(f"/api/images/{image_id}/predict",
                           json={"points": [[60, 45]], "objects": "cat, giraffe", "parts": "wheel,tail"}).json()
        assert body["labels_available"] is True
        assert {label["object"] for label in body["labels"]} <= {"cat", "giraffe"}
        assert {label["part"] for label in body["labels"]} <= {"wheel", "tail"}
        default = client.post(f"/api/images/{image_id}/predict", json={"points": [[60, 45]]}).json()
        assert {label["object"] for label in default["labels"]} == {"person"}


@pytest.mark.parametrize(
    "data, status, message",
    [
        (b"", 400, "is empty"),
        (b"hello, this is text", 415, "not an image this server reads"),
        (b"%PDF-1.7 pretending", 415, "not an image this server reads"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, 415, "cannot be read as an image"),
    ],
)
def test_non_images_are_refused_with_a_reason(small_model, scene, data, status, message):
    with make_client(small_model) as client:
        response = upload(client, data, "upload.bin")
        assert response.status_code == status and message in response.json()["detail"]
        assert upload(client, png_bytes(scene)).status_code == 200


def test_truncated_and_oversized_images_are_refused(small_model, scene):
    whole = png_bytes(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8))
    with make_client(small_model, max_upload_bytes=100_000, max_pixels=150 * 150) as client:
        truncated = upload(client, png_bytes(scene)[:400])
        assert truncated.status_code == 422 and "corrupt or truncated PNG" in truncated.json()["detail"]
        too_many_pixels = upload(client, png_bytes(np.zeros((200, 200, 3), np.uint8)))
        assert too_many_pixels.status_code == 413 and "40,000 pixels" in too_many_pixels.json()["detail"]
        assert len(whole) > 100_000
        too_big = upload(client, whole)
        assert too_big.status_code == 413 and "the limit is 0.1 MiB" in too_big.json()["detail"]
        # Far beyond the limit: refused from the Content-Length header, before the body is parsed.
        huge = upload(client, png_bytes(np.random.default_rng(1).integers(0, 255, (400, 400, 3), dtype=np.uint8)))
        assert huge.status_code == 413 and "the request is" in huge.json()["detail"]
        assert upload(client, png_bytes(scene)).status_code == 200


@pytest.mark.parametrize(
    "prompt, message",
    [
        ({"points": [[128, 10]]}, "outside the 128x96 image"),
        ({"points": [[10, -1]]}, "outside the 128x96 image"),
        ({"box": [10, 10, 200, 50]}, "must satisfy 0 <= x0 < x1 <= 128"),
        ({"points": [[10, 10]], "labels": [1, 0]}, "one entry per point"),
        ({"points": [[10, 10]], "labels": [2]}, "must be 1 (positive) or 0"),
        ({"points": [[10, 10]], "labels": [0]}, "at least one positive point or a box"),
        ({}, "at least one positive point or a box"),
        ({"points": [[10, 10]], "objects": "a,,b"}, "contains an empty name"),
        ({"points": [[10, 10]], "speed": "fast"}, "Extra inputs are not permitted"),
        ({"points": [[10, 10]] * 65}, "at most 64 per request"),
    ],
)
def test_bad_prompts_get_422_and_the_server_keeps_serving(small_model, scene, prompt, message):
    with make_client(small_model) as client:
        image_id = upload(client, png_bytes(scene)).json()["image_id"]
        response = client.post(f"/api/images/{image_id}/predict", json=prompt)
        assert response.status_code == 422 and message in str(response.json()["detail"])
        assert client.post(f"/api/images/{image_id}/predict", json={"points": [[10, 10]]}).status_code == 200


def test_non_finite_coordinates_are_refused(small_model, scene):
    with make_client(small_model) as client:
        image_id = upload(client, png_bytes(scene)).json()["image_id"]
        response = client.post(f"/api/images/{image_id}/predict", content=b'{"points": [[NaN, 3]]}',
                               headers={"Content-Type": "application/json"})
        assert response.status_code == 422 and "finite" in str(response.json()["detail"])


def test_unknown_image_is_404(small_model):
    with make_client(small_model) as client:
        response = client.post("/api/images/0123abcd/predict", json={"points": [[1, 1]]})
        assert response.status_code == 404 and "upload it again" in response.json()["detail"]


def test_forgotten_images_are_404(small_model, scene):
    with make_client(small_model, max_images=1) as client:
        first = upload(client, png_bytes(scene)).json()["image_id"]
        upload(client, png_bytes(scene[::-1].copy()))
        assert client.post(f"/api/images/{first}/predict", json={"points": [[1, 1]]}).status_code == 404


def test_excess_requests_wait_then_get_503(small_model, scene, monkeypatch):
    with make_client(small_model, max_concurrency=1, max_queue=1, queue_timeout_s=0.3) as client:
        image_id = upload(client, png_bytes(scene)).json()["image_id"]
        assert client.post(f"/api/images/{image_id}/predict", json={"points": [[60, 45]]}).status_code == 200
        slow_decoder(small_model, monkeypatch, 1.0)
        responses = []

        def click() -> None:
            responses.append(client.post(f"/api/images/{image_id}/predict", json={"points": [[60, 45]]}))

        threads = [threading.Thread(target=click) for _ in range(3)]
        for thread in threads:
            thread.start()
            time.sleep(0.05)
        for thread in threads:
            thread.join()
        codes = sorted(response.status_code for response in responses)
        assert codes == [200, 503, 503]
        for response in responses:
            if response.status_code == 503:
                assert "the server is busy" in response.json()["detail"] and response.headers["Retry-After"] == "1"
        monkeypatch.undo()
        assert client.post(f"/api/images/{image_id}/predict", json={"points": [[60, 45]]}).status_code == 200


def test_a_request_past_its_time_limit_gets_503_and_the_next_one_is_served(small_model, scene, monkeypatch):
    with make_client(small_model, request_timeout_s=0.5) as client:
        image_id = upload(client, png_bytes(scene)).json()["image_id"]
        client.post(f"/api/images/{image_id}/predict", json={"points": [[60, 45]]})
        slow_decoder(small_model, monkeypatch, 1.5)
        late = client.post(f"/api/images/{image_id}/predict", json={"points": [[60, 45]]})
        assert late.status_code == 503 and "longer than the 0.5 s limit" in late.json()["detail"]
        monkeypatch.undo()
        assert client.post(f"/api/images/{image_id}/predict", json={"points": [[60, 45]]}).status_code == 200


def test_page_example_and_openapi_are_served(small_model):
    with make_client(small_model) as client:
        assert "<canvas" in client.get("/").text
        for asset in ("app.js", "rle.js", "style.css"):
            assert client.get(f"/static/{asset}").status_code == 200
        example = client.get("/api/example")
        assert example.status_code == 200 and example.content.startswith(b"\xff\xd8\xff")
        schema = client.get("/openapi.json").json()
        assert {"/api/images", "/api/images/{image_id}/predict"} <= set(schema["paths"])
        assert {"PredictRequest", "PredictResponse"} <= set(schema["components"]["schemas"])


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="max_concurrency must be positive"):
        ServeLimits(max_concurrency=0)


def test_serve_help():
    done = subprocess.run([sys.executable, "-m", "semsam", "serve", "--help"], capture_output=True, text=True,
                          check=True)
    assert "usage: semsam serve" in done.stdout and "example" in done.stdout


def test_serve_refuses_bad_options_and_a_taken_port(capsys):
    assert main(["serve", "--port", "70000"]) == 2
    assert "semsam: error: --port must be in 0..65535" in capsys.readouterr().err
    assert main(["serve", "--workers", "0"]) == 2
    assert "semsam: error: --workers must be at least 1" in capsys.readouterr().err
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err

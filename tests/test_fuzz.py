"""Fuzzing with Hypothesis (seeded, bounded): the image reader, prompt validation and the HTTP API answer any
input with a result or a clear error, never a crash, a traceback or a 500."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from semsam import Predictor, read_image
from semsam.image import as_rgb_uint8
from semsam.serving import ServeLimits, create_app
from semsam.serving.uploads import UploadError, decode_upload
from serving_helpers import png_bytes, upload

# Seeded and bounded for CI; SEMSAM_FUZZ_EXAMPLES=2000 runs a longer hunt.
FUZZ = settings(max_examples=int(os.environ.get("SEMSAM_FUZZ_EXAMPLES", "60")), derandomize=True, deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def encoded(image: np.ndarray, kind: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=kind)
    return buffer.getvalue()


SMALL = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
SEEDS = [encoded(SMALL, kind) for kind in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")]


@st.composite
def damaged_images(draw: st.DrawFn) -> bytes:
    """A valid small image file with some bytes changed, cut short or extended, or plain random bytes."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=256))
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut] if draw(st.booleans()) else data) + draw(st.binary(max_size=16))


@FUZZ
@given(data=damaged_images())
def test_the_image_reader_returns_rgb_or_says_why_not(tmp_path, data):
    path = tmp_path / "fuzzed.img"
    path.write_bytes(data)
    try:
        image = read_image(path)
    except ValueError as error:
        event(f"refused: {type(error).__name__}")
        assert str(path) in str(error)
    else:
        event("read")
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    try:
        decode_upload(data, filename="fuzzed", max_bytes=2**20, max_pixels=2**20)
    except UploadError as error:
        assert error.status in (400, 413, 415, 422) and str(error)
    except ValueError as error:  # decodable, but not an image array semsam takes (e.g. float out of [0, 1])
        assert str(error)


@FUZZ
@given(array=hnp.arrays(dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.int64, np.float32, np.float64,
                                                np.bool_, np.complex64]),
                        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)))
def test_arrays_become_rgb_or_are_refused_by_name(array):
    try:
        image = as_rgb_uint8(array)
    except ValueError as error:
        assert str(error)
    else:
        assert image.dtype == np.uint8 and image.shape == (*array.shape[:2], 3) and image.flags.c_contiguous


NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6))
# Mostly near or inside the 128 x 96 test image, so that many prompts are valid and reach the model.
COORDINATES = st.one_of(st.integers(-3, 130), st.floats(-3, 130), NUMBERS)
POINT = st.tuples(COORDINATES, COORDINATES)
POINTS = st.one_of(st.lists(POINT, min_size=1, max_size=2),
                   st.lists(st.one_of(POINT, st.lists(NUMBERS, max_size=3)), max_size=4))
LABELS = st.lists(st.sampled_from([1, 1, 0, 2, -1]), max_size=4)
BOXES = st.one_of(st.tuples(COORDINATES, COORDINATES, COORDINATES, COORDINATES), st.lists(NUMBERS, max_size=5))


@pytest.fixture(scope="module")
def predictor(small_model, scene):
    predictor = Predictor(small_model)
    predictor.set_image(scene)
    return predictor


@FUZZ
@given(points=st.none() | POINTS, labels=st.one_of(st.none(), st.none(), LABELS), box=st.one_of(st.none(), st.none(), BOXES),
       mask=st.one_of(st.none(), st.none(), hnp.arrays(np.float32, st.sampled_from([(32, 32), (1, 32, 32), (8, 8)]),
                                                       elements=st.floats(width=32))))
def test_prompts_give_masks_or_a_clear_error(predictor, points, labels, box, mask):
    try:
        result = predictor.predict(points=points, labels=labels, box=box, mask_input=mask)
    except ValueError as error:
        event(f"refused: {str(error)[:30]}")
        assert str(error)
    else:
        event("predicted")
        assert result.masks.shape == (6, 96, 128) and np.isfinite(result.scores).all()


JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**9, 10**9) | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(max_size=8), lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
FINITE = COORDINATES.filter(lambda v: v == v and abs(v) != float("inf"))


VOCABULARIES = {"objects": st.text(max_size=30), "parts": st.text(max_size=30)}
PREDICT_BODIES = st.fixed_dictionaries({"points": st.lists(st.tuples(FINITE, FINITE), min_size=1, max_size=2)},
                                       optional={"labels": LABELS, "box": st.tuples(FINITE, FINITE, FINITE, FINITE),
                                                 **VOCABULARIES})
EVERYTHING_BODIES = st.fixed_dictionaries({}, optional={"levels": st.lists(st.integers(-1, 7), max_size=4),
                                                        "points_per_side": st.integers(-1, 5), **VOCABULARIES})


@pytest.fixture(scope="module")
def client(small_model, scene):
    limits = ServeLimits(max_points_per_side=4)
    with TestClient(create_app(model=small_model, model_name="small", limits=limits)) as client:
        client.image_id = upload(client, png_bytes(scene)).json()["image_id"]
        yield client


def assert_answered(response) -> None:  # noqa: ANN001
    event(f"status {response.status_code}")
    assert response.status_code in (200, 400, 404, 405, 413, 415, 422), response.text
    body = json.loads(response.text)  # always valid JSON
    assert response.status_code == 200 or body["detail"]


@FUZZ
@given(body=st.one_of(PREDICT_BODIES, EVERYTHING_BODIES, JSON), path=st.sampled_from(["predict", "everything"]), known_image=st.sampled_from([True, True, True, False]))
def test_the_api_answers_any_json_body(client, body, path, known_image):
    image_id = client.image_id if known_image else "0123456789abcdef0123"
    assert_answered(client.post(f"/api/images/{image_id}/{path}", json=body))


@FUZZ
@given(raw=st.binary(max_size=64), path=st.sampled_from(["predict", "everything"]))
def test_the_api_answers_any_raw_body(client, raw, path):
    assert_answered(client.post(f"/api/images/{client.image_id}/{path}", content=raw,
                                headers={"Content-Type": "application/json"}))


@FUZZ
@given(data=damaged_images(), name=st.text(max_size=20))
def test_the_api_answers_any_upload(client, data, name):
    assert_answered(upload(client, data, name or "x"))

"""Hostile or broken inputs to the library: huge image headers, float images, NaN prompts, broken checkpoints."""

from __future__ import annotations

import json
import struct
import time
import tracemalloc
import zlib
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from semsam import CheckpointError, Predictor, SemanticInfo, load_model, read_image, save_checkpoint
from semsam.image import ImageTooLarge
from semsam.io import write_json_atomic


def png_with_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height 8-bit grey pixels (its pixel data is empty)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [28000, 100000])
def test_a_huge_image_header_is_refused_before_decoding(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_header(side, side))
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ImageTooLarge, match="limit is 400,000,000 pixels|above the limit of 400,000,000"):
            read_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1e6 and time.perf_counter() - start < 1.0


def test_a_float_image_in_0_1_is_read_as_its_values(tmp_path):
    values = np.linspace(0, 1, 20 * 30, dtype=np.float32).reshape(20, 30)
    Image.fromarray(values, mode="F").save(tmp_path / "float.tif")
    image = read_image(tmp_path / "float.tif")
    assert image.shape == (20, 30, 3) and np.array_equal(image[..., 0], np.round(values * 255).astype(np.uint8))


def test_a_float_image_outside_0_1_is_refused(tmp_path):
    Image.fromarray(np.full((4, 4), 200.0, np.float32), mode="F").save(tmp_path / "float255.tif")
    with pytest.raises(ValueError, match="float images must be in \\[0, 1\\]"):
        read_image(tmp_path / "float255.tif")


@pytest.mark.parametrize("value", [np.nan, np.inf, 1e300])
def test_a_non_finite_mask_input_is_refused(small_model, scene, value):
    predictor = Predictor(small_model)
    predictor.set_image(scene)
    logits = predictor.predict(points=[(60, 45)]).logits[0]
    with pytest.raises(ValueError, match="mask_input contains NaN or infinite values"):
        predictor.predict(points=[(60, 45)], mask_input=np.full_like(logits, value, dtype=np.float64))


def test_a_checkpoint_with_a_non_finite_tensor_is_refused(tmp_path, small_model, small_config):
    path = tmp_path / "nan.safetensors"
    save_checkpoint(path, small_model, small_config, SemanticInfo())
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    tensors["sem_seg_head.predictor.mask_tokens.weight"][0, 0] = float("nan")
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match="NaN or infinite values in 1 tensor\\(s\\): "
                                              "sem_seg_head.predictor.mask_tokens.weight"):
        load_model(checkpoint=path)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"image_size": 0}, "image_size = 0 must be a whole number in \\[1, 8192\\]"),
        ({"image_size": -384}, "image_size = -384 must be a whole number"),
        ({"pixel_std": (58.0, 0.0, 57.0)}, "pixel_std = \\(58.0, 0.0, 57.0\\) must be positive"),
        ({"pixel_mean": (float("nan"), 1.0, 1.0)}, "pixel_mean = \\(nan, 1.0, 1.0\\) must be finite"),
        ({"backbone": {"embed_dim": 200000}}, "backbone.embed_dim = 200000 must be a whole number in \\[1, 8192\\]"),
        ({"decoder": {"hidden_dim": 64}}, "has a config no model can be built from: mask_dim"),
        ({"decoder": {"ffn_dim": 1024}}, "does not match the model config"),
    ],
)
def test_a_checkpoint_config_is_checked_before_a_model_is_built(tmp_path, small_model, small_config, change,
                                                                message):
    config = replace(small_config, **{key: replace(getattr(small_config, key), **value) if isinstance(value, dict)
                                      else value for key, value in change.items()})
    path = tmp_path / "crafted.safetensors"
    save_checkpoint(path, small_model, config, SemanticInfo())
    with pytest.raises(CheckpointError, match=message):
        load_model(checkpoint=path)


def test_json_output_is_always_valid(tmp_path):
    path = tmp_path / "result.json"
    write_json_atomic(path, {"score": 0.5})
    with pytest.raises(ValueError, match="NaN or infinite"):
        write_json_atomic(path, {"score": float("nan")})
    assert json.loads(path.read_text()) == {"score": 0.5} and len(list(tmp_path.iterdir())) == 1

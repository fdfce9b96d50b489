import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from semsam import CheckpointError, Predictor, SemanticInfo, SemanticSam, load_model, save_checkpoint
from semsam.checkpoint import read_checkpoint


def _predict(model, scene):
    p = Predictor(model)
    p.set_image(scene)
    return p.predict(points=[(60, 45), (10, 80)], labels=[1, 0])


def test_round_trip_is_bit_identical(tmp_path, small_model, small_config, scene):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, small_model, small_config, SemanticInfo())
    loaded = load_model(checkpoint=path)
    assert loaded.config == small_config
    before, after = _predict(small_model, scene), _predict(loaded, scene)
    assert np.array_equal(before.logits, after.logits)
    assert np.array_equal(before.scores, after.scores)
    assert np.array_equal(before.masks, after.masks)


def test_aliased_modules_are_stored_once_and_stay_shared(tmp_path, small_model, small_config):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, small_model, small_config, SemanticInfo())
    keys = set(load_file(str(path)))
    assert any(k.startswith("sem_seg_head.predictor._bbox_embed.") for k in keys)
    assert not any(k.startswith("sem_seg_head.predictor.bbox_embed.") for k in keys)
    head = load_model(checkpoint=path).sem_seg_head.predictor
    assert head.decoder_norm is head.decoder.norm
    assert all(m is head._bbox_embed for m in head.decoder.bbox_embed)


def test_semantic_info_round_trip(tmp_path, small_model, small_config):
    path = tmp_path / "model.safetensors"
    info = SemanticInfo(trained=True, objects=["cat", "dog"], parts=["head"])
    save_checkpoint(path, small_model, small_config, info)
    assert read_checkpoint(path)[2] == info
    assert load_model(checkpoint=path).semantic == info


def test_mismatched_checkpoint_names_keys_and_shapes(tmp_path, small_model, small_config):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, small_model, small_config, SemanticInfo())
    tensors, metadata = load_file(str(path)), _metadata(path)
    del tensors["sem_seg_head.predictor.mask_tokens.weight"]
    tensors["extra.weight"] = torch.zeros(3)
    tensors["sem_seg_head.predictor.label_enc.weight"] = torch.zeros(5, 7)
    broken = tmp_path / "broken.safetensors"
    save_file(tensors, str(broken), metadata=metadata)
    with pytest.raises(CheckpointError) as error:
        load_model(checkpoint=broken)
    text = str(error.value)
    assert "1 missing keys: sem_seg_head.predictor.mask_tokens.weight" in text
    assert "1 unexpected keys: extra.weight" in text
    assert "sem_seg_head.predictor.label_enc.weight: checkpoint (5, 7) vs model (2, 128)" in text


def test_checkpoint_for_another_config_is_refused(tmp_path, small_model, small_config):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, small_model, small_config, SemanticInfo())
    with pytest.raises(CheckpointError, match="different config than 'semsam_mobilenet'.*image_size"):
        load_model("semsam_mobilenet", checkpoint=path)


def test_shape_mismatch_against_named_config(tmp_path, small_config):
    other = replace(small_config, decoder=replace(small_config.decoder, num_layers=2))
    model = SemanticSam(config=other)
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, model, other, SemanticInfo())
    tensors, metadata = load_file(str(path)), _metadata(path)
    metadata["config"] = metadata["config"].replace('"num_layers": 2', '"num_layers": 4', 1)
    assert metadata["config"] != _metadata(path)["config"]
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match="missing keys"):
        load_model(checkpoint=path)


@pytest.mark.parametrize(
    "content, message",
    [(b"", "not a readable safetensors file"), (b"\x00" * 64, "not a readable safetensors file")],
)
def test_corrupt_checkpoint(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_model(checkpoint=path)


def test_missing_checkpoint_and_foreign_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(checkpoint=tmp_path / "nothing.safetensors")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="no semsam metadata"):
        load_model(checkpoint=foreign)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'sam_vit_z'; known models: .*semsam_mobilenet"):
        load_model("sam_vit_z")


def test_interrupted_save_keeps_the_old_file(tmp_path, small_model, small_config, monkeypatch):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, small_model, small_config, SemanticInfo())
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("semsam.checkpoint.save_file", fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, small_model, small_config, SemanticInfo())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def _metadata(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata())


@pytest.mark.parametrize("version", ["1", "2"])
def test_older_formats_load_with_their_layout_and_resizing(tmp_path, small_model, small_config, scene, version):
    """Format 2 keyed input_proj res5 first, formats 1-2 named the text projection `lang_mapper`, and both
    predate the resize rule: such files were trained with long-side resizing."""
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, small_model, small_config, SemanticInfo())
    tensors, metadata = load_file(str(path)), _metadata(path)
    head = "sem_seg_head.predictor."
    tensors[f"{head}lang_mapper"] = tensors.pop(f"{head}text_projection")
    if version == "2":
        proj = "sem_seg_head.pixel_decoder.input_proj."
        swapped = {key.replace(f"{proj}0.", f"{proj}2.") if f"{proj}0." in key else key.replace(f"{proj}2.", f"{proj}0.")
                   : value for key, value in tensors.items()}
        assert swapped[f"{proj}0.0.weight"].shape[1] == 8 * small_config.backbone.embed_dim  # res5 first
        tensors = swapped
    config = json.loads(metadata["config"])
    assert config.pop("resize") == "long_side"
    metadata.update(format_version=version, config=json.dumps(config))
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata=metadata)
    loaded = load_model(checkpoint=old)
    assert loaded.config == small_config
    before, after = _predict(small_model, scene), _predict(loaded, scene)
    assert np.array_equal(before.logits, after.logits) and np.array_equal(before.masks, after.masks)


def test_embedded_default_keeps_its_training_resizing():
    model = load_model()
    assert model.config.resize == "long_side" and model.config.image_size == 320
    assert model.resize_image(np.zeros((321, 481, 3), np.uint8)).shape == (214, 320, 3)


def test_unknown_format_version_is_refused(tmp_path, small_model, small_config):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, small_model, small_config, SemanticInfo())
    metadata = dict(_metadata(path), format_version="99")
    save_file(load_file(str(path)), str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match="format version '99'.*upgrade semsam"):
        load_model(checkpoint=path)

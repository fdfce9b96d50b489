"""Semantic-SAM's released layout: every key and shape of the official files accounted for."""

from __future__ import annotations

import re

import pytest
import torch

from semsam import MODEL_CONFIGS, CheckpointError, build_model, load_model
from semsam.cli.main import main
from helpers import SMALL_SWIN
from official_layout import SWIN_L, SWIN_T, semantic_sam_layout

# Our extra key: the released files lack it (their classification heads were never trained).
OURS_ONLY = {"sem_seg_head.predictor.text_projection", "sem_seg_head.predictor.logit_scale"}


@pytest.mark.parametrize(("name", "swin"), [("semantic_sam_t", SWIN_T), ("semantic_sam_l", SWIN_L)])
def test_full_key_and_shape_list(name, swin):
    with torch.device("meta"):
        model = build_model(name)
    ours = {key: tuple(t.shape) for key, t in model.state_dict().items() if key not in OURS_ONLY}
    official = semantic_sam_layout(**swin)
    assert sorted(set(ours) - set(official)) == []
    assert sorted(set(official) - set(ours)) == []
    assert {k: v for k, v in ours.items() if official[k] != v} == {}


def _official_file(path, layout, **changes):
    """A file shaped like a release: outer "model" dict, `model.` prefixes, aliases equal, a criterion buffer."""
    generator = torch.Generator().manual_seed(0)
    tensors = {key: torch.randn(shape, generator=generator) for key, shape in layout.items()}
    for key in tensors:
        if key.endswith("relative_position_index"):
            tensors[key] = torch.randint(0, 100, layout[key], generator=generator)
        canonical = re.sub(r"predictor\.(decoder\.)?bbox_embed\.\d+\.", "predictor._bbox_embed.", key)
        canonical = canonical.replace("predictor.decoder_norm.", "predictor.decoder.norm.")
        tensors[key] = tensors[canonical]
    tensors.update(changes)
    state = {f"model.{k}": v for k, v in tensors.items()}
    state["model.criterion.empty_weight"] = torch.ones(3)
    torch.save({"model": state, "iteration": 1}, path)
    return tensors


@pytest.fixture(autouse=True)
def swin_tiny(monkeypatch):
    """The previous default's architecture, registered for these tests only, at its input size."""
    from dataclasses import replace

    # The releases have neither a click refiner nor a rank head.
    official = replace(SMALL_SWIN.decoder, click_refiner=False, rank_head=False)
    monkeypatch.setitem(MODEL_CONFIGS, "swin_tiny", replace(SMALL_SWIN, image_size=384, decoder=official))


TINY = dict(embed=48, depths=(2, 2, 4, 1), heads=(2, 4, 8, 16), window=7, dim=128, ffn=512, encoder_layers=2,
            decoder_layers=4, attn_heads=4, class_dim=384)


def test_a_release_shaped_file_loads_every_tensor(tmp_path):
    layout = semantic_sam_layout(**TINY)
    path = tmp_path / "release.pth"
    tensors = _official_file(path, layout)
    model = load_model("swin_tiny", checkpoint=path)
    state = model.state_dict()
    for key, tensor in tensors.items():
        assert torch.equal(state[key], tensor), key
    assert model.sem_seg_head.predictor.logit_scale.item() == 1.0  # absent from releases: its initial value


def test_differing_aliases_and_missing_keys_are_refused(tmp_path):
    layout = semantic_sam_layout(**TINY)
    alias = "sem_seg_head.predictor.bbox_embed.2.layers.0.weight"
    _official_file(tmp_path / "bad.pth", layout, **{alias: torch.zeros(layout[alias])})
    with pytest.raises(CheckpointError, match="should equal .*_bbox_embed.layers.0.weight"):
        load_model("swin_tiny", checkpoint=tmp_path / "bad.pth")
    del layout["sem_seg_head.pixel_decoder.transformer.level_embed"]
    _official_file(tmp_path / "short.pth", layout)
    with pytest.raises(CheckpointError, match="1 missing keys: sem_seg_head.pixel_decoder.transformer.level_embed"):
        load_model("swin_tiny", checkpoint=tmp_path / "short.pth")


def test_official_file_needs_a_model_name(tmp_path):
    _official_file(tmp_path / "release.pth", semantic_sam_layout(**TINY))
    with pytest.raises(ValueError, match="carries no config: name its model"):
        load_model(checkpoint=tmp_path / "release.pth")
    assert "swin_tiny" in MODEL_CONFIGS


def test_conversion_names_our_own_tensors(tmp_path, capsys):
    _official_file(tmp_path / "release.pth", semantic_sam_layout(**TINY))
    assert main(["convert", "swin_tiny", str(tmp_path / "release.pth")]) == 0
    out = capsys.readouterr().out
    assert f"keep their initial values: {', '.join(sorted(OURS_ONLY, reverse=True))}" in out

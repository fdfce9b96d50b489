"""Numerical parity with the reference segment-anything package, on random weights saved as an official .pth."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from semsam import MODEL_CONFIGS, Predictor, Prompt, build_model, load_model
from semsam.config import SamConfig
from sam_reference import import_segment_anything

SMALL = SamConfig(encoder_embed_dim=192, encoder_depth=4, encoder_num_heads=6, global_attn_indexes=(1, 3),
                  image_size=256)


def _reference_model(sam, config: SamConfig) -> torch.nn.Module:
    """A reduced ViT built from the reference's own classes, with every tensor randomised."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = config.image_size // config.patch_size
    model = Sam(
        image_encoder=ImageEncoderViT(
            depth=config.encoder_depth, embed_dim=config.encoder_embed_dim, img_size=config.image_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=config.encoder_num_heads,
            patch_size=config.patch_size, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=config.global_attn_indexes, window_size=config.window_size, out_chans=256,
        ),
        prompt_encoder=PromptEncoder(embed_dim=256, image_embedding_size=(grid, grid),
                                     input_image_size=(config.image_size, config.image_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(
            depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8), transformer_dim=256, iou_head_depth=3,
            iou_head_hidden_dim=256),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
    )
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.add_(torch.randn(tensor.shape, generator=generator) * 0.05)
    return model.eval()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    sam = import_segment_anything(monkeypatch)
    reference = _reference_model(sam, SMALL)
    path = tmp_path_factory.mktemp("sam") / "sam_small.pth"
    torch.save(reference.state_dict(), path)
    monkeypatch.setitem(MODEL_CONFIGS, "sam_small_test", SMALL)
    ours = load_model("sam_small_test", checkpoint=path)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(192, 256, 3), dtype=np.uint8)  # longest side = image_size: no resizing
    image[40:150, 60:200] = (220, 40, 40)
    reference_predictor = sam.SamPredictor(reference)
    reference_predictor.set_image(image)
    predictor = Predictor(ours)
    predictor.set_image(image)
    yield reference_predictor, predictor
    monkeypatch.undo()


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

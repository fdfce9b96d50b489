"""The click refiner: click and similarity maps, a fresh refiner that changes nothing, a trained one that acts
where clicked, its config switch, and training that adds one to a trained model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from semsam import load_model
from semsam.build import with_new_parts
from semsam.checkpoint import save_checkpoint
from semsam.config import MODEL_CONFIGS, SemanticInfo, SemanticSamConfig, check_config
from semsam.modeling import SemanticSam
from semsam.modeling.click_refiner import ClickRefiner, click_maps, similarity_maps
from semsam.prediction import Prompt
from semsam.predictor import Predictor
from semsam.training.config import load_train_config
from semsam.training.trainer import Trainer

from helpers import MICRO, SMALL_SWIN, halves_annotations, rect, scene_image, write_bsds


def with_refiner(config: SemanticSamConfig, enabled: bool) -> SemanticSamConfig:
    return replace(config, decoder=replace(config.decoder, click_refiner=enabled))


def test_click_maps_peak_at_their_clicks_and_ignore_padding():
    points = torch.tensor([[[[0.25, 0.5], [0.75, 0.5], [0.5, 0.1]]]])
    labels = torch.tensor([[[1, 0, -1]]])
    positive, negative = click_maps(points, labels, (8, 16), radius=1.0)
    assert positive.shape == negative.shape == (1, 1, 8, 16)
    # (0.25, 0.5) lies on the corner of pixels (3..4, 3..4): the four around it share the peak.
    assert positive[0, 0].argmax() // 16 in (3, 4) and positive[0, 0].argmax() % 16 in (3, 4)
    assert negative[0, 0, 4, 12] == pytest.approx(negative.max().item()) and negative[0, 0, :, :8].max() < 1e-3
    assert positive[0, 0, 0, 8] < 1e-3  # the padded third point makes no bump


def test_a_fresh_refiner_keeps_a_trained_models_outputs():
    torch.manual_seed(0)
    plain = SemanticSam(config=with_refiner(SMALL_SWIN, False)).eval()
    refined = SemanticSam(config=with_refiner(SMALL_SWIN, True)).eval()
    assert refined.sem_seg_head.predictor.click_refiner is not None
    assert plain.sem_seg_head.predictor.click_refiner is None
    refined.load_state_dict(with_new_parts(refined, plain.state_dict()))
    image = scene_image(rect(12, 16, 36, 44, size=(64, 64)))
    prompt = Prompt(points=np.array([[30.0, 24.0], [5.0, 5.0]]), labels=np.array([1, 0]))
    outputs = []
    for model in (plain, refined):
        predictor = Predictor(model)
        predictor.set_image(image)
        outputs.append(predictor.predict_low_res([prompt], multimask=True).logits)
    torch.testing.assert_close(outputs[0], outputs[1])


def test_similarity_maps_find_the_pixels_that_look_like_each_click():
    embeddings = torch.zeros(1, 2, 4, 4)
    embeddings[0, 0, :, :2] = 1.0  # left half looks like one thing, right half like another
    embeddings[0, 1, :, 2:] = 1.0
    points, labels = torch.tensor([[[[0.1, 0.1], [0.9, 0.9]]]]), torch.tensor([[[1, 0]]])
    positive, negative = similarity_maps(points, labels, embeddings)
    assert positive[0, 0, :, :2].min() == pytest.approx(1.0) and positive[0, 0, :, 2:].abs().max() < 1e-6
    assert negative[0, 0, :, 2:].min() == pytest.approx(1.0) and negative[0, 0, :, :2].abs().max() < 1e-6
    none, _ = similarity_maps(points, torch.tensor([[[0, -1]]]), embeddings)
    assert (none == 0).all()


def test_a_negative_click_changes_the_refined_logits_where_the_image_looks_like_it():
    torch.manual_seed(0)
    refiner = ClickRefiner(feature_dim=2)
    with torch.no_grad():
        refiner.project.weight.copy_(torch.eye(2).repeat(8, 1)[:, :, None, None])
        refiner.project.bias.zero_()
        refiner.net[-1].weight.normal_(std=0.5)
    features = torch.zeros(1, 2, 32, 32)
    features[0, 0, :, :16] = features[0, 1, :, 16:] = 1.0
    logits, prior = torch.zeros(1, 1, 6, 32, 32), torch.zeros(1, 1, 32, 32)
    points, labels = torch.tensor([[[[0.1, 0.5], [0.9, 0.5]]]]), torch.tensor([[[1, 0]]])
    embeddings = refiner.embed(features)
    without = refiner(logits, points[:, :, :1], labels[:, :, :1], prior, embeddings)
    with_click = refiner(logits, points, labels, prior, embeddings)
    change = (with_click - without).abs()[0, 0]
    # Far from the click but on the clicked side, the logits change; on the other side they do not.
    assert change[:, :8, 18:24].mean() > 0.01 and change[:, :, 4:12].max() < 1e-5


def test_the_refiner_switch_must_be_true_or_false():
    check_config(with_refiner(SMALL_SWIN, True))
    with pytest.raises(ValueError, match="click_refiner = 1 must be true or false"):
        check_config(with_refiner(SMALL_SWIN, 1))


def test_training_adds_a_refiner_to_a_trained_model_and_teaches_it(tmp_path: Path, monkeypatch):
    """init_checkpoint without a refiner: it starts at zero, learns at refiner_lr_scale, and the result loads."""
    monkeypatch.setitem(MODEL_CONFIGS, "micro", MICRO)
    monkeypatch.setitem(MODEL_CONFIGS, "micro_refined", with_refiner(MICRO, True))
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "plain.safetensors", SemanticSam(config=MICRO), MICRO, SemanticInfo())
    write_bsds(tmp_path / "bsds", "train", "0001", halves_annotations())
    lines = ['model = "micro_refined"', f'output_dir = "{tmp_path / "run"}"', "steps = 2", "batch_size = 2",
             "prompts_per_image = 4", "image_size = 64", "num_points = 64", "warmup_steps = 1", "log_every = 1",
             f'init_checkpoint = "{tmp_path / "plain.safetensors"}"', "correction_prob = 1.0",
             "max_corrections = 2", "correct_all_outputs = true", "refiner_lr_scale = 20.0",
             "[[datasets]]", 'kind = "bsds500"', f'root = "{tmp_path / "bsds"}"', 'split = "train"']
    (tmp_path / "run.toml").write_text("\n".join(lines) + "\n")
    trainer = Trainer(config=load_train_config(tmp_path / "run.toml"))
    refiner_lr = [g["lr"] for g in trainer.optimizer.param_groups if g["params"][0] is next(
        trainer.model.sem_seg_head.predictor.click_refiner.parameters())]
    assert refiner_lr and refiner_lr[0] == pytest.approx(20 * trainer.optimizer.param_groups[1]["lr"])
    trainer.run()
    model = load_model(checkpoint=tmp_path / "run" / "final.safetensors")
    assert model.sem_seg_head.predictor.click_refiner.net[-1].weight.abs().sum() > 0

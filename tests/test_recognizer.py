"""The recognizer: a frozen ImageNet network's mask-pooled features naming objects beside the head."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from semsam import load_model
from semsam.checkpoint import CheckpointError, save_checkpoint
from semsam.cli.main import main
from semsam.config import MobileNetV2Config, RecognizerConfig, SemanticSamConfig, check_config
from semsam.data.synthetic import OBJECT_NAMES, SyntheticPartsDataset
from semsam.modeling.mobilenet_v2 import MobileNetV2Classifier
from semsam.modeling.recognizer import MaskRecognizer
from semsam.prediction import Prompt
from semsam.predictor import Predictor
from semsam.text import TextEncoder
from semsam.training.recognizer import fit_recognizer, load_imagenet_embedder
from semsam.training.trainer import Trainer

from helpers import synthetic_config

PROMPTS = [Prompt(points=[[20, 30]]), Prompt(points=[[44, 12]]), Prompt(box=[5, 5, 60, 60])]


def random_classifier(seed: int = 0) -> MobileNetV2Classifier:
    """A random MobileNetV2 whose features keep their variance through the layers (PyTorch's default
    initialisation shrinks it until every image looks alike), standing in for the ImageNet weights."""
    torch.manual_seed(seed)
    network = MobileNetV2Classifier(config=MobileNetV2Config())
    for module in network.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            torch.nn.init.zeros_(module.bias)
    return network


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    """A converted-ImageNet-like file: a random MobileNetV2 classifier's tensors."""
    path = tmp_path_factory.mktemp("imagenet") / "imagenet.safetensors"
    save_file({name: tensor.contiguous() for name, tensor in random_classifier().state_dict().items()}, str(path))
    return path


def test_config_round_trips_with_and_without_a_recognizer():
    with_one = SemanticSamConfig(recognizer=RecognizerConfig(input_size=256))
    assert SemanticSamConfig.from_dict(with_one.to_dict()) == with_one
    older = SemanticSamConfig().to_dict()
    del older["recognizer"]
    assert SemanticSamConfig.from_dict(older).recognizer is None
    check_config(SemanticSamConfig())
    with pytest.raises(ValueError, match="recognizer.input_size = 0"):
        check_config(SemanticSamConfig(recognizer=RecognizerConfig(input_size=0)))


def test_pool_averages_the_features_inside_a_mask_and_the_image_when_empty():
    recognizer = MaskRecognizer(config=RecognizerConfig(input_size=64))
    feature_map = torch.arange(2 * 2 * 3, dtype=torch.float32).view(3, 2, 2)
    top_left, empty = torch.zeros(8, 8), torch.zeros(8, 8)
    top_left[:4, :4] = 1
    pooled = recognizer.pool(feature_map, torch.stack([top_left, empty]))
    torch.testing.assert_close(pooled[0], feature_map[:, 0, 0])
    torch.testing.assert_close(pooled[1], feature_map.mean((1, 2)))


def _labelled_copy(model, *, fitted: bool, projection_seed: int | None = None):
    """A copy of the model, its recognizer fitted on the model's object names or not, with a random projection
    when `projection_seed` is given (as built, the projection is zero)."""
    copied = copy.deepcopy(model)
    copied.semantic = replace(copied.semantic, recognizer_names=list(copied.semantic.objects) if fitted else [])
    if projection_seed is not None:
        torch.manual_seed(projection_seed)
        copied.recognizer.projection.normal_(std=0.05)
    return copied


def test_an_unfitted_or_zero_recognizer_changes_no_probability(micro_labelled_model):
    image = SyntheticPartsDataset(split="val", length=1, image_size=64)[0].image
    results = []
    for fitted in (False, True):
        predictor = Predictor(_labelled_copy(micro_labelled_model, fitted=fitted))
        predictor.set_image(image)
        results.append(predictor.predict_low_res(PROMPTS))
    torch.testing.assert_close(results[1].label_probabilities[0], results[0].label_probabilities[0])


def test_object_probabilities_are_the_head_times_the_recognizer_renormalised(micro_labelled_model):
    image = SyntheticPartsDataset(split="val", length=1, image_size=64)[0].image
    model = _labelled_copy(micro_labelled_model, fitted=False, projection_seed=1)
    head_only = Predictor(model)
    head_only.set_image(image)
    head = head_only.predict_low_res(PROMPTS)
    fused_model = _labelled_copy(model, fitted=True)
    fused = Predictor(fused_model)
    fused.set_image(image)
    result = fused.predict_low_res(PROMPTS)

    valid_h, valid_w = result.valid_size
    masks = result.logits[..., :valid_h, :valid_w].flatten(0, 1) > 0
    recognizer = fused_model.recognizer
    text = TextEncoder().encode(head_only.vocabulary[0])
    seen = recognizer.logits(recognizer.pool(recognizer.encode(image), masks), text).softmax(-1)
    expected = head.label_probabilities[0] * seen.view(*result.logits.shape[:2], -1)
    expected = expected / expected.sum(-1, keepdim=True)
    torch.testing.assert_close(result.label_probabilities[0], expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(result.label_probabilities[0], head.label_probabilities[0], atol=1e-3)
    torch.testing.assert_close(result.label_probabilities[1], head.label_probabilities[1])
    torch.testing.assert_close(result.logits, head.logits)


def test_the_recognizer_sits_out_vocabularies_with_names_it_was_not_fitted_on(micro_labelled_model):
    image = SyntheticPartsDataset(split="val", length=1, image_size=64)[0].image
    model = _labelled_copy(micro_labelled_model, fitted=True, projection_seed=1)
    predictor = Predictor(model)
    assert predictor.recognizer_active
    predictor.set_image(image)
    fused = predictor.predict_low_res(PROMPTS).label_probabilities[0]
    predictor.set_vocabulary(objects=[*OBJECT_NAMES, "astronaut"], parts=None)
    assert not predictor.recognizer_active
    unknown = predictor.predict_low_res(PROMPTS).label_probabilities[0]
    head_only = Predictor(_labelled_copy(model, fitted=False), objects=[*OBJECT_NAMES, "astronaut"])
    head_only.set_image(image)
    torch.testing.assert_close(unknown, head_only.predict_low_res(PROMPTS).label_probabilities[0])
    predictor.set_vocabulary(objects=list(reversed(OBJECT_NAMES)), parts=None)
    assert predictor.recognizer_active
    reordered = predictor.predict_low_res(PROMPTS).label_probabilities[0]
    order = [list(reversed(OBJECT_NAMES)).index(name) for name in model.semantic.objects]
    torch.testing.assert_close(reordered[..., order], fused)


def test_the_recognizer_runs_only_for_a_vocabulary_it_serves(micro_labelled_model, monkeypatch):
    image = SyntheticPartsDataset(split="val", length=1, image_size=64)[0].image
    model = _labelled_copy(micro_labelled_model, fitted=True, projection_seed=1)
    eager = Predictor(model)
    eager.set_image(image)
    expected = eager.predict_low_res(PROMPTS).label_probabilities[0]
    encoded = []
    encode = model.recognizer.encode
    monkeypatch.setattr(model.recognizer, "encode", lambda pixels: encoded.append(1) or encode(pixels))
    predictor = Predictor(model, objects=[*OBJECT_NAMES, "astronaut"])
    predictor.set_image(image)
    predictor.predict_low_res(PROMPTS)
    assert encoded == []
    predictor.set_vocabulary(objects=None, parts=None)
    torch.testing.assert_close(predictor.predict_low_res(PROMPTS).label_probabilities[0], expected)
    predictor.predict_low_res(PROMPTS)
    assert encoded == [1]


def test_fitting_learns_the_names_of_the_object_masks(imagenet_file):
    recognizer = MaskRecognizer(config=RecognizerConfig(input_size=64))
    load_imagenet_embedder(recognizer, imagenet_file)
    train = SyntheticPartsDataset(split="train", length=60, image_size=64)
    fit = fit_recognizer(recognizer, [train], TextEncoder(), weight_decay=1e-3, progress=False)
    assert fit.names == sorted(set(fit.names)) and set(fit.names) <= set(OBJECT_NAMES)
    assert fit.samples[0] >= 60
    assert fit.train_accuracy > 0.8
    assert recognizer.projection.abs().sum() > 0 and not recognizer.projection.requires_grad


def test_fitting_needs_labelled_objects():
    recognizer = MaskRecognizer(config=RecognizerConfig(input_size=64))
    unlabelled = SyntheticPartsDataset(split="train", length=2, image_size=64)
    unlabelled.object_names = None
    with pytest.raises(ValueError, match="no dataset has labelled object masks"):
        fit_recognizer(recognizer, [unlabelled], TextEncoder(), progress=False)
    with pytest.raises(ValueError, match="weight_decay must be >= 0 and max_iterations >= 1, got -1.0, 300"):
        fit_recognizer(recognizer, [unlabelled], TextEncoder(), weight_decay=-1.0, progress=False)


def test_imagenet_weights_must_be_the_classifier(tmp_path, imagenet_file):
    recognizer = MaskRecognizer(config=RecognizerConfig(input_size=64))
    load_imagenet_embedder(recognizer, imagenet_file)
    reference = random_classifier()
    torch.testing.assert_close(recognizer.embedder.head.conv.weight, reference.head.conv.weight)
    backbone_only = tmp_path / "deeplab.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items() if k.startswith("features.")},
              str(backbone_only))
    with pytest.raises(CheckpointError, match="not an ImageNet classifier"):
        load_imagenet_embedder(recognizer, backbone_only)


def test_fit_recognizer_command_adds_a_recognizer_to_a_checkpoint_without_one(
    tmp_path, micro_labelled_model, imagenet_file, capsys
):
    plain = copy.deepcopy(micro_labelled_model)
    plain.recognizer = None
    config = replace(plain.config, recognizer=None)
    checkpoint, out = tmp_path / "trained.safetensors", tmp_path / "recognized.safetensors"
    save_checkpoint(checkpoint, plain, config, plain.semantic)
    train_config = synthetic_config(tmp_path, steps=1, length=8)
    args = ["fit-recognizer", str(train_config), "--checkpoint", str(checkpoint), "--imagenet", str(imagenet_file),
            "--out", str(out)]
    assert main(args) == 0
    assert "fitted on" in capsys.readouterr().out
    model = load_model(checkpoint=out)
    assert model.recognizes and model.config.recognizer == RecognizerConfig()
    assert model.semantic.recognizer_names == sorted(OBJECT_NAMES)
    predictor = Predictor(model)
    predictor.set_image(SyntheticPartsDataset(split="val", length=1, image_size=64)[0].image)
    assert predictor.predict(points=[[20, 30]]).labels[0].object in OBJECT_NAMES

    untrained = tmp_path / "untrained.safetensors"
    save_checkpoint(untrained, plain, config, replace(plain.semantic, trained=False))
    assert main([*args[:3], str(untrained), *args[4:]]) == 2
    assert "never trained" in capsys.readouterr().err


def test_training_leaves_the_frozen_recognizer_out_of_the_optimizer(tmp_path):
    from semsam.training.config import load_train_config

    trainer = Trainer(config=load_train_config(synthetic_config(tmp_path, steps=1, length=4)))
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    recognizer = trainer.model.recognizer
    assert recognizer is not None
    assert not optimised & {id(p) for p in recognizer.parameters()}
    assert np.all([not p.requires_grad for p in recognizer.parameters()])


def test_a_predictor_without_labels_skips_heads_and_recognizer_and_gives_the_same_masks(micro_labelled_model):
    image = SyntheticPartsDataset(split="val", length=1, image_size=64)[0].image
    model = _labelled_copy(micro_labelled_model, fitted=True, projection_seed=1)
    labelled, plain = Predictor(model), Predictor(model, labels=False)
    assert labelled.recognizer_active and not plain.recognizer_active and not plain.labels_available
    for predictor in (labelled, plain):
        predictor.set_image(image)
    named, unnamed = labelled.predict_low_res(PROMPTS), plain.predict_low_res(PROMPTS)
    assert unnamed.labels is None and unnamed.label_probabilities is None and named.labels is not None
    torch.testing.assert_close(unnamed.logits, named.logits)

"""Fitting the rank head on clicks: what the heads see, the held-out split, the fit, the command."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import MICRO, halves_annotations, synthetic_config, write_bsds
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from semsam import SemanticInfo, load_model, save_checkpoint
from semsam.build import RANK_HEAD_PREFIX, load_with_rank_head
from semsam.cli.main import main
from semsam.config import MODEL_CONFIGS, SemanticSamConfig
from semsam.data.synthetic import SyntheticPartsDataset
from semsam.evaluation.click import click_targets
from semsam.modeling import SemanticSam
from semsam.modeling.common import MLP
from semsam.prediction import Prompt
from semsam.predictor import Predictor
from semsam.training.calibration import HeadSamples, collect_head_samples, fit_rank_head, rank_head
from semsam.training.config import load_train_config
from semsam.training.trainer import Trainer


def _samples(seed: int, clicks: int, *, images: int = 20, dim: int = 8, outputs: int = 3) -> HeadSamples:
    """Clicks whose IoUs a hidden linear score decides: output k's IoU is sigmoid(hidden[k] . w)."""
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(clicks, outputs, dim)).astype(np.float32)
    direction = np.linspace(-1.0, 1.0, dim, dtype=np.float32)
    ious = 1.0 / (1.0 + np.exp(-2.0 * hidden @ direction))
    return HeadSamples(hidden=hidden, ious=ious.astype(np.float32),
                       images=np.sort(rng.integers(0, images, size=clicks)))


def test_top1_miou_takes_each_clicks_top_scored_output():
    sample = HeadSamples(hidden=np.zeros((2, 2, 1), np.float32), ious=np.array([[0.2, 0.9], [0.8, 0.1]]),
                         images=np.array([0, 1]))
    assert sample.top1_miou(np.array([[0.9, 0.5], [0.9, 0.2]])) == pytest.approx(0.5)
    assert sample.top1_miou(np.array([[0.1, 0.5], [0.9, 0.2]])) == pytest.approx(0.85)
    empty = HeadSamples(hidden=np.zeros((0, 2, 1), np.float32), ious=np.zeros((0, 2)), images=np.zeros(0, int))
    assert np.isnan(empty.top1_miou(np.zeros((0, 2))))


def test_split_holds_out_the_clicks_of_the_last_images():
    sample = _samples(0, 400, images=20)
    fit, held = sample.split(0.15)
    assert len(fit.ious) + len(held.ious) == 400 and len(held.ious) > 0
    assert held.images.min() > fit.images.max()
    assert 0.05 < len(held.ious) / 400 < 0.25
    # Clicks of one image cannot be split by image: all are fitted on.
    fit, held = _samples(1, 30, images=1).split(0.15)
    assert len(fit.ious) == 30 and len(held.ious) == 0


def test_fit_learns_to_rank_and_keeps_the_heads_shape():
    torch.manual_seed(0)
    head = MLP(input_dim=8, hidden_dim=8, output_dim=1, num_layers=3)
    shapes = {name: value.shape for name, value in head.state_dict().items()}
    samples = [_samples(2, 2000), _samples(3, 100)]
    fit = fit_rank_head(head, samples, epochs=8, steps_per_epoch=50, batch_size=128, lr=1e-2)
    assert {name: value.shape for name, value in head.state_dict().items()} == shapes
    assert fit.steps % 50 == 0 and 50 <= fit.steps <= 400
    for sample, before, after in zip(samples, fit.before, fit.after):
        _, held = sample.split(0.15)
        oracle = float(held.ious.max(1).mean())
        assert after > before and after > oracle - 0.03
    with torch.no_grad():
        predicted = head(torch.from_numpy(samples[0].hidden)).squeeze(-1).numpy()
    assert np.abs(predicted - samples[0].ious).mean() < 0.1


def test_fit_refuses_nothing_to_fit():
    head = MLP(input_dim=8, hidden_dim=8, output_dim=1, num_layers=3)
    empty = HeadSamples(hidden=np.zeros((0, 3, 8), np.float32), ious=np.zeros((0, 3), np.float32),
                        images=np.zeros(0, int))
    with pytest.raises(ValueError, match="no click targets"):
        fit_rank_head(head, [empty])
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        fit_rank_head(head, [_samples(0, 50)], epochs=0)


def test_collected_inputs_are_what_both_heads_score(small_model):
    dataset = SyntheticPartsDataset(split="val", length=2, image_size=64)
    predictor = Predictor(small_model)
    head, trained = rank_head(small_model), small_model.sem_seg_head.predictor.iou_prediction_head
    sample = collect_head_samples(predictor, dataset, progress=False)
    assert sample.hidden.shape[1:] == (6, head.layers[0].in_features) and sample.ious.shape == sample.hidden.shape[:2]
    assert len(sample.ious) > 0 and set(np.unique(sample.images)) <= {0, 1} and not trained._forward_pre_hooks
    assert ((sample.ious >= 0) & (sample.ious <= 1)).all()
    # The first click's scores, as the predictor reports them, come from the recorded inputs, in output order:
    # the rank head's rank the masks, the trained head's gate proposals.
    record = dataset[int(sample.images[0])]
    _, (x, y) = click_targets(record.masks)[0]
    predictor.set_image(record.image)
    low = predictor.predict_low_res([Prompt(points=[(x, y)], labels=[1])])
    hidden = torch.from_numpy(sample.hidden[0])
    with torch.no_grad():
        torch.testing.assert_close(head(hidden).squeeze(-1), low.scores[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(trained(hidden).squeeze(-1), low.proposal_scores[0], atol=1e-5, rtol=0)
    assert not torch.allclose(low.scores, low.proposal_scores)
    prediction = predictor.predict(points=[(x, y)], labels=[1])
    np.testing.assert_allclose(np.sort(prediction.scores), np.sort(low.scores[0].numpy()), atol=1e-5)


def test_a_model_without_a_rank_head_ranks_by_its_iou_head(small_config):
    torch.manual_seed(0)
    model = SemanticSam(config=_without_rank_head(small_config)).eval()
    predictor = Predictor(model, labels=False)
    predictor.set_image(np.full((64, 64, 3), 128, np.uint8))
    low = predictor.predict_low_res([Prompt(points=[(20, 30)], labels=[1])])
    torch.testing.assert_close(low.scores, low.proposal_scores)
    with pytest.raises(ValueError, match="no rank head"):
        rank_head(model)


def test_calibrate_iou_fits_only_the_rank_head(tmp_path, capsys, small_model, small_config):
    checkpoint = tmp_path / "model.safetensors"
    save_checkpoint(checkpoint, small_model, small_config, SemanticInfo())
    config = synthetic_config(tmp_path, steps=1, length=3)
    out = tmp_path / "calibrated.safetensors"
    assert main(["calibrate-iou", str(config), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--epochs", "2"]) == 0
    printed = capsys.readouterr().out
    assert "held-out top-1 mIoU" in printed and str(out) in printed
    before, after = small_model.state_dict(), load_model(checkpoint=out).state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(name.startswith(RANK_HEAD_PREFIX) for name in changed)
    for flag in ("--max-images", "--epochs"):
        assert main(["calibrate-iou", str(config), "--checkpoint", str(checkpoint), "--out", str(out),
                     flag, "0"]) == 2
        assert f"{flag} must be at least 1" in capsys.readouterr().err


def test_a_checkpoint_of_the_earlier_affine_calibration_loads_with_its_raw_scores(tmp_path, small_model, small_config):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, small_model, small_config, SemanticInfo())
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    semantic = {**json.loads(metadata["semantic"]), "iou_calibration": [[0.5, 0.1]] * 6}
    save_file(load_file(str(path)), str(path), metadata={**metadata, "semantic": json.dumps(semantic)})
    with pytest.warns(UserWarning, match="semsam calibrate-iou"):
        model = load_model(checkpoint=path)
    torch.testing.assert_close(model.state_dict()["sem_seg_head.predictor.iou_prediction_head.layers.0.weight"],
                               small_model.state_dict()["sem_seg_head.predictor.iou_prediction_head.layers.0.weight"])


def test_calibrate_iou_adds_a_rank_head_to_a_checkpoint_without_one(tmp_path, small_config):
    torch.manual_seed(1)
    plain_config = _without_rank_head(small_config)
    plain = SemanticSam(config=plain_config).eval()
    checkpoint = tmp_path / "plain.safetensors"
    save_checkpoint(checkpoint, plain, plain_config, SemanticInfo())
    out = tmp_path / "ranked.safetensors"
    config = synthetic_config(tmp_path, steps=1, length=3)
    assert main(["calibrate-iou", str(config), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--epochs", "1"]) == 0
    ranked = load_model(checkpoint=out)
    assert ranked.config == small_config
    after = ranked.state_dict()
    assert {name for name in after if name not in plain.state_dict()} == {
        name for name in after if name.startswith(RANK_HEAD_PREFIX)} != set()
    assert all(torch.equal(value, after[name]) for name, value in plain.state_dict().items())
    # Before it is fitted, the added head is the trained one: the model ranks as it did.
    added = load_with_rank_head(checkpoint)
    trained = added.sem_seg_head.predictor
    for name, value in trained.rank_head.state_dict().items():
        assert torch.equal(value, trained.iou_prediction_head.state_dict()[name])


def test_training_leaves_the_rank_head_out(tmp_path, capsys, monkeypatch):
    """Training changes the tokens a rank head was fitted on: the trained model has none until one is fitted again."""
    ranked = replace(MICRO, decoder=replace(MICRO.decoder, rank_head=True))
    monkeypatch.setitem(MODEL_CONFIGS, "micro_ranked", ranked)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ranked.safetensors", SemanticSam(config=ranked), ranked, SemanticInfo())
    write_bsds(tmp_path / "bsds", "train", "0001", halves_annotations())
    lines = ['model = "micro_ranked"', f'output_dir = "{tmp_path / "run"}"', "steps = 1", "batch_size = 1",
             "prompts_per_image = 2", "image_size = 64", "num_points = 64", "warmup_steps = 1",
             f'init_checkpoint = "{tmp_path / "ranked.safetensors"}"',
             "[[datasets]]", 'kind = "bsds500"', f'root = "{tmp_path / "bsds"}"', 'split = "train"']
    (tmp_path / "run.toml").write_text("\n".join(lines) + "\n")
    trainer = Trainer(config=load_train_config(tmp_path / "run.toml"))
    assert "rank head is left out" in capsys.readouterr().out
    assert trainer.model.sem_seg_head.predictor.rank_head is None
    trainer.run()
    trained = load_model(checkpoint=tmp_path / "run" / "final.safetensors")
    assert not trained.config.decoder.rank_head and trained.sem_seg_head.predictor.rank_head is None


def test_training_with_a_rank_weight_trains_the_rank_head_it_starts_from(tmp_path, capsys, monkeypatch):
    ranked = replace(MICRO, decoder=replace(MICRO.decoder, rank_head=True))
    monkeypatch.setitem(MODEL_CONFIGS, "micro_ranked", ranked)
    torch.manual_seed(0)
    start = SemanticSam(config=ranked)
    save_checkpoint(tmp_path / "ranked.safetensors", start, ranked, SemanticInfo())
    write_bsds(tmp_path / "bsds", "train", "0001", halves_annotations())
    lines = ['model = "micro_ranked"', f'output_dir = "{tmp_path / "run"}"', "steps = 2", "batch_size = 1",
             "prompts_per_image = 2", "image_size = 64", "num_points = 64", "warmup_steps = 1", "rank_weight = 1.0", "log_every = 1",
             f'init_checkpoint = "{tmp_path / "ranked.safetensors"}"',
             "[[datasets]]", 'kind = "bsds500"', f'root = "{tmp_path / "bsds"}"', 'split = "train"']
    (tmp_path / "run.toml").write_text("\n".join(lines) + "\n")
    trainer = Trainer(config=load_train_config(tmp_path / "run.toml"))
    assert "rank head is left out" not in capsys.readouterr().out
    for name, value in trainer.model.sem_seg_head.predictor.rank_head.state_dict().items():
        assert torch.equal(value, start.sem_seg_head.predictor.rank_head.state_dict()[name])
    trainer.run()
    trained = load_model(checkpoint=tmp_path / "run" / "final.safetensors")
    assert trained.config.decoder.rank_head
    before, after = start.sem_seg_head.predictor.rank_head, trained.sem_seg_head.predictor.rank_head
    assert not torch.equal(before.layers[0].weight, after.layers[0].weight)
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("rank" in entry for entry in logged)


def test_training_with_a_rank_weight_adds_a_rank_head_to_a_model_without_one(tmp_path, monkeypatch):
    monkeypatch.setitem(MODEL_CONFIGS, "micro_plain", _without_rank_head(MICRO))
    save_checkpoint(tmp_path / "plain.safetensors", SemanticSam(config=_without_rank_head(MICRO)),
                    _without_rank_head(MICRO), SemanticInfo())
    write_bsds(tmp_path / "bsds", "train", "0001", halves_annotations())
    lines = ['model = "micro_plain"', f'output_dir = "{tmp_path / "run"}"', "steps = 1", "rank_weight = 0.5",
             f'init_checkpoint = "{tmp_path / "plain.safetensors"}"',
             "[[datasets]]", 'kind = "bsds500"', f'root = "{tmp_path / "bsds"}"']
    (tmp_path / "run.toml").write_text("\n".join(lines) + "\n")
    predictor = Trainer(config=load_train_config(tmp_path / "run.toml")).model.sem_seg_head.predictor
    for name, value in predictor.rank_head.state_dict().items():
        assert torch.equal(value, predictor.iou_prediction_head.state_dict()[name])


def _without_rank_head(config: SemanticSamConfig) -> SemanticSamConfig:
    return replace(config, decoder=replace(config.decoder, rank_head=False))

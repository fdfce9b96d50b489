"""IoU calibration: fitting per-output (scale, offset), applying it in the model, storing it in a checkpoint."""

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
from semsam.checkpoint import CheckpointError
from semsam.cli.main import main
from semsam.config import MODEL_CONFIGS
from semsam.data.synthetic import SyntheticPartsDataset
from semsam.modeling import SemanticSam
from semsam.predictor import Predictor, Prompt
from semsam.training.calibration import ClickScores, click_scores, fit_iou_calibration
from semsam.training.config import load_train_config
from semsam.training.trainer import Trainer


def test_fit_recovers_a_linear_map_per_output_and_weighs_data_sets_equally():
    scores = np.random.default_rng(0).uniform(0, 1, size=(10, 3))
    truth = np.array([[0.5, 0.2], [1.5, -0.3], [1.0, 0.0]])
    ious = scores * truth[:, 0] + truth[:, 1]
    exact = ClickScores(ious=np.tile(ious, (50, 1)), scores=np.tile(scores, (50, 1)))
    np.testing.assert_allclose(fit_iou_calibration([exact]), truth, atol=1e-9)
    # A data set of the same 10 clicks pulls the fit as hard as the 500: its offsets land halfway.
    shifted = ClickScores(ious=ious + 0.2, scores=scores)
    np.testing.assert_allclose(np.array(fit_iou_calibration([exact, shifted]))[:, 1], truth[:, 1] + 0.1, atol=1e-9)


def test_top1_miou_ranks_by_the_calibrated_scores():
    sample = ClickScores(ious=np.array([[0.2, 0.9], [0.8, 0.1]]), scores=np.array([[0.9, 0.5], [0.9, 0.2]]))
    assert sample.top1_miou() == pytest.approx(0.5)
    # Output 2's scores become 1.1 and 0.8: it ranks first on the first click only.
    assert sample.top1_miou([[1.0, 0.0], [1.0, 0.6]]) == pytest.approx(0.85)
    assert np.isnan(ClickScores(ious=np.zeros((0, 2)), scores=np.zeros((0, 2))).top1_miou())


def test_fit_refuses_nothing_to_fit():
    with pytest.raises(ValueError, match="no click targets"):
        fit_iou_calibration([ClickScores(ious=np.zeros((0, 6)), scores=np.zeros((0, 6)))])
    with pytest.raises(ValueError, match="output 1's predicted IoU is the same"):
        fit_iou_calibration([ClickScores(ious=np.ones((4, 2)), scores=np.array([[0.1, 0.5]] * 3 + [[0.2, 0.5]]))])


@pytest.mark.parametrize("bad", [[[1.0]], [[1.0, float("nan")]], [[1.0, "0.1"]], [[True, 0.0]], "1,0"])
def test_calibration_must_be_finite_pairs(bad):
    with pytest.raises(ValueError, match="finite"):
        SemanticInfo(iou_calibration=bad)


def test_a_checkpoint_with_a_crafted_calibration_is_refused_by_name(tmp_path, small_model, small_config):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, small_model, small_config, SemanticInfo())
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    semantic = {**json.loads(metadata["semantic"]), "iou_calibration": [["1", {}]] * 6}
    save_file(load_file(str(path)), str(path), metadata={**metadata, "semantic": json.dumps(semantic)})
    with pytest.raises(CheckpointError, match="iou_calibration must be finite"):
        load_model(checkpoint=path)


def test_the_model_applies_its_calibration_to_every_predicted_iou(small_model, scene):
    prompt = Prompt(points=[(60, 45)], labels=[1])
    predictor = Predictor(small_model)
    predictor.set_image(scene)
    raw = predictor.predict_low_res([prompt])
    calibration = [[2.0, 0.1], [1.0, 0.0], [0.5, -0.2], [1.0, 1.0], [3.0, 0.0], [1.0, -1.0]]
    small_model.semantic = replace(small_model.semantic, iou_calibration=calibration)
    try:
        calibrated = predictor.predict_low_res([prompt])
        scale, offset = torch.tensor(calibration).unbind(1)
        torch.testing.assert_close(calibrated.scores, raw.scores * scale + offset)
        torch.testing.assert_close(calibrated.logits, raw.logits)
        single = predictor.predict(points=[(60, 45)], multimask=False)
        assert single.scores[0] == pytest.approx(float(calibrated.scores.max()), abs=1e-5)
        # Scoring for a new calibration starts from the raw scores and leaves the model as it was.
        dataset = SyntheticPartsDataset(split="val", length=2, image_size=64)
        sample = click_scores(predictor, dataset, progress=False)
        assert sample.ious.shape == sample.scores.shape and sample.ious.shape[1] == 6 and len(sample.ious) > 0
        assert small_model.semantic.iou_calibration == calibration
        small_model.semantic = replace(small_model.semantic, iou_calibration=calibration[:5])
        with pytest.raises(ValueError, match="5 \\(scale, offset\\) pairs for 6 outputs"):
            predictor.predict_low_res([prompt])
    finally:
        small_model.semantic = replace(small_model.semantic, iou_calibration=[])


def test_calibrate_iou_writes_a_checkpoint_that_scores_with_it(tmp_path, capsys, small_model, small_config):
    checkpoint = tmp_path / "model.safetensors"
    save_checkpoint(checkpoint, small_model, small_config, SemanticInfo())
    config = synthetic_config(tmp_path, steps=1, length=3)
    out = tmp_path / "calibrated.safetensors"
    assert main(["calibrate-iou", str(config), "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "top-1 mIoU" in printed and str(out) in printed
    calibrated = load_model(checkpoint=out)
    assert len(calibrated.semantic.iou_calibration) == 6
    torch.testing.assert_close(calibrated.state_dict()["sem_seg_head.predictor.class_embed"],
                               small_model.state_dict()["sem_seg_head.predictor.class_embed"])
    assert main(["calibrate-iou", str(config), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--max-images", "0"]) == 2
    assert "--max-images must be at least 1" in capsys.readouterr().err


def test_training_from_a_calibrated_checkpoint_starts_from_raw_scores(tmp_path, monkeypatch):
    monkeypatch.setitem(MODEL_CONFIGS, "micro", MICRO)
    info = SemanticInfo(iou_calibration=[[0.5, 0.1]] * 6)
    save_checkpoint(tmp_path / "calibrated.safetensors", SemanticSam(config=MICRO), MICRO, info)
    write_bsds(tmp_path / "bsds", "train", "0001", halves_annotations())
    lines = ['model = "micro"', f'output_dir = "{tmp_path / "run"}"', "steps = 1", "batch_size = 1",
             "prompts_per_image = 2", "image_size = 64", "num_points = 64", "warmup_steps = 1",
             f'init_checkpoint = "{tmp_path / "calibrated.safetensors"}"',
             "[[datasets]]", 'kind = "bsds500"', f'root = "{tmp_path / "bsds"}"', 'split = "train"']
    (tmp_path / "run.toml").write_text("\n".join(lines) + "\n")
    assert Trainer(config=load_train_config(tmp_path / "run.toml")).model.semantic.iou_calibration == []

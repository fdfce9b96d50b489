"""Label accuracy of clicked masks: known answers from a scripted predictor, and the `eval labels` command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from semsam.checkpoint import save_checkpoint
from semsam.config import SemanticInfo
from semsam.data.synthetic import SyntheticPartsDataset
from semsam.evaluation.labels import evaluate_labels
from semsam.prediction import MaskLabel, Prediction


class ScriptedPredictor:
    """Answers a click with a wrong top-scored blob, then every true mask under the click, labelled right or wrong."""

    labels_available = True

    def __init__(self, record, *, object_right: bool, part_right: bool):
        self.record, self.object_right, self.part_right = record, object_right, part_right
        self.vocabulary = None

    def set_vocabulary(self, *, objects, parts):
        self.vocabulary = (list(objects), list(parts))

    def set_image(self, image):
        assert image is self.record.image

    def predict_batch(self, prompts):
        return [self._answer(*np.asarray(p.points[0], int)) for p in prompts]

    def _answer(self, x, y):
        record, (objects, parts) = self.record, self.vocabulary
        under = [m for m in range(len(record.masks)) if record.masks[m, y, x]]
        blob = np.zeros_like(record.masks[0])
        blob[:2, :2] = True
        labels = [MaskLabel(object="nothing", object_score=1.0, part="nothing", part_score=1.0)]
        for m in under:
            obj, part = record.object_classes[m], record.part_classes[m] or 0
            labels.append(MaskLabel(object=objects[obj if self.object_right else (obj + 1) % len(objects)],
                                    object_score=1.0, part=parts[part if self.part_right else (part + 1) % len(parts)],
                                    part_score=1.0))
        count = len(under) + 1
        return Prediction(masks=np.stack([blob, *record.masks[under]]), scores=np.eye(count)[0],
                          logits=np.zeros((count, 1, 1)), boxes=np.zeros((count, 4)), labels=labels)


class OneScene(SyntheticPartsDataset):
    def __init__(self):
        super().__init__(split="val", length=1, image_size=96)
        self.scene = super().__getitem__(0)

    def __getitem__(self, index):
        return self.scene


def test_accuracies_and_chance_levels_have_known_answers():
    dataset = OneScene()
    record = dataset.scene
    big = record.masks.sum((1, 2)) >= 0.005 * 96 * 96
    is_part = np.array([p is not None for p in record.part_classes])
    predictor = ScriptedPredictor(record, object_right=False, part_right=True)
    metrics = evaluate_labels(predictor, dataset, progress=False)
    assert predictor.vocabulary == (list(dataset.object_names), list(dataset.part_names))
    assert metrics.object_targets == int((big & ~is_part).sum()) and metrics.part_targets == int((big & is_part).sum())
    assert metrics.object_accuracy == 0.0 and metrics.part_accuracy == 1.0 and metrics.mean_match_iou == 1.0
    assert metrics.part_accuracy_top1 == 0.0  # the top-scored mask is the wrong blob
    part_ids = [record.part_classes[m] for m in np.flatnonzero(big & is_part)]
    assert metrics.part_chance == max(part_ids.count(c) for c in part_ids) / len(part_ids)
    assert metrics.part_uniform_chance == 1 / len(dataset.part_names)
    flipped = evaluate_labels(ScriptedPredictor(record, object_right=True, part_right=False), dataset, progress=False)
    assert flipped.object_accuracy == 1.0 and flipped.part_accuracy == 0.0


def test_eval_labels_command(tmp_path, small_model, capsys, monkeypatch):
    from semsam.cli.main import main

    monkeypatch.setenv("SEMSAM_CACHE_DIR", str(tmp_path / "cache"))
    untrained, trained = tmp_path / "untrained.safetensors", tmp_path / "trained.safetensors"
    save_checkpoint(untrained, small_model, small_model.config, SemanticInfo())
    save_checkpoint(trained, small_model, small_model.config,
                    SemanticInfo(trained=True, objects=["car", "tree"], parts=["wheel"]))
    args = ["eval", "labels", "--dataset", "synthetic_parts", "--dataset-option", "length=1",
            "--dataset-option", "image_size=64"]
    assert main([*args, "--checkpoint", str(trained), "--out", str(tmp_path / "m.json")]) == 0
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["protocol"] == "labels" and report["images"] == 1
    assert 0 <= report["object_accuracy"] <= 1 and report["part_targets"] > 0
    capsys.readouterr()
    assert main([*args, "--checkpoint", str(untrained)]) == 2
    assert "never trained" in capsys.readouterr().err
    assert main([*args, "--checkpoint", str(trained), "--dataset-option", "colour=red"]) == 2
    assert "does not fit dataset 'synthetic_parts'" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["length", "=3"])
def test_bad_dataset_options_are_named(option, capsys):
    from semsam.cli.main import main

    assert main(["eval", "labels", "--dataset", "synthetic_parts", "--dataset-option", option]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err

"""Class losses in the trainer: the joint vocabulary, remapped ids, and checkpoints that label out of the box."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from semsam import Predictor, load_model
from semsam.data import SegmentationDataset, SegmentationRecord
from semsam.data.synthetic import OBJECT_NAMES, PART_NAMES, SyntheticPartsDataset
from semsam.evaluation.labels import evaluate_labels
from semsam.training.config import load_train_config
from semsam.training.trainer import Trainer
from semsam.training.vocabulary import Vocabulary

from helpers import synthetic_config


class Named(SegmentationDataset):
    def __init__(self, objects, parts):
        self.object_names, self.part_names = objects, parts


def record(objects, parts) -> SegmentationRecord:
    masks = np.zeros((len(objects), 8, 8), bool)
    return SegmentationRecord(image=np.zeros((8, 8, 3), np.uint8), masks=masks, object_classes=objects,
                              part_classes=parts, image_id="r")


def test_vocabulary_joins_names_and_remaps_ids():
    coco_like = Named(("person", "dog"), None)
    parts_like = Named(("dog", "cat"), ("head", "tail"))
    vocabulary = Vocabulary.from_datasets([coco_like, Named(None, None), parts_like])
    assert vocabulary.objects == ("person", "dog", "cat") and vocabulary.parts == ("head", "tail")
    assert vocabulary.labelled and not Vocabulary.from_datasets([Named(None, None)]).labelled
    remapped = vocabulary.remap(record([0, 1, None], [None, 1, 0]), 2)
    assert remapped.object_classes == [1, 2, None] and remapped.part_classes == [None, 1, 0]
    assert vocabulary.remap(record([1, 0], None), 0).object_classes == [1, 0]
    with pytest.raises(ValueError, match="no part_names"):
        vocabulary.remap(record([0], [0]), 0)
    with pytest.raises(ValueError, match="outside its dataset's 2 object_names"):
        vocabulary.remap(record([2], None), 2)


def test_labelled_data_trains_the_class_heads_and_the_checkpoint_labels_masks(tmp_path):
    config = load_train_config(synthetic_config(tmp_path, steps=2))
    trainer = Trainer(config=config)
    head = trainer.model.sem_seg_head.predictor
    before = head.text_projection.detach().clone()
    trainer.run()
    assert not (head.text_projection.detach() == before).all()
    records = [json.loads(line) for line in (Path(config.output_dir) / "metrics.jsonl").read_text().splitlines()]
    assert all(r["object_class"] > 0 and r["part_class"] > 0 for r in records)
    model = load_model(checkpoint=Path(config.output_dir) / "final.safetensors")
    assert model.semantic.trained and model.semantic.objects == list(OBJECT_NAMES)
    assert model.semantic.parts == list(PART_NAMES) and model.config.image_size == 64
    predictor = Predictor(model)
    predictor.set_image(np.full((64, 64, 3), 128, np.uint8))
    labels = predictor.predict(points=[(30, 30)]).labels
    assert labels is not None and {label.object for label in labels} <= set(OBJECT_NAMES)


def test_a_small_model_learns_object_and_part_names_far_above_chance(micro_labelled_model):
    """The micro model (conftest: 300 steps on 400 synthetic scenes at 64 px), judged on 30 held-out scenes."""
    held_out = SyntheticPartsDataset(split="val", length=30, image_size=64)
    metrics = evaluate_labels(Predictor(micro_labelled_model), held_out, progress=False)
    assert metrics.object_targets > 50 and metrics.part_targets > 150
    assert metrics.object_accuracy >= 2 * metrics.object_chance, metrics
    assert metrics.part_accuracy >= 2 * metrics.part_chance, metrics

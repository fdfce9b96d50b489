"""Simulated corrective clicks: the protocol's click choice, and training that uses it on every data format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from semsam import load_model
from semsam.clicks import Click, corrective_click, interior_pixel
from semsam.data.prompts import PromptTargets
from semsam.modeling import DecoderOutput, PromptBatch
from semsam.training.config import load_train_config
from semsam.training.corrections import add_corrective_clicks, single_targets
from semsam.training.matching import HungarianMatcher
from semsam.training.trainer import Trainer

from helpers import halves_annotations, rect, write_bsds, write_coco_instances, write_coco_parts


def test_the_first_click_is_the_interior_most_pixel():
    mask = rect(2, 1, 9, 12, size=(12, 16))  # rows 2..8, columns 1..11: the centre row is 5
    assert interior_pixel(mask) == (5, 4)  # the first of the pixels 4 away from the boundary
    assert interior_pixel(np.zeros((4, 4), bool)) is None


def test_a_corrective_click_goes_to_the_centre_of_the_larger_error():
    truth = rect(0, 0, 20, 20, size=(20, 40))
    missed_half = rect(0, 0, 20, 10, size=(20, 40))
    assert corrective_click(missed_half, truth) == Click(row=4, col=14, positive=True)
    spill = truth | rect(0, 20, 20, 36, size=(20, 40))
    assert corrective_click(spill, truth) == Click(row=7, col=27, positive=False)
    # A thin miss loses against a thick excess even when it holds more pixels.
    thin_miss_thick_excess = (truth & ~rect(0, 0, 20, 2, size=(20, 40))) | rect(5, 25, 15, 35, size=(20, 40))
    assert corrective_click(thin_miss_thick_excess, truth).positive is False
    assert corrective_click(truth, truth) is None


def test_single_targets_keep_one_valid_target_per_prompt():
    indices = torch.tensor([[[0, 2, -1], [1, -1, -1], [-1, -1, -1]]])
    boxes = torch.rand(1, 3, 3, 4)
    targets = PromptTargets(gt_masks=torch.zeros(1, 3, 8, 8, dtype=torch.bool), indices=indices, boxes=boxes,
                            object_classes=indices.clone())
    narrowed, has_target = single_targets(targets, torch.Generator().manual_seed(0))
    assert has_target.tolist() == [[True, True, False]]
    assert narrowed.indices[0, 0, 0] in (0, 2) and narrowed.indices[0, 1, 0] == 1
    assert (narrowed.indices[..., 1:] == -1).all() and narrowed.indices[0, 2, 0] == -1
    assert torch.equal(narrowed.object_classes, narrowed.indices)
    slot = int((indices[0, 0] == narrowed.indices[0, 0, 0]).nonzero())
    assert torch.equal(narrowed.boxes[0, 0, 0], boxes[0, 0, slot]) and (narrowed.boxes[..., 1:, :] == 0).all()


def test_single_targets_copies_give_every_output_the_same_target():
    """With as many copies as outputs, matching supervises every output of a corrected prompt."""
    indices = torch.tensor([[[0, 2], [-1, -1]]])
    targets = PromptTargets(gt_masks=torch.zeros(1, 3, 8, 8, dtype=torch.bool), indices=indices,
                            boxes=torch.rand(1, 2, 2, 4), part_classes=torch.tensor([[[5, 7], [-1, -1]]]))
    narrowed, _ = single_targets(targets, torch.Generator().manual_seed(0), copies=6)
    assert narrowed.indices.shape == (1, 2, 6) and narrowed.boxes.shape == (1, 2, 6, 4)
    chosen = int(narrowed.indices[0, 0, 0])
    assert narrowed.indices[0, 0].tolist() == [chosen] * 6 and (narrowed.indices[0, 1] == -1).all()
    assert narrowed.part_classes[0, 0].tolist() == [{0: 5, 2: 7}[chosen]] * 6
    assert torch.equal(narrowed.boxes[0, 0], narrowed.boxes[0, 0, :1].expand(6, -1))
    assert narrowed.object_classes is None
    output = DecoderOutput(mask_logits=torch.randn(1, 2, 6, 4, 4), iou_scores=torch.rand(1, 2, 6),
                           boxes=torch.rand(1, 2, 6, 4), object_embeddings=torch.zeros(1, 2, 6, 1),
                           part_embeddings=torch.zeros(1, 2, 6, 1))
    matches = HungarianMatcher(num_points=16)(output, narrowed)
    assert sorted(matches.pred.tolist()) == list(range(6)) and set(matches.prompt.tolist()) == {0}


def test_a_correction_round_feeds_back_the_best_mask_and_clicks_on_its_error():
    logits = torch.full((1, 2, 3, 8, 8), -5.0)
    logits[0, :, 1, :, :4] = 5.0  # the best-scored mask covers the left half
    output = DecoderOutput(mask_logits=logits, iou_scores=torch.tensor([[[0.1, 0.9, 0.2]] * 2]),
                           boxes=torch.zeros(1, 2, 3, 4), object_embeddings=torch.zeros(1, 2, 3, 1),
                           part_embeddings=torch.zeros(1, 2, 3, 1))
    prompts = PromptBatch(anchors=torch.zeros(1, 2, 4), anchor_is_box=torch.zeros(1, 2, dtype=torch.bool),
                          points=torch.zeros(1, 2, 0, 2), point_labels=torch.zeros(1, 2, 0, dtype=torch.long))
    truth = torch.zeros(1, 2, 8, 8, dtype=torch.bool)
    truth[0, 0] = True  # the whole image is wanted: the miss is the right half
    corrected = add_corrective_clicks(prompts, output, truth, torch.tensor([[True, False]]))
    assert corrected.point_labels.tolist() == [[[1], [-1]]]
    assert torch.allclose(corrected.points[0, 0, 0], torch.tensor([5.5 / 8, 1.5 / 8]))
    assert torch.equal(corrected.mask_inputs, logits[:, :, 1]) and corrected.mask_valid.all()


def test_joint_training_with_corrections_runs_on_every_format_and_trains_labels(tmp_path: Path):
    write_bsds(tmp_path / "bsds", "train", "0001", halves_annotations())
    write_coco_instances(tmp_path / "coco")
    write_coco_parts(tmp_path / "parts")
    lines = ['model = "semsam_mobilenet"', f'output_dir = "{tmp_path / "run"}"', "steps = 3", "batch_size = 3",
             "prompts_per_image = 4", "image_size = 64", "num_points = 64", "warmup_steps = 1",
             "checkpoint_every = 3", "log_every = 1", "correction_prob = 1.0", "max_corrections = 2"]
    for kind, root, split, weight in (("bsds500", "bsds", "train", 1.0), ("coco", "coco", "train2017", 2.0),
                                      ("coco_parts", "parts", "train", 1.0)):
        lines += ["[[datasets]]", f'kind = "{kind}"', f'root = "{tmp_path / root}"', f'split = "{split}"',
                  f"weight = {weight}"]
    (tmp_path / "joint.toml").write_text("\n".join(lines) + "\n")
    trainer = Trainer(config=load_train_config(tmp_path / "joint.toml"))
    trainer.run()
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(logged) == 3 and all(np.isfinite(entry["total"]) for entry in logged)
    assert any("object_class" in entry for entry in logged) and any("part_class" in entry for entry in logged)
    model = load_model(checkpoint=tmp_path / "run" / "final.safetensors")
    assert model.semantic.trained and model.semantic.objects == ["person", "dog", "cat"]
    assert model.semantic.parts == ["head", "torso", "tail"]


def test_a_batch_without_any_mask_trains_to_zero_loss_with_corrections(small_model, small_config):
    """A random crop can leave no mask in any image of a batch: every step kind must still give a finite loss."""
    from semsam.data.prompts import prepare_batch
    from semsam.data.records import SegmentationRecord
    from semsam.training.losses import MultiChoiceLoss
    from semsam.training.step import TrainingForward

    empty = SegmentationRecord(image=np.zeros((64, 64, 3), np.uint8), masks=np.zeros((0, 64, 64), bool),
                               object_classes=None, part_classes=None, image_id="empty")
    batch = prepare_batch([empty, empty], image_size=64, size_divisibility=32, prompts_per_image=3,
                          rng=np.random.default_rng(0))
    forward = TrainingForward(model=small_model.train(), criterion=MultiChoiceLoss(num_points=64), object_text=None,
                              part_text=None, precision="fp32")
    try:
        for feed_back, corrections in ((False, 0), (True, 0), (False, 2)):
            losses = forward(batch.images.float(), batch.prompts, batch.targets, feed_back, corrections)
            assert torch.isfinite(losses["total"]) and float(losses["total"].detach()) == 0.0
            losses["total"].backward()
    finally:
        small_model.zero_grad(set_to_none=True)
        small_model.eval()

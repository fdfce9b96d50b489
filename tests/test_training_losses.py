"""Box ops, per-prompt Hungarian matching and the multi-choice loss, down to a real model's backward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semsam.build import build_model
from semsam.config import TEXT_DIM_MINILM
from semsam.data import SegmentationRecord
from semsam.data.prompts import PromptSampling, PromptTargets, prepare_batch
from semsam.modeling import DecoderOutput
from semsam.training import HungarianMatcher, LossWeights, MultiChoiceLoss
from semsam.training.box_ops import cxcywh_to_xyxy, generalized_iou, xyxy_to_cxcywh

SIZE = 32  # padded input side; predictions are SIZE / 4


def region(top: float, left: float, bottom: float, right: float, size: int = SIZE) -> torch.Tensor:
    """A boolean rectangle given in fractions of the image."""
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[int(top * size) : int(bottom * size), int(left * size) : int(right * size)] = True
    return mask


def box_of(top: float, left: float, bottom: float, right: float) -> torch.Tensor:
    return torch.tensor([(left + right) / 2, (top + bottom) / 2, right - left, bottom - top])


def signed(mask: torch.Tensor, scale: float) -> torch.Tensor:
    """Logits at the prediction resolution: +scale inside the mask, -scale outside."""
    small = mask.view(SIZE // 4, 4, SIZE // 4, 4).float().mean((1, 3)) > 0.5
    return (small.float() * 2 - 1) * scale


def output(logits: torch.Tensor, boxes: torch.Tensor, iou: torch.Tensor | None = None,
           rank: torch.Tensor | None = None) -> DecoderOutput:
    """A DecoderOutput for logits [B, N, K, h, w] and boxes [B, N, K, 4]; `rank` the rank head's scores."""
    shape = logits.shape[:3]
    return DecoderOutput(
        mask_logits=logits,
        iou_scores=torch.zeros(shape) if iou is None else iou,
        boxes=boxes,
        object_embeddings=torch.zeros(*shape, 4),
        part_embeddings=torch.zeros(*shape, 4),
        rank_scores=rank,
    )


REGIONS = {"left": (0.0, 0.0, 1.0, 0.5), "top": (0.0, 0.0, 0.5, 1.0), "corner": (0.5, 0.5, 1.0, 1.0)}


def toy_targets(indices: list[list[int]], object_classes: list[list[int]] | None = None) -> PromptTargets:
    """One image with masks left, top, corner; `indices` [N][T] picks each prompt's targets (-1 for none)."""
    masks = torch.stack([region(*r) for r in REGIONS.values()])[None]
    index = torch.tensor(indices)[None]
    all_boxes = torch.stack([box_of(*r) for r in REGIONS.values()])
    boxes = all_boxes[index.clamp(min=0)] * (index >= 0)[..., None]
    classes = None if object_classes is None else torch.tensor(object_classes)[None]
    return PromptTargets(gt_masks=masks, indices=index, boxes=boxes, object_classes=classes)


def test_box_conversions_and_generalized_iou() -> None:
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.3, 0.6, 0.1, 0.1]])
    assert torch.allclose(xyxy_to_cxcywh(cxcywh_to_xyxy(boxes)), boxes)
    unit = torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert torch.isclose(generalized_iou(unit, unit), torch.tensor(1.0))
    half = torch.tensor([0.0, 0.0, 0.5, 1.0])
    assert torch.isclose(generalized_iou(unit, half), torch.tensor(0.5))
    apart = generalized_iou(torch.tensor([0.0, 0.0, 1.0, 1.0]), torch.tensor([2.0, 0.0, 3.0, 1.0]))
    assert torch.isclose(apart, torch.tensor(-1 / 3))
    pairwise = generalized_iou(unit[None, None], torch.stack([unit, half])[None])
    assert pairwise.shape == (1, 2)


def test_matching_picks_the_right_assignment() -> None:
    left, top, corner = (region(*r) for r in REGIONS.values())
    logits = torch.stack([signed(top, 10), signed(corner, 10), signed(left, 10)])
    boxes = torch.stack([box_of(*REGIONS["top"]), box_of(*REGIONS["corner"]), box_of(*REGIONS["left"])])
    outputs = output(logits[None, None].expand(1, 3, -1, -1, -1), boxes[None, None].expand(1, 3, -1, -1))
    targets = toy_targets([[0, 1], [-1, 1], [-1, -1]])
    matches = HungarianMatcher(num_points=256)(outputs, targets)
    pairs = sorted(zip(matches.prompt.tolist(), matches.pred.tolist(), matches.target.tolist()))
    assert pairs == [(0, 0, 1), (0, 2, 0), (1, 0, 1)]


def test_mask_losses_fall_as_the_prediction_approaches_the_target() -> None:
    truth = region(*REGIONS["left"])
    targets = toy_targets([[0]])
    loss = MultiChoiceLoss(num_points=128)
    history = []
    for scale, box_error in [(0.1, 0.3), (1.0, 0.1), (4.0, 0.03), (12.0, 0.0)]:
        logits = signed(truth, scale)[None, None, None].expand(1, 1, 2, -1, -1)
        boxes = (box_of(*REGIONS["left"]) + box_error).expand(1, 1, 2, 4)
        history.append({k: float(v) for k, v in loss(output(logits, boxes), targets).items()})
    for name in ("bce", "dice", "box_l1", "giou", "total"):
        values = [h[name] for h in history]
        assert all(a > b for a, b in zip(values, values[1:])), (name, values)
    # Importance sampling puts points on the boundary, where bilinear logits are near 0 even for a sharp mask.
    assert history[-1]["bce"] < 0.1 and history[-1]["box_l1"] < 1e-6 and history[-1]["giou"] < 1e-6


def test_optimising_against_the_loss_learns_the_target() -> None:
    torch.manual_seed(0)
    logits = torch.zeros(1, 1, 2, SIZE // 4, SIZE // 4, requires_grad=True)
    boxes = torch.full((1, 1, 2, 4), 0.5, requires_grad=True)
    scores = torch.zeros(1, 1, 2, requires_grad=True)
    targets = toy_targets([[2]])
    loss = MultiChoiceLoss(num_points=64)
    optimiser = torch.optim.Adam([logits, boxes, scores], lr=0.1)
    totals = []
    for _ in range(40):
        total = loss(output(logits, boxes, scores), targets)["total"]
        totals.append(float(total.detach()))
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
    assert totals[-1] < 0.3 * totals[0]
    best = (logits.detach()[0, 0] > 0).float().mean((1, 2))
    assert (best - 0.25).abs().min() < 0.05


def test_iou_head_regresses_the_detached_true_iou() -> None:
    quarter = region(0.0, 0.0, 1.0, 0.25)
    logits = signed(quarter, 5.0)[None, None, None].clone().requires_grad_(True)
    scores = torch.full((1, 1, 1), 0.2, requires_grad=True)
    loss = MultiChoiceLoss(num_points=64, weights=LossWeights(bce=0, dice=0, box_l1=0, giou=0, iou=1))
    result = loss(output(logits, box_of(*REGIONS["left"]).expand(1, 1, 1, 4), scores), toy_targets([[0]]))
    assert torch.isclose(result["iou"], torch.tensor((0.5 - 0.2) ** 2))
    result["total"].backward()
    assert scores.grad is not None and scores.grad.abs().sum() > 0
    assert logits.grad is None or logits.grad.abs().sum() == 0


def classify(embeddings: torch.Tensor, names: torch.Tensor) -> torch.Tensor:
    return 10 * embeddings @ names.T


def test_deep_supervision_and_class_loss() -> None:
    left = region(*REGIONS["left"])
    logits = signed(left, 3.0)[None, None, None].expand(1, 1, 2, -1, -1)
    boxes = box_of(*REGIONS["left"]).expand(1, 1, 2, 4)
    final, earlier = output(logits, boxes), output(logits * 0.1, boxes)
    text = torch.eye(3, 4)
    final.object_embeddings = text[0].expand(1, 1, 2, 4)
    final.aux = [earlier]
    weights = LossWeights()
    loss = MultiChoiceLoss(num_points=64, weights=weights)
    result = loss(final, toy_targets([[0]], object_classes=[[0]]), classifier=classify, object_text=text)
    assert "object_class" in result and "part_class" not in result
    assert float(result["object_class"]) < 1e-3
    wrong = loss(final, toy_targets([[0]], object_classes=[[1]]), classifier=classify, object_text=text)
    assert float(wrong["object_class"]) > 5
    weighted = sum(getattr(weights, name) * result[name] for name in result if name not in ("aux", "total"))
    assert float(result["aux"]) > 0 and torch.isclose(result["total"], weighted + result["aux"])
    with pytest.raises(ValueError, match="need classifier"):
        loss(final, toy_targets([[0]]), object_text=text)
    with pytest.raises(ValueError, match="outside the 3-name vocabulary"):
        loss(final, toy_targets([[0]], object_classes=[[5]]), classifier=classify, object_text=text)


def test_prompts_without_targets_give_zero_loss_that_backpropagates() -> None:
    logits = torch.randn(1, 2, 3, SIZE // 4, SIZE // 4, requires_grad=True)
    result = MultiChoiceLoss(num_points=32)(output(logits, torch.full((1, 2, 3, 4), 0.5)), toy_targets([[-1], [-1]]))
    assert float(result["total"].detach()) == 0
    result["total"].backward()
    assert logits.grad is not None


def labelled_record(seed: int) -> SegmentationRecord:
    """96x128 with an object, its two parts and a second object; object and part ids."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((4, 96, 128), dtype=bool)
    masks[0, 10:80, 10:70] = True
    masks[1, 10:40, 10:70] = True
    masks[2, 40:80, 10:70] = True
    masks[3, 20:90, 80:120] = True
    image = rng.integers(0, 256, size=(96, 128, 3), dtype=np.uint8)
    return SegmentationRecord(image=image, masks=masks, object_classes=[0, None, None, 2],
                              part_classes=[None, 0, 1, None], image_id=f"r{seed}")


def test_batch_of_two_trains_a_real_model_end_to_end() -> None:
    torch.manual_seed(0)
    model = build_model("semsam_mobilenet").train()
    batch = prepare_batch(
        [labelled_record(0), labelled_record(1)],
        image_size=128,
        size_divisibility=model.config.size_divisibility,
        prompts_per_image=3,
        rng=np.random.default_rng(0),
        sampling=PromptSampling(box_fraction=0.34, multi_click_fraction=0.5),
        flip=True,
        pad_value=model.config.pixel_mean,
    )
    outputs = model(model.preprocess(batch.images), batch.prompts)
    assert outputs.mask_logits.shape[-2:] == (24, 32) and len(outputs.aux) == model.config.decoder.num_layers - 1
    predictor = model.sem_seg_head.predictor
    result = MultiChoiceLoss(num_points=256)(
        outputs,
        batch.targets,
        classifier=predictor.classify,
        object_text=torch.randn(3, TEXT_DIM_MINILM),
        part_text=torch.randn(2, TEXT_DIM_MINILM),
    )
    assert {"bce", "dice", "iou", "box_l1", "giou", "object_class", "part_class", "aux", "total"} <= set(result)
    assert all(torch.isfinite(v) for v in result.values())
    result["total"].backward()
    for module in (predictor.mask_embed, predictor.iou_prediction_head, predictor._bbox_embed, model.backbone):
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    for parameter in (predictor.class_embed, predictor.class_embed_part, predictor.text_projection):
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def test_unmatched_outputs_regress_their_best_iou_with_any_target() -> None:
    quarter, whole = region(0.0, 0.0, 1.0, 0.25), region(0.0, 0.0, 1.0, 1.0)
    logits = torch.stack([signed(quarter, 5.0), signed(whole, 5.0)])[None, None]
    scores = torch.full((1, 1, 2), 0.9)
    loss = MultiChoiceLoss(num_points=64, weights=LossWeights(bce=0, dice=0, box_l1=0, giou=0, iou=1))
    boxes = box_of(*REGIONS["left"]).expand(1, 1, 2, 4)
    result = loss(output(logits, boxes, scores), toy_targets([[0]]))
    # The quarter is matched to "left" (IoU 0.5); the whole image is unmatched and its best IoU is also 0.5.
    assert torch.isclose(result["iou"], torch.tensor((0.9 - 0.5) ** 2))


def test_the_rank_term_puts_the_prompts_own_mask_on_top() -> None:
    """The IoU head scores both outputs 0.5 here (best IoU with any target); the rank head learns which one the
    prompt meant: its own mask, slot 0 ("corner", output 1), not the other target ("left", output 0)."""
    left, corner = region(*REGIONS["left"]), region(*REGIONS["corner"])
    logits = torch.stack([signed(left, 5.0), signed(corner, 5.0)])[None, None]
    boxes = torch.stack([box_of(*REGIONS["left"]), box_of(*REGIONS["corner"])]).expand(1, 1, 2, 4)
    weights = LossWeights(bce=0, dice=0, box_l1=0, giou=0, iou=0, rank=1)
    loss = MultiChoiceLoss(num_points=64, weights=weights)
    rank = torch.zeros(1, 1, 2, requires_grad=True)
    optimizer = torch.optim.SGD([rank], lr=0.05)
    for _ in range(100):
        result = loss(output(logits, boxes, rank=rank), toy_targets([[2, 0]]))
        optimizer.zero_grad()
        result["total"].backward()
        optimizer.step()
    assert rank[0, 0, 1] > rank[0, 0, 0] + 0.5
    assert torch.isclose(rank[0, 0, 1], torch.tensor(1.0), atol=0.1)
    # Without the weight, or for a model without a rank head, there is no such term.
    assert "rank" not in MultiChoiceLoss(num_points=64)(output(logits, boxes, rank=rank), toy_targets([[2, 0]]))
    assert "rank" not in loss(output(logits, boxes), toy_targets([[2, 0]]))

"""Records, the BSDS500 reader, augmentation and training-prompt simulation."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from semsam.data import Bsds500Dataset, SegmentationRecord, build_dataset, mask_boxes, merge_duplicates
from semsam.data.augment import augment
from semsam.data.prompts import PromptSampling, TrainingBatch, prepare_batch

from helpers import HEIGHT, WIDTH, halves_annotations, write_bsds

@pytest.fixture
def bsds_root(tmp_path: Path) -> Path:
    write_bsds(tmp_path, "train", "0001", halves_annotations())
    write_bsds(tmp_path, "train", "0002", [np.ones((HEIGHT, WIDTH), dtype=np.int64)])
    return tmp_path


def box_mask(top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros((HEIGHT * 2, WIDTH * 2), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def hierarchy_record(image_id: str = "toy", with_classes: bool = False) -> SegmentationRecord:
    """96x128: object A with parts A-top and A-bottom, object B and a near-duplicate of B, and the background."""
    whole_a, top_a, bottom_a = box_mask(10, 10, 80, 70), box_mask(10, 10, 40, 70), box_mask(40, 10, 80, 70)
    whole_b = box_mask(20, 80, 90, 120)
    near_b = whole_b.copy()
    near_b[20, 80:100] = False
    background = ~(whole_a | whole_b)
    masks = np.stack([whole_a, top_a, bottom_a, whole_b, near_b, background])
    image = np.random.default_rng(1).integers(0, 256, size=(HEIGHT * 2, WIDTH * 2, 3), dtype=np.uint8)
    objects = [1, None, None, None, 2, 0] if with_classes else None
    parts = [None, 3, 4, None, None, None] if with_classes else None
    return SegmentationRecord(image=image, masks=masks, object_classes=objects, part_classes=parts, image_id=image_id)


def box_sides(boxes: torch.Tensor) -> torch.Tensor:
    return torch.cat([boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2], -1)


def make_batch(seed: int = 0, count: int = 40, **kwargs: object) -> TrainingBatch:
    options = {"image_size": 128, "size_divisibility": 32, "prompts_per_image": count, **kwargs}
    records = [hierarchy_record("a", with_classes=True), hierarchy_record("b")]
    return prepare_batch(records, rng=np.random.default_rng(seed), **options)


def test_record_rejects_bad_input() -> None:
    image = np.zeros((4, 5, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="must be bool"):
        SegmentationRecord(image=image, masks=np.zeros((1, 4, 5), np.uint8), object_classes=None,
                           part_classes=None, image_id="x")
    with pytest.raises(ValueError, match="must match the image size"):
        SegmentationRecord(image=image, masks=np.zeros((1, 5, 4), bool), object_classes=None,
                           part_classes=None, image_id="x")
    with pytest.raises(ValueError, match="object_classes has 2 entries for 1 masks"):
        SegmentationRecord(image=image, masks=np.zeros((1, 4, 5), bool), object_classes=[1, 2],
                           part_classes=None, image_id="x")
    with pytest.raises(ValueError, match="uint8"):
        SegmentationRecord(image=image.astype(np.float32), masks=np.zeros((0, 4, 5), bool), object_classes=None,
                           part_classes=None, image_id="x")


def test_merge_duplicates_keeps_first_and_its_classes() -> None:
    record = hierarchy_record(with_classes=True)
    merged = merge_duplicates(record, iou_threshold=0.95)
    assert merged.num_masks == 5
    assert np.array_equal(merged.masks[3], record.masks[3])
    assert merged.object_classes == [1, None, None, 2, 0]
    assert merged.part_classes == [None, 3, 4, None, None]


def linked_record() -> SegmentationRecord:
    """Object B and its near-duplicate, object A with its top half, a piece of B linked to B's duplicate, and a
    "part" of A that is A itself (a near-duplicate)."""
    whole_a, top_a = box_mask(10, 10, 80, 70), box_mask(10, 10, 40, 70)
    whole_b, piece_b = box_mask(20, 80, 90, 120), box_mask(20, 80, 40, 120)
    near_b, near_a = whole_b.copy(), whole_a.copy()
    near_b[20, 80:100] = False
    near_a[79, 10:40] = False
    masks = np.stack([whole_b, near_b, whole_a, top_a, piece_b, near_a])
    image = np.zeros((HEIGHT * 2, WIDTH * 2, 3), dtype=np.uint8)
    return SegmentationRecord(image=image, masks=masks, object_classes=[0, None, 1, None, None, None],
                              part_classes=[None, None, None, 2, 3, 4], image_id="linked",
                              part_of=[None, None, None, 2, 1, 2])


def test_record_rejects_bad_part_links() -> None:
    record = linked_record()
    fields = dict(image=record.image, masks=record.masks, object_classes=None, part_classes=None, image_id="x")
    with pytest.raises(ValueError, match="part_of has 2 entries for 6 masks"):
        SegmentationRecord(**fields, part_of=[None, 0])
    with pytest.raises(ValueError, match=r"part_of\[3\] = 3 is not the index of another mask"):
        SegmentationRecord(**fields, part_of=[None, None, None, 3, None, None])
    with pytest.raises(ValueError, match=r"part_of\[0\] = 6 is not the index of another mask \(there are 6"):
        SegmentationRecord(**fields, part_of=[6, None, None, None, None, None])
    with pytest.raises(ValueError, match=r"part_of\[1\] is True; it must be a mask index or None"):
        SegmentationRecord(**fields, part_of=[None, True, None, None, None, None])


def test_merge_duplicates_renumbers_part_links() -> None:
    merged = merge_duplicates(linked_record(), iou_threshold=0.95)
    assert merged.num_masks == 4
    assert merged.object_classes == [0, 1, None, None] and merged.part_classes == [None, 4, 2, 3]
    # top of A -> A (now 1); piece of B -> B's duplicate, merged into B (0); A's near-duplicate "part" merged into A
    # and lost its link to itself
    assert merged.part_of == [None, None, 1, 0]
    view = augment(linked_record(), image_size=64, rng=np.random.default_rng(0), flip=True, scale_range=None,
                   duplicate_iou=0.95)
    assert view.part_of == [None, None, 1, 0]


def test_mask_boxes_are_exclusive_pixel_extents() -> None:
    boxes = mask_boxes(np.stack([box_mask(10, 20, 30, 45), np.zeros((HEIGHT * 2, WIDTH * 2), bool)]))
    assert boxes.tolist() == [[20, 10, 45, 30], [0, 0, 0, 0]]


def test_bsds_reads_every_annotator_and_merges_near_duplicates(bsds_root: Path) -> None:
    dataset = Bsds500Dataset(root=bsds_root, split="train")
    assert len(dataset) == 2
    record = dataset[0]
    assert record.image.shape == (HEIGHT, WIDTH, 3) and record.image_id == "0001"
    assert record.object_classes is None and record.part_classes is None
    left = np.zeros((HEIGHT, WIDTH), bool)
    left[:, : WIDTH // 2] = True
    right_top = ~left
    right_top[HEIGHT // 2 :] = False
    expected = [left, ~left, right_top, ~left & ~right_top]
    assert record.num_masks == 4
    for mask in expected:
        assert any(np.array_equal(mask, m) for m in record.masks)
    assert Bsds500Dataset(root=bsds_root, split="train", min_area=1)[0].num_masks == 5
    assert dataset[1].num_masks == 1


def test_bsds_errors_name_the_problem(bsds_root: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        Bsds500Dataset(root=bsds_root / "nowhere", split="train")
    with pytest.raises(ValueError, match=r"split 'test' not found.*\['train'\]"):
        Bsds500Dataset(root=bsds_root, split="test")
    (bsds_root / "groundTruth" / "train" / "0001.mat").write_bytes(b"not a mat file")
    with pytest.raises(ValueError, match="cannot read BSDS500 ground-truth file"):
        Bsds500Dataset(root=bsds_root, split="train")[0]


def test_build_dataset_by_kind(bsds_root: Path) -> None:
    assert len(build_dataset(SimpleNamespace(kind="bsds500", root=str(bsds_root), split="train", options={}))) == 2
    known = "bsds500, coco, coco_panoptic, coco_parts, sa1b, synthetic_parts"
    with pytest.raises(ValueError, match=f"unknown dataset kind 'nowhere'; known kinds: {known}"):
        build_dataset(SimpleNamespace(kind="nowhere", root=str(bsds_root), split="train", options={}))


def test_augment_flips_and_keeps_masks_on_the_image() -> None:
    record = hierarchy_record()
    red = record.image.copy()
    red[..., 0] = np.where(record.masks[1], 255, 0)
    record = SegmentationRecord(image=red, masks=record.masks, object_classes=None, part_classes=None,
                                image_id="red")
    plain = augment(record, image_size=64, rng=np.random.default_rng(0), flip=False, scale_range=None,
                    duplicate_iou=0.95)
    assert plain.image.shape[:2] == (48, 64) and plain.masks.shape[1:] == (48, 64)
    flipped_seen = unflipped_seen = False
    for seed in range(12):
        view = augment(record, image_size=64, rng=np.random.default_rng(seed), flip=True, scale_range=None,
                       duplicate_iou=0.95)
        flipped = np.array_equal(view.masks, plain.masks[:, :, ::-1])
        flipped_seen |= flipped
        unflipped_seen |= np.array_equal(view.masks, plain.masks)
        assert flipped or np.array_equal(view.masks, plain.masks)
    assert flipped_seen and unflipped_seen
    for seed in range(5):
        view = augment(record, image_size=64, rng=np.random.default_rng(seed), flip=True, scale_range=(0.5, 2.0),
                       duplicate_iou=0.95)
        assert max(view.image.shape[:2]) <= 64 and view.masks.shape[1:] == view.image.shape[:2]
        assert view.masks.any((1, 2)).all()
        red_share = [(view.image[..., 0][m] > 127).mean() for m in view.masks]
        assert max(red_share) > 0.9 and sorted(red_share)[-2] < 0.6


def test_prepare_batch_shapes_and_padding() -> None:
    batch = make_batch()
    assert batch.images.shape == (2, 3, 96, 128)
    assert batch.images.dtype == torch.float32 and batch.images.max() <= 255
    prompts, targets = batch.prompts, batch.targets
    assert prompts.anchors.shape == (2, 40, 4) and prompts.anchor_is_box.shape == (2, 40)
    assert prompts.points.shape[:3] == prompts.point_labels.shape and prompts.points.shape[-1] == 2
    assert prompts.mask_inputs is None
    assert targets.gt_masks.shape == (2, 5, 96, 128) and targets.indices.shape[:2] == (2, 40)
    assert targets.valid.any(-1).all()
    assert ((prompts.anchors >= 0) & (prompts.anchors <= 1)).all()
    odd = prepare_batch([hierarchy_record()], image_size=100, size_divisibility=32, prompts_per_image=2,
                        rng=np.random.default_rng(0), pad_value=7.0)
    images, prompts, targets = odd
    assert images.shape == (1, 3, 96, 128) and targets.gt_masks.shape[-2:] == (96, 128)
    assert (images[0, :, 75:] == 7).all() and (images[0, :, :, 100:] == 7).all()
    assert not targets.gt_masks[0, :, 75:].any() and not targets.gt_masks[0, :, :, 100:].any()
    assert (images[0, :, :75, :100] != 7).any(0).float().mean() > 0.9


def test_click_targets_are_every_mask_under_the_click() -> None:
    batch = make_batch(prompts_per_image=60, sampling=PromptSampling(box_fraction=0.0, multi_click_fraction=0.0))
    targets = batch.targets
    height, width = targets.gt_masks.shape[-2:]
    xs = (batch.prompts.anchors[..., 0] * width).long()
    ys = (batch.prompts.anchors[..., 1] * height).long()
    assert torch.allclose(batch.prompts.anchors[..., 2:], torch.tensor(0.005))
    for b in range(2):
        under = targets.gt_masks[b][:, ys[b], xs[b]].T
        for n in range(60):
            chosen = targets.indices[b, n][targets.valid[b, n]]
            assert sorted(chosen.tolist()) == torch.nonzero(under[n]).flatten().tolist()
    sizes = targets.valid.sum(-1)
    assert (sizes == 1).any() and (sizes == 2).any()


def test_a_prompts_own_mask_comes_first_among_its_targets() -> None:
    """Slot 0 is the mask a click was drawn from, not the first mask under it: the rank head learns from it."""
    batch = make_batch(prompts_per_image=80, sampling=PromptSampling(box_fraction=0.0, multi_click_fraction=0.0))
    first = {tuple(sorted(row[row >= 0].tolist())): set() for row in batch.targets.indices.flatten(0, 1)}
    for row in batch.targets.indices.flatten(0, 1):
        first[tuple(sorted(row[row >= 0].tolist()))].add(int(row[0]))
    # A click in A's top half lies in A (mask 0) and its top (mask 1); either may have been the one sampled.
    assert first[(0, 1)] == {0, 1} and first[(0, 2)] == {0, 2}


def test_max_targets_caps_with_a_random_subset() -> None:
    batch = make_batch(sampling=PromptSampling(box_fraction=0.0, multi_click_fraction=0.0, max_targets=1))
    assert batch.targets.indices.shape[-1] == 1 and batch.targets.valid.all()


def test_multi_click_targets_respect_positive_and_negative_clicks() -> None:
    sampling = PromptSampling(box_fraction=0.0, multi_click_fraction=1.0, max_extra_clicks=2)
    batch = make_batch(count=60, sampling=sampling)
    prompts, targets = batch.prompts, batch.targets
    height, width = targets.gt_masks.shape[-2:]
    points = torch.cat([prompts.anchors[..., None, :2], prompts.points], 2)
    labels = torch.cat([torch.ones_like(prompts.point_labels[..., :1]), prompts.point_labels], 2)
    assert (prompts.point_labels[..., 0] >= 0).all() and (labels == 0).any() and (labels[..., 1:] == 1).any()
    narrowed = 0
    for b in range(2):
        for n in range(60):
            real = labels[b, n] >= 0
            xs = (points[b, n, real, 0] * width).long()
            ys = (points[b, n, real, 1] * height).long()
            values = targets.gt_masks[b][:, ys, xs]
            consistent = (values == (labels[b, n, real] == 1)).all(1)
            chosen = targets.indices[b, n][targets.valid[b, n]]
            assert sorted(chosen.tolist()) == torch.nonzero(consistent).flatten().tolist()
            narrowed += int(len(chosen) < int(values[:, 0].sum()))
    assert narrowed > 0


def test_box_prompts_target_their_mask_with_a_jittered_box() -> None:
    batch = make_batch(sampling=PromptSampling(box_fraction=1.0, box_noise=0.1))
    prompts, targets = batch.prompts, batch.targets
    assert prompts.anchor_is_box.all() and prompts.points.shape[2] == 0
    assert targets.valid.sum(-1).eq(1).all()
    truth = targets.boxes[..., 0, :]
    moved = (box_sides(prompts.anchors) - box_sides(truth)).abs()
    assert (moved <= 0.1 * truth[..., 2:].repeat(1, 1, 2) + 1e-6).all() and moved.max() > 0
    mask = targets.gt_masks[0, targets.indices[0, 0, 0]]
    rows, cols = torch.nonzero(mask, as_tuple=True)
    x0, x1 = cols.min() / 128, (cols.max() + 1) / 128
    y0, y1 = rows.min() / 96, (rows.max() + 1) / 96
    expected = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0])
    assert torch.allclose(truth[0, 0], expected)


def test_targets_carry_class_ids_and_no_near_duplicates() -> None:
    batch = make_batch(count=60, sampling=PromptSampling(box_fraction=0.0, multi_click_fraction=0.0))
    targets = batch.targets
    objects, parts = targets.object_classes, targets.part_classes
    assert objects is not None and parts is not None
    table_objects = torch.tensor([[1, -1, -1, 2, 0], [-1] * 5])
    table_parts = torch.tensor([[-1, 3, 4, -1, -1], [-1] * 5])
    for b in range(2):
        index = targets.indices[b].clamp(min=0)
        assert torch.equal(objects[b], torch.where(targets.valid[b], table_objects[b][index], -1))
        assert torch.equal(parts[b], torch.where(targets.valid[b], table_parts[b][index], -1))
    assert (objects[0] == 2).any() and (parts[0] == 3).any()
    flat = targets.gt_masks.flatten(2).float()
    overlap = flat @ flat.transpose(1, 2)
    areas = flat.sum(-1)
    iou = overlap / (areas[:, :, None] + areas[:, None] - overlap).clamp(min=1)
    assert (iou - torch.eye(5)).max() <= 0.95


def test_batches_are_reproducible_and_handle_images_without_masks() -> None:
    first, second = make_batch(seed=3), make_batch(seed=3)
    assert torch.equal(first.prompts.anchors, second.prompts.anchors)
    assert torch.equal(first.targets.indices, second.targets.indices)
    empty = SegmentationRecord(image=np.zeros((50, 60, 3), np.uint8), masks=np.zeros((0, 50, 60), bool),
                               object_classes=None, part_classes=None, image_id="empty")
    batch = prepare_batch([empty, hierarchy_record()], image_size=64, size_divisibility=32, prompts_per_image=4,
                          rng=np.random.default_rng(0))
    assert not batch.targets.valid[0].any() and batch.targets.valid[1].any(-1).all()
    # A batch where no image has a mask left (a crop can miss them all) has targets that are all invalid.
    nothing = prepare_batch([empty, empty], image_size=64, size_divisibility=32, prompts_per_image=4,
                            rng=np.random.default_rng(0))
    assert not nothing.targets.valid.any() and nothing.targets.boxes.abs().sum() == 0
    with pytest.raises(ValueError, match="at least one record"):
        prepare_batch([], image_size=64, size_divisibility=32, prompts_per_image=4, rng=np.random.default_rng(0))

"""Label accuracy of clicked masks: does the mask a click yields carry the right object or part name?"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from semsam.data.records import SegmentationDataset, SegmentationRecord
from semsam.evaluation.click import MIN_AREA_FRACTION, interior_click, mask_ious
from semsam.prediction import Prediction, Prompt
from semsam.predictor import Predictor


@dataclass(frozen=True)
class LabelMetrics:
    """Accuracies over object masks and over part masks, with the chance levels they must beat.

    `*_accuracy` reads the label of the predicted mask that best matches the target (highest IoU among the K),
    so it measures recognition apart from choosing the granularity; `*_accuracy_top1` reads the label of the
    highest-scored mask instead. `*_chance` is the share of the most frequent class among the targets (what
    always answering that class scores); `*_uniform_chance` is one over the number of names. A kind without
    targets (e.g. parts in a data set of objects only) has None for its figures.
    """

    object_accuracy: float | None
    object_accuracy_top1: float | None
    object_chance: float | None
    object_uniform_chance: float | None
    object_targets: int
    part_accuracy: float | None
    part_accuracy_top1: float | None
    part_chance: float | None
    part_uniform_chance: float | None
    part_targets: int
    mean_match_iou: float
    images: int


def evaluate_labels(
    predictor: Predictor, dataset: SegmentationDataset, *, max_images: int | None = None, progress: bool = True
) -> LabelMetrics:
    """Clicks the interior-most pixel of every labelled mask covering >= 0.5% of its image and checks the label.

    Object masks are those with an object class and no part class; part masks are those with a part class.
    The predictor's vocabulary is set to the dataset's names, so labels are chosen among the dataset's classes.

    Args:
        predictor: wraps a model whose classification heads were trained.
        dataset: images with labelled masks and `object_names`, `part_names` or both.
        max_images: evaluate only the first N images.
        progress: show a progress bar.

    Raises:
        ValueError: the model has no trained labels, or the dataset names no classes.
    """
    if not predictor.labels_available:
        raise ValueError("this model's object/part heads were never trained, so its masks have no labels to evaluate")
    if not dataset.object_names and not dataset.part_names:
        raise ValueError("label accuracy needs a dataset that names its object or part classes (e.g. coco, coco_parts)")
    predictor.set_vocabulary(objects=dataset.object_names or None, parts=dataset.part_names or None)
    hits: dict[str, list[tuple[bool, bool]]] = {"object": [], "part": []}
    truths: dict[str, list[str]] = {"object": [], "part": []}
    match_ious: list[float] = []
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    images = 0
    for index in tqdm(range(count), desc="evaluating labels", unit="image", disable=not progress):
        record = dataset[index]
        targets = labelled_targets(record, dataset)
        if not targets:
            continue
        images += 1
        predictor.set_image(record.image)
        predictions = predictor.predict_batch([Prompt(points=[interior_click(record.masks[m])]) for m, _, _ in targets])
        for (m, kind, name), prediction in zip(targets, predictions):
            ious = mask_ious(prediction.masks, record.masks[m])
            best, top = int(np.argmax(ious)), int(np.argmax(prediction.scores))
            match_ious.append(float(ious[best]))
            hits[kind].append((_label(prediction, best, kind) == name, _label(prediction, top, kind) == name))
            truths[kind].append(name)
    objects, parts = _summary(hits["object"], truths["object"]), _summary(hits["part"], truths["part"])
    return LabelMetrics(
        object_accuracy=objects[0], object_accuracy_top1=objects[1], object_chance=objects[2],
        object_uniform_chance=_uniform(dataset.object_names, hits["object"]), object_targets=len(hits["object"]),
        part_accuracy=parts[0], part_accuracy_top1=parts[1], part_chance=parts[2],
        part_uniform_chance=_uniform(dataset.part_names, hits["part"]), part_targets=len(hits["part"]),
        mean_match_iou=float(np.mean(match_ious)) if match_ious else 0.0, images=images,
    )


def labelled_targets(record: SegmentationRecord, dataset: SegmentationDataset) -> list[tuple[int, str, str]]:
    """The labelled masks covering >= 0.5% of their image: (mask index, "object" or "part", class name).

    A mask with a part class is a part; one with only an object class is an object.
    """
    targets = []
    for m, mask in enumerate(record.masks):
        if mask.sum() < MIN_AREA_FRACTION * mask.size:
            continue
        part = record.part_classes[m] if record.part_classes else None
        obj = record.object_classes[m] if record.object_classes else None
        if part is not None:
            targets.append((m, "part", dataset.part_names[part]))
        elif obj is not None:
            targets.append((m, "object", dataset.object_names[obj]))
    return targets


def _label(prediction: Prediction, index: int, kind: str) -> str:
    label = prediction.labels[index]
    return label.object if kind == "object" else label.part


def _uniform(names: tuple[str, ...] | None, hits: list[tuple[bool, bool]]) -> float | None:
    return 1 / len(names) if names and hits else None


def _summary(hits: list[tuple[bool, bool]], truths: list[str]) -> tuple[float | None, float | None, float | None]:
    """(accuracy of the best-matching mask, accuracy of the top-scored mask, majority-class share), or Nones."""
    if not hits:
        return None, None, None
    best, top = np.mean(hits, axis=0)
    return float(best), float(top), Counter(truths).most_common(1)[0][1] / len(truths)

"""Text-to-mask: prompted with a labelled instance's class name, does the top-ranked mask cover that instance?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils
from scipy.stats import mannwhitneyu
from tqdm import tqdm

from semsam.automatic.hierarchy import GeneratedMask
from semsam.automatic.masks import to_pycocotools
from semsam.automatic.text_prompt import TextPrompter, TextQuery
from semsam.data.records import SegmentationDataset
from semsam.evaluation.labels import labelled_targets
from semsam.io import mask_to_rle

HIT_IOU = 0.5


@dataclass(frozen=True)
class Detection:
    """Does a name's top score tell whether it is in the image? For every image and every class name of one kind
    (object or part) of the data set, the top score decides "found" or "nothing matches".

    `found_rate` is the share of present names found at `threshold`, `rejected_rate` the share of absent names
    answered "nothing matches", `auc` the probability that a present name outscores an absent one, and
    `best_threshold` the score with the highest balanced accuracy (mean of the two rates) on this split.
    """

    found_rate: float
    rejected_rate: float
    auc: float | None
    threshold: float
    best_threshold: float | None
    best_balanced_accuracy: float | None
    present: int
    absent: int


@dataclass(frozen=True)
class TextMetrics:
    """Text-to-mask figures over every labelled instance (or part) covering >= 0.5% of its image.

    `mean_top_iou` is the mean IoU of the top-ranked mask for the instance's class name with the instance (the
    best over the image's instances of that class, which the name cannot tell apart); `top_hit_rate` is the
    share where that IoU is >= 0.5. `class_first_rate` is the share of instances whose best-matching candidate
    scores its own class highest among the data set's names of its kind. `detection` has, per kind with names,
    how well top scores tell present names from absent ones. Where a data set labels only some instances
    (COCO-MVal), some "absent" names are present and unlabelled, so rejection reads low.
    """

    mean_top_iou: float
    top_hit_rate: float
    class_first_rate: float
    detection: dict[str, Detection]
    instances: int
    images: int


def evaluate_text(
    prompter: TextPrompter, dataset: SegmentationDataset, *, max_images: int | None = None, progress: bool = True
) -> TextMetrics:
    """Prompts every labelled instance's class name on the generator's candidates of its image.

    Args:
        prompter: a text prompter of a model with trained heads; its vocabulary is kept (the model's own).
        dataset: images with labelled masks and `object_names`, `part_names` or both.
        max_images: evaluate only the first N images.
        progress: show a progress bar.

    Raises:
        ValueError: the dataset names no classes.
    """
    if not dataset.object_names and not dataset.part_names:
        raise ValueError("text-to-mask needs a dataset that names its object or part classes (e.g. coco, coco_parts)")
    vocabulary = prompter.predictor.vocabulary
    queries = {("object", name): TextQuery(text=name, object=name, part=None) for name in dataset.object_names or ()}
    queries |= {("part", name): TextQuery(text=name, object=name, part=None) for name in dataset.part_names or ()}
    names = {key: prompter.resolve(query, vocabulary) for key, query in queries.items()}
    top_ious, hits, class_first = [], [], []
    present: dict[str, list[float]] = {"object": [], "part": []}
    absent: dict[str, list[float]] = {"object": [], "part": []}
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    images = 0
    for index in tqdm(range(count), desc="evaluating text prompts", unit="image", disable=not progress):
        record = dataset[index]
        targets = [(m, (kind, name)) for m, kind, name in labelled_targets(record, dataset)]
        if not targets:
            continue
        images += 1
        prompter.predictor.set_image(record.image)
        candidates = prompter.generator.generate(record.image, predictor=prompter.predictor)
        ranked = {key: prompter.score(match, candidates) for key, match in names.items()}
        for key, scored in ranked.items():
            pool = present if any(t[1] == key for t in targets) else absent
            pool[key[0]].append(max((score for score, _ in scored), default=0.0))
        ious = _candidate_ious(candidates, [record.masks[m] for m, _ in targets])
        for column, (_, key) in enumerate(targets):
            same_class = [c for c, (_, other) in enumerate(targets) if other == key]
            scored = ranked[key]
            top_iou = float(ious[scored[0][1].id, same_class].max()) if scored else 0.0
            top_ious.append(top_iou)
            hits.append(top_iou >= HIT_IOU)
            class_first.append(_class_first(ranked, key, ious[:, column]))
    return TextMetrics(
        mean_top_iou=_mean(top_ious), top_hit_rate=_mean(hits), class_first_rate=_mean(class_first),
        detection={kind: _detection(np.array(present[kind]), np.array(absent[kind]), prompter.thresholds[kind])
                   for kind in ("object", "part") if present[kind] or absent[kind]},
        instances=len(top_ious), images=images,
    )


def _detection(present: np.ndarray, absent: np.ndarray, threshold: float) -> Detection:
    best = _best_threshold(present, absent)
    return Detection(
        found_rate=_mean(present >= threshold), rejected_rate=_mean(absent < threshold),
        auc=(float(mannwhitneyu(present, absent).statistic / (len(present) * len(absent)))
             if len(present) and len(absent) else None),
        threshold=threshold, best_threshold=best[0], best_balanced_accuracy=best[1],
        present=len(present), absent=len(absent),
    )


def _candidate_ious(candidates: list[GeneratedMask], targets: list[np.ndarray]) -> np.ndarray:
    """IoU [candidate id, target] of every candidate with every target, on RLE: no candidate is decoded."""
    if not candidates:
        return np.zeros((0, len(targets)))
    ious = mask_utils.iou(to_pycocotools([c.rle() for c in candidates]),
                          to_pycocotools([mask_to_rle(t) for t in targets]), [0] * len(targets))
    return np.asarray(ious).reshape(len(candidates), len(targets))


def _class_first(ranked: dict, key: tuple[str, str], target_ious: np.ndarray) -> bool:
    """Whether the candidate that best matches the target (its IoU per candidate id: `target_ious`) scores class
    `key` above every other name of its kind."""
    scored = ranked[key]
    if not scored:
        return False
    own, best = max(scored, key=lambda item: target_ious[item[1].id])
    rivals = [next((s for s, m in other if m is best), 0.0) for k, other in ranked.items() if k != key and k[0] == key[0]]
    return all(own > rival for rival in rivals)


def _best_threshold(present: np.ndarray, absent: np.ndarray) -> tuple[float | None, float | None]:
    """The score threshold with the highest balanced accuracy, and that accuracy."""
    if not len(present) or not len(absent):
        return None, None
    thresholds = np.unique(np.concatenate([present, absent]))
    accuracy = [(np.mean(present >= t) + np.mean(absent < t)) / 2 for t in thresholds]
    best = int(np.argmax(accuracy))
    return round(float(thresholds[best]), 4), float(accuracy[best])


def _mean(values: list | np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else 0.0

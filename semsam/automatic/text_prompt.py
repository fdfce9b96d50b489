"""Text prompts: the masks that a phrase names ("dog", "person:hair"), ranked by how well their labels match it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from semsam.automatic.generator import MaskGenerator
from semsam.automatic.hierarchy import CONTAINMENT_THRESHOLD, GeneratedMask
from semsam.automatic.masks import to_pycocotools
from semsam.image import as_rgb_uint8
from semsam.io import mask_to_rle
from semsam.prediction import MaskLabel
from semsam.predictor import Predictor
from semsam.text import TextEncoder

# A phrase whose nearest vocabulary name is less similar than this (MiniLM cosine) names nothing the model knows.
MIN_RELEVANCE = 0.35
# Softmax temperature that spreads a phrase over vocabulary names by cosine: "puppy" lands almost wholly on "dog".
NAME_TEMPERATURE = 0.05
# Calibrated for the embedded default (`semsam eval text`, docs/evaluation.md): the scores that best separate names
# present in an image from absent ones, objects on COCO-MVal, parts on CCP, on the first half of each val split
# (training images score higher than unseen ones). Object probabilities spread over more names and run lower than
# part ones, hence two thresholds. Objects: the head times the recognizer (`Predictor`).
DEFAULT_THRESHOLDS = {"object": 0.14, "part": 0.23}
# Candidates overlapping a better-ranked one by more than this mask IoU are the same answer at another level.
DUPLICATE_IOU = 0.8
OBJECT_LEVELS = (3, 4, 5, 6)
PART_LEVELS = (1, 2, 3, 4)
MAX_TEXT_LENGTH = 200
_ARTICLES = re.compile(r"^(the|a|an|this|that)\s+", re.IGNORECASE)


@dataclass(frozen=True)
class TextQuery:
    """What a phrase asks for: an object, a part, or a part of an object."""

    text: str
    object: str | None
    part: str | None


@dataclass(frozen=True)
class NameMatch:
    """How one phrase maps onto a vocabulary: its nearest names by cosine similarity, best first."""

    phrase: str
    vocabulary: str  # "object" or "part"
    nearest: tuple[tuple[str, float], ...]
    weights: np.ndarray  # [names], softmax of the cosines at NAME_TEMPERATURE

    @property
    def relevance(self) -> float:
        """Cosine similarity of the phrase with its nearest name."""
        return self.nearest[0][1]


@dataclass
class TextMatch:
    """One mask that the phrase names."""

    mask: np.ndarray  # bool [H, W]
    score: float  # probability mass the mask's labels put on the phrase's names
    level: int
    predicted_iou: float
    bbox: tuple[float, float, float, float]  # x, y, width, height (COCO)
    label: MaskLabel


@dataclass
class TextResult:
    """The answer to a text prompt: matches in ranking order (see `TextPrompter.score`), or none and why."""

    query: TextQuery
    names: list[NameMatch]
    matches: list[TextMatch]
    threshold: float
    reason: str | None = None  # set when nothing matches

    @property
    def found(self) -> bool:
        return bool(self.matches)

    def to_json(self) -> dict[str, Any]:
        """The answer as JSON-ready data: the query, the names it was read as, and each match in COCO RLE."""
        return {
            "text": self.query.text,
            "query": {"object": self.query.object, "part": self.query.part},
            "names": [{"phrase": n.phrase, "vocabulary": n.vocabulary, "nearest": [list(p) for p in n.nearest]}
                      for n in self.names],
            "threshold": self.threshold,
            "found": self.found,
            "reason": self.reason,
            "matches": [{"rank": rank, "score": m.score, "level": m.level, "predicted_iou": m.predicted_iou,
                         "area": int(m.mask.sum()), "bbox": [float(v) for v in m.bbox],
                         "segmentation": mask_to_rle(m.mask), "label": vars(m.label)}
                        for rank, m in enumerate(self.matches, start=1)],
        }


def parse_text_prompt(text: str) -> TextQuery:
    """Reads "dog", "person:hair", "hair of the person" or "person's hair".

    Raises:
        ValueError: empty, over-long, or with an empty object or part.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the text prompt is empty; name what to find, e.g. 'dog' or 'person:hair'")
    if len(text) > MAX_TEXT_LENGTH:
        raise ValueError(f"the text prompt has {len(text)} characters; keep it under {MAX_TEXT_LENGTH}")
    phrase = " ".join(text.split())
    if ":" in phrase:
        obj, _, part = phrase.partition(":")
    elif match := re.fullmatch(r"(.+?)'s\s+(.+)", phrase):
        obj, part = match.groups()
    elif match := re.fullmatch(r"(.+?)\s+of\s+(.+)", phrase):
        part, obj = match.groups()
    else:
        return TextQuery(text=phrase, object=_strip_article(phrase) or phrase, part=None)
    obj, part = _strip_article(obj), _strip_article(part)
    if not obj or not part:
        raise ValueError(f"text prompt {text!r} names a part of an object; give both, e.g. 'person:hair'")
    return TextQuery(text=phrase, object=obj, part=part)


class TextPrompter:
    """Finds the masks a phrase names, alone or together with clicks and a box ("the dog here").

    Without clicks or a box, candidates are the automatic generator's masks at the levels that fit the phrase
    (object names at object-sized levels, part names at part levels); with them, the prompt's own K masks. Each
    candidate's score is the probability its object (or part) label puts on the phrase's names, where the
    phrase is spread over the vocabulary by text similarity, so any wording works ("puppy" finds "dog"). A part
    of an object ("person:hair") combines the part's score with the best object score among the mask and the
    candidates containing it (geometric mean).

    Args:
        model: a `SemanticSam` whose object/part heads were trained.
        thresholds: {"object": t, "part": t}: masks scoring below the threshold of the phrase's kind are no match
            (a part of an object: the geometric mean of both); default: `DEFAULT_THRESHOLDS`.
        object_levels: levels searched for an object name.
        part_levels: levels searched for a part name.
        points_per_side: prompt grid of the automatic candidates.
        max_matches: at most this many matches are returned.
        objects: object vocabulary, as for `Predictor` (default: the one the heads were trained on).
        parts: part vocabulary, likewise.
        text_encoder: embeds phrases and vocabularies; default: a `TextEncoder` with a disk cache (a server
            taking phrases from its users should pass one without).

    Raises:
        ValueError: the model's heads were never trained, so its masks have no labels to match.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        thresholds: dict[str, float] | None = None,
        object_levels: Sequence[int] = OBJECT_LEVELS,
        part_levels: Sequence[int] = PART_LEVELS,
        points_per_side: int = 16,
        max_matches: int = 5,
        objects: str | Sequence[str] | None = None,
        parts: str | Sequence[str] | None = None,
        text_encoder: TextEncoder | None = None,
    ) -> None:
        semantic = getattr(model, "semantic", None)
        if semantic is None or not semantic.trained:
            raise ValueError("text prompts need a model with trained object/part heads (this one has none); use "
                             "the embedded default (semsam.load_model()) or a checkpoint trained with labels")
        thresholds = dict(DEFAULT_THRESHOLDS if thresholds is None else thresholds)
        if set(thresholds) != {"object", "part"} or not all(0 <= t <= 1 for t in thresholds.values()):
            raise ValueError(f'thresholds must be {{"object": t, "part": t}} with each t in [0, 1], got {thresholds}')
        if max_matches < 1:
            raise ValueError(f"max_matches must be at least 1, got {max_matches}")
        self.generator = MaskGenerator(model, levels=sorted(set(object_levels) | set(part_levels)),
                                       points_per_side=points_per_side, output_mode="coco_rle",
                                       objects=objects, parts=parts)
        self.thresholds = thresholds
        self.object_levels = tuple(object_levels)
        self.part_levels = tuple(part_levels)
        self.max_matches = max_matches
        self._encoder = text_encoder or TextEncoder()

    @property
    def predictor(self) -> Predictor:
        """The predictor that encodes images for the candidates; pass it back to `predict` to reuse an image."""
        return self.generator.predictor

    def predict(
        self,
        image: np.ndarray | Image.Image,
        text: str,
        *,
        points: Sequence[Sequence[float]] | np.ndarray | None = None,
        labels: Sequence[int] | np.ndarray | None = None,
        box: Sequence[float] | np.ndarray | None = None,
        predictor: Predictor | None = None,
    ) -> TextResult:
        """The masks that `text` names in `image`, ranked best first.

        Args:
            image: HxWx3 uint8 RGB (other forms are converted as by `Predictor.set_image`).
            text: "dog", "person:hair", "hair of the person", ...
            points: clicks (x, y) that the answer must come from (with `labels`, 1 positive, 0 negative).
            labels: 1 or 0 per click.
            box: (x0, y0, x1, y1) around the answer.
            predictor: a `Predictor` of the same model with `image` already set (a cached embedding), to skip
                encoding it again; its vocabulary labels the candidates.

        Returns:
            The matches, or none with `reason` saying why.
        """
        query = parse_text_prompt(text)
        rgb = as_rgb_uint8(image)
        if predictor is None:
            predictor = self.predictor
            predictor.set_image(rgb)
        elif predictor.image_size != rgb.shape[:2]:
            raise ValueError(f"the predictor holds a {predictor.image_size} (h, w) image but the image given is "
                             f"{rgb.shape[:2]}: call predictor.set_image(image) first, or pass no predictor")
        names = self.resolve(query, predictor.vocabulary)
        if (weak := [name for name in names if name.relevance < MIN_RELEVANCE]):
            return TextResult(query=query, names=names, matches=[], threshold=self.threshold(names),
                              reason=_unknown_reason(weak[0]))
        spatial = points is not None or box is not None
        candidates = (_prompt_candidates(predictor, points, labels, box) if spatial
                      else self.generator.generate(rgb, predictor=predictor))
        return self.rank(query, names, candidates)

    def resolve(self, query: TextQuery, vocabulary: tuple[list[str], list[str]]) -> list[NameMatch]:
        """The vocabulary names behind a query.

        Args:
            query: a parsed text prompt.
            vocabulary: (object names, part names) that the candidates are labelled with.

        Returns:
            [object, part] for a part of an object; for a lone phrase, one match on the vocabulary (objects or
            parts) whose nearest name is closer.
        """
        objects, parts = vocabulary
        if query.part is not None:
            return [self._match(query.object, "object", objects), self._match(query.part, "part", parts)]
        as_object, as_part = self._match(query.object, "object", objects), self._match(query.object, "part", parts)
        return [as_part if as_part.relevance > as_object.relevance else as_object]

    def score(self, names: list[NameMatch], candidates: list[GeneratedMask]) -> list[tuple[float, GeneratedMask]]:
        """Every candidate at a level that fits the names, with its score, in ranking order.

        Part names rank by score; object names by score times predicted IoU, so that of two masks labelled alike
        the better-formed one comes first (on the first 100 COCO-MVal train images this raised the top-ranked
        mask's mean IoU from 0.41 to 0.47; for parts, on 60 CCP train images, it lowered it from 0.58 to 0.53).

        Args:
            names: `resolve`'s answer for one query.
            candidates: labelled masks of one image (from the generator, or a prompt's K masks).

        Returns:
            (score, mask) pairs, best ranked first.
        """
        target = names[-1]
        levels = self.part_levels if target.vocabulary == "part" else self.object_levels
        fitting = [mask for mask in candidates if mask.level in levels and mask.label_probabilities is not None]
        scores = np.array([_mass(mask, target) for mask in fitting])
        if len(names) == 2 and fitting:
            # The geometric mean keeps a part-of-object score on the scale of a lone name's, so one threshold fits.
            scores = np.sqrt(scores * _object_context(fitting, candidates, names[0]))
        scored = list(zip(scores.tolist(), fitting))
        by_form = target.vocabulary == "object"
        scored.sort(key=lambda item: (-item[0] * (item[1].predicted_iou if by_form else 1), -item[1].predicted_iou))
        return scored

    def rank(self, query: TextQuery, names: list[NameMatch], candidates: list[GeneratedMask]) -> TextResult:
        """Scores candidates against resolved names and keeps the distinct ones above the threshold, in ranking order."""
        scored = self.score(names, candidates)
        threshold = self.threshold(names)
        kept: list[tuple[float, GeneratedMask]] = []
        for score, mask in scored:
            if len(kept) == self.max_matches:
                break
            if score >= threshold and (not kept or _max_iou(mask, [m for _, m in kept]) <= DUPLICATE_IOU):
                kept.append((score, mask))
        matches = [TextMatch(mask=mask.mask(), score=float(score), level=mask.level,
                             predicted_iou=float(mask.predicted_iou), bbox=tuple(mask.bbox), label=mask.label)
                   for score, mask in kept]
        reason = None
        if not matches:
            best = f"{max(score for score, _ in scored):.3f}" if scored else "no candidate mask"
            reason = (f"no mask matches {query.text!r}: the best score is {best}, below the threshold "
                      f"{threshold:.3f}")
        return TextResult(query=query, names=names, matches=matches, threshold=threshold, reason=reason)

    def threshold(self, names: list[NameMatch]) -> float:
        """The score a match for these names needs: its kind's threshold, or for a part of an object the geometric
        mean of both (as its score is)."""
        return float(np.prod([self.thresholds[name.vocabulary] for name in names]) ** (1 / len(names)))

    def _match(self, phrase: str, vocabulary: str, names: list[str]) -> NameMatch:
        phrase_embedding = self._encoder.encode([phrase])[0]
        cosines = (self._encoder.encode(names) @ phrase_embedding).numpy()
        order = np.argsort(-cosines)[:3]
        weights = torch.softmax(torch.from_numpy(cosines) / NAME_TEMPERATURE, 0).numpy()
        return NameMatch(phrase=phrase, vocabulary=vocabulary, weights=weights,
                         nearest=tuple((names[i], round(float(cosines[i]), 3)) for i in order))


def _prompt_candidates(predictor: Predictor, points: object, labels: object, box: object) -> list[GeneratedMask]:
    """The K masks of a click/box prompt as candidates (level = rank by area, finest first)."""
    prediction = predictor.predict(points=points, labels=labels, box=box)
    candidates = []
    for k, mask in enumerate(prediction.masks):
        x0, y0, x1, y1 = prediction.boxes[k].tolist()
        candidates.append(GeneratedMask(
            id=k, level=k + 1, segmentation=mask_to_rle(mask), area=int(mask.sum()),
            bbox=(x0, y0, x1 - x0, y1 - y0), predicted_iou=float(prediction.scores[k]), stability_score=1.0,
            point_coords=(0.0, 0.0), crop_box=(0, 0, mask.shape[1], mask.shape[0]),
            label=prediction.labels[k],
            label_probabilities=tuple(p[k] for p in prediction.label_probabilities),
        ))
    return candidates


def _strip_article(phrase: str) -> str:
    return _ARTICLES.sub("", phrase.strip()).strip()


def _mass(mask: GeneratedMask, name: NameMatch) -> float:
    """The probability that `mask`'s object or part label puts on the names a phrase stands for."""
    probabilities = mask.label_probabilities[0 if name.vocabulary == "object" else 1]
    return float(np.dot(probabilities, name.weights))


def _object_context(masks: list[GeneratedMask], candidates: list[GeneratedMask], name: NameMatch) -> np.ndarray:
    """Per mask, the best object score for `name` among the mask itself and the candidates containing it."""
    context = np.array([_mass(mask, name) for mask in masks])
    containers = [c for c in candidates if c.label_probabilities is not None]
    if containers:
        # With every "ground truth" marked crowd, pycocotools divides the intersection by the first argument's area.
        inside = np.asarray(mask_utils.iou(to_pycocotools([m.rle() for m in masks]),
                                           to_pycocotools([c.rle() for c in containers]), [1] * len(containers)))
        container_scores = np.array([_mass(c, name) for c in containers])
        contained = inside.reshape(len(masks), len(containers)) >= CONTAINMENT_THRESHOLD
        context = np.maximum(context, np.where(contained, container_scores[None], 0).max(1))
    return context


def _max_iou(mask: GeneratedMask, others: list[GeneratedMask]) -> float:
    rles = to_pycocotools([m.rle() for m in [mask, *others]])
    return float(np.max(mask_utils.iou(rles[:1], rles[1:], [0] * len(others))))


def _unknown_reason(name: NameMatch) -> str:
    nearest = ", ".join(f"{n} {c:.2f}" for n, c in name.nearest)
    option = "objects" if name.vocabulary == "object" else "parts"
    return (f"{name.phrase!r} is unlike every {name.vocabulary} name the model knows (nearest: {nearest}; "
            f"similarity below {MIN_RELEVANCE}); add it to the vocabulary ({option}=...) to search for it")

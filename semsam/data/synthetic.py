"""Procedural scenes of objects made of named parts: labelled object and part masks for teaching labels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from semsam.data.records import SegmentationDataset, SegmentationRecord

SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
OBJECT_NAMES = ("car", "person", "tree", "house")
PART_NAMES = ("body", "window", "wheel", "head", "torso", "leg", "trunk", "leaves", "wall", "roof", "door")

Shape = tuple[str, tuple[float, ...]]  # ("rect" | "ellipse" | "polygon", coordinates in pixels)


@dataclass(frozen=True)
class _Part:
    name: str
    shape: Shape
    colour: np.ndarray  # [3] float RGB


def _jitter(rng: np.random.Generator, base: tuple[float, float, float], spread: float) -> np.ndarray:
    return np.clip(np.asarray(base, np.float64) + rng.uniform(-spread, spread, 3), 0, 255)


def _car(rng: np.random.Generator, x: float, y: float, s: float) -> list[_Part]:
    """A wide body of any colour, bluish windows on top, dark wheels below; (x, y) is the top-left corner."""
    w, h = 1.6 * s, 0.6 * s
    body = _Part("body", ("rect", (x, y + 0.25 * h, x + w, y + h)), rng.uniform(40, 230, 3))
    parts = [body]
    for left in (0.15, 0.55):
        parts.append(_Part("window", ("rect", (x + left * w, y, x + (left + 0.3) * w, y + 0.45 * h)),
                           _jitter(rng, (150, 200, 235), 25)))
    radius = 0.2 * s
    for centre in (0.22, 0.78):
        cx, cy = x + centre * w, y + h
        parts.append(_Part("wheel", ("ellipse", (cx - radius, cy - radius, cx + radius, cy + radius)),
                           _jitter(rng, (35, 35, 40), 20)))
    return parts


def _person(rng: np.random.Generator, x: float, y: float, s: float) -> list[_Part]:
    """A skin-toned round head, a torso in any colour and two dark legs."""
    w = 0.45 * s
    head = 0.28 * s
    cx = x + w / 2
    parts = [
        _Part("head", ("ellipse", (cx - head / 2, y, cx + head / 2, y + head)), _jitter(rng, (225, 180, 145), 30)),
        _Part("torso", ("rect", (x, y + head, x + w, y + head + 0.55 * s)), rng.uniform(40, 230, 3)),
    ]
    top = y + head + 0.55 * s
    for left in (0.05, 0.55):
        parts.append(_Part("leg", ("rect", (x + left * w, top, x + (left + 0.4) * w, top + 0.6 * s)),
                           _jitter(rng, (50, 55, 90), 30)))
    return parts


def _tree(rng: np.random.Generator, x: float, y: float, s: float) -> list[_Part]:
    """A brown trunk under a round green crown of leaves."""
    w = 0.9 * s
    cx = x + w / 2
    return [
        _Part("trunk", ("rect", (cx - 0.1 * s, y + 0.6 * s, cx + 0.1 * s, y + 1.3 * s)),
              _jitter(rng, (110, 75, 40), 25)),
        _Part("leaves", ("ellipse", (x, y, x + w, y + 0.75 * s)), _jitter(rng, (60, 150, 60), 40)),
    ]


def _house(rng: np.random.Generator, x: float, y: float, s: float) -> list[_Part]:
    """A wall of any light colour under a red-brown triangular roof, with a dark door."""
    w = 1.1 * s
    roof_h = 0.45 * s
    wall_bottom = y + roof_h + 0.7 * s
    return [
        _Part("wall", ("rect", (x, y + roof_h, x + w, wall_bottom)), rng.uniform(120, 240, 3)),
        _Part("roof", ("polygon", (x - 0.08 * s, y + roof_h, x + w / 2, y, x + w + 0.08 * s, y + roof_h)),
              _jitter(rng, (165, 60, 45), 30)),
        _Part("door", ("rect", (x + 0.4 * w, wall_bottom - 0.42 * s, x + 0.62 * w, wall_bottom)),
              _jitter(rng, (80, 50, 30), 25)),
    ]


BUILDERS: dict[str, Callable[[np.random.Generator, float, float, float], list[_Part]]] = {
    "car": _car, "person": _person, "tree": _tree, "house": _house,
}


class SyntheticPartsDataset(SegmentationDataset):
    """Scenes of cars, people, trees and houses, each made of named parts, on textured noisy backgrounds.

    Every record holds each visible object's whole mask (object class, no part class) and each visible part's
    mask (part class, plus the class of the object it belongs to). Later objects occlude earlier ones, and
    colours, sizes, textures and noise vary, so classes must be told by shape, colour and context together.
    Scenes are drawn on demand from (seed, split, index): the same index is always the same scene, and splits
    never share a scene.
    """

    object_names = OBJECT_NAMES
    part_names = PART_NAMES

    def __init__(
        self,
        *,
        root: str = "",
        split: str,
        length: int | None = None,
        image_size: int = 128,
        max_objects: int = 4,
        min_area: int = 12,
        seed: int = 0,
    ) -> None:
        """Args:
        root: ignored (scenes are generated); accepted so configs can treat this like any dataset.
        split: "train", "val" or "test"; each draws from its own random stream.
        length: number of scenes (default: 2000 for train, 200 otherwise).
        image_size: scenes are image_size x image_size pixels.
        max_objects: each scene has 1..max_objects objects.
        min_area: parts and objects with fewer visible pixels are left out.
        seed: changes every scene.
        """
        if split not in SPLIT_STREAMS:
            raise ValueError(f"synthetic split {split!r} is unknown; use one of {', '.join(SPLIT_STREAMS)}")
        if image_size < 32 or max_objects < 1 or (length is not None and length < 1):
            raise ValueError(
                f"synthetic scenes need image_size >= 32, max_objects >= 1 and length >= 1; got {image_size}, "
                f"{max_objects} and {length}"
            )
        self.split = split
        self.length = length if length is not None else (2000 if split == "train" else 200)
        self.image_size = image_size
        self.max_objects = max_objects
        self.min_area = min_area
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> SegmentationRecord:
        if not 0 <= index < self.length:
            raise IndexError(f"scene {index} is outside this {self.length}-scene split")
        rng = np.random.default_rng([self.seed, SPLIT_STREAMS[self.split], index])
        size = self.image_size
        image = _background(rng, size)
        owner = np.full((size, size), -1, np.int64)  # which part instance is visible at each pixel
        parts: list[tuple[int, int]] = []  # (object instance, part class) per part instance
        objects: list[int] = []  # object class per object instance
        for _ in range(int(rng.integers(1, self.max_objects + 1))):
            name = OBJECT_NAMES[int(rng.integers(len(OBJECT_NAMES)))]
            scale = size * rng.uniform(0.22, 0.45)
            x, y = rng.uniform(-0.1 * size, 0.85 * size), rng.uniform(-0.1 * size, 0.7 * size)
            for part in BUILDERS[name](rng, x, y, scale):
                drawn = _draw(part.shape, size)
                _paint(image, drawn, part.colour, rng)
                owner[drawn] = len(parts)
                parts.append((len(objects), PART_NAMES.index(part.name)))
            objects.append(OBJECT_NAMES.index(name))
        image = np.clip(image + rng.normal(0, rng.uniform(4, 14), image.shape), 0, 255).astype(np.uint8)
        return self._record(image, owner, parts, objects, f"{self.split}_{index:06d}")

    def _record(
        self, image: np.ndarray, owner: np.ndarray, parts: list[tuple[int, int]], objects: list[int], image_id: str
    ) -> SegmentationRecord:
        part_masks = owner[None] == np.arange(len(parts))[:, None, None]
        part_object = np.array([obj for obj, _ in parts], np.int64).reshape(-1)
        masks, object_classes, part_classes = [], [], []
        for obj, object_class in enumerate(objects):
            mask = part_masks[part_object == obj].any(0)
            if mask.sum() >= self.min_area:
                masks.append(mask)
                object_classes.append(object_class)
                part_classes.append(None)
        for part_mask, (obj, part_class) in zip(part_masks, parts):
            if part_mask.sum() >= self.min_area:
                masks.append(part_mask)
                object_classes.append(objects[obj])
                part_classes.append(part_class)
        size = image.shape[0]
        stacked = np.stack(masks) if masks else np.zeros((0, size, size), bool)
        return SegmentationRecord(image=image, masks=stacked, object_classes=object_classes,
                                  part_classes=part_classes, image_id=image_id)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random colour gradient with blotchy low-frequency texture and a few unlabelled distractors."""
    corners = rng.uniform(60, 200, (2, 2, 3))
    u = np.linspace(0, 1, size)[None, :, None]
    v = np.linspace(0, 1, size)[:, None, None]
    image = (corners[0, 0] * (1 - u) + corners[0, 1] * u) * (1 - v) + (corners[1, 0] * (1 - u) + corners[1, 1] * u) * v
    coarse = rng.normal(0, 25, (size // 16 + 1, size // 16 + 1, 3))
    image = image + np.stack([_smooth_upsample(channel, size) for channel in coarse.transpose(2, 0, 1)], -1)
    for _ in range(int(rng.integers(0, 4))):
        x, y = rng.uniform(0, size, 2)
        r = rng.uniform(0.03, 0.1) * size
        shape = ("rect", (x - r, y - r, x + r, y + r)) if rng.random() < 0.5 else ("ellipse", (x - r, y - r, x + r, y + r))
        _paint(image, _draw(shape, size), rng.uniform(30, 230, 3), rng)
    return image


def _smooth_upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """A small float grid resized bilinearly to [size, size]."""
    return np.asarray(Image.fromarray(grid.astype(np.float32), mode="F").resize((size, size), Image.Resampling.BILINEAR))


def _draw(shape: Shape, size: int) -> np.ndarray:
    """The [size, size] bool mask of one shape."""
    canvas = Image.new("1", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    kind, coords = shape
    if kind == "rect":
        draw.rectangle(coords, fill=1)
    elif kind == "ellipse":
        draw.ellipse(coords, fill=1)
    else:
        draw.polygon(coords, fill=1)
    return np.asarray(canvas, dtype=bool)


def _paint(image: np.ndarray, mask: np.ndarray, colour: np.ndarray, rng: np.random.Generator) -> None:
    """Fills `mask` with `colour`, shaded along a random direction and overlaid with stripes or speckle."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return
    angle = rng.uniform(0, 2 * np.pi)
    along = (xs * np.cos(angle) + ys * np.sin(angle)) / max(image.shape[0], 1)
    shade = rng.uniform(-25, 25) * (along - along.mean())
    if rng.random() < 0.5:
        texture = rng.uniform(4, 14) * np.sin(2 * np.pi * (xs * np.cos(angle + 1) + ys * np.sin(angle + 1)) / rng.uniform(3, 9))
    else:
        texture = rng.normal(0, rng.uniform(3, 12), len(ys))
    image[ys, xs] = colour + (shade + texture)[:, None]

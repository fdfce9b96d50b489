"""Pictures of multi-granularity predictions: captioned panels per granularity level, automatic-mask overlays."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

if TYPE_CHECKING:
    from semsam.prediction import MaskLabel

Colour = tuple[int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

# Green and red are left out so mask colours never look like the positive/negative prompt dots.
LEVEL_COLOURS: tuple[Colour, ...] = (
    (30, 144, 255),
    (255, 140, 0),
    (218, 68, 200),
    (0, 200, 210),
    (245, 205, 0),
    (150, 90, 235),
)
POSITIVE: Colour = (40, 220, 60)
NEGATIVE: Colour = (235, 40, 40)
BOX: Colour = (40, 220, 60)
DOT_RIM: Colour = (255, 255, 255)
BACKGROUND: Colour = (24, 24, 24)
TEXT: Colour = (240, 240, 240)
GUTTER = 6


def mask_overlay(
    image: np.ndarray, mask: np.ndarray, colour: Colour, *, alpha: float = 0.5, outline: int = 2
) -> np.ndarray:
    """Blends one mask into an image in a solid colour and traces its boundary.

    Args:
        image: HxWx3 uint8 RGB.
        mask: HxW boolean.
        colour: RGB fill and outline colour.
        alpha: opacity of the fill.
        outline: boundary thickness in pixels; 0 draws none.

    Returns:
        A new HxWx3 uint8 image.
    """
    _check_image(image)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image size {image.shape[:2]}")
    out = image.astype(np.float32)
    out[mask] = out[mask] * (1.0 - alpha) + np.asarray(colour, dtype=np.float32) * alpha
    if outline > 0:
        out[_boundary(mask, outline)] = colour
    return out.round().clip(0, 255).astype(np.uint8)


def granularity_panels(
    image: np.ndarray,
    masks: np.ndarray,
    scores: np.ndarray,
    labels: Sequence[MaskLabel] | None,
    *,
    points: Sequence[tuple[float, float]] | None = None,
    point_labels: Sequence[int] | None = None,
    box: Sequence[float] | None = None,
    panel_size: int = 512,
    titles: Sequence[str] | None = None,
) -> Image.Image:
    """Draws every granularity level side by side (two rows when there are more than three).

    Args:
        image: HxWx3 uint8 RGB.
        masks: [K, H, W] boolean, finest first.
        scores: [K] predicted IoU.
        labels: K object/part labels, or None when the model has no trained classification heads.
        points: prompt points (x, y) in image pixels.
        point_labels: 1 (positive) or 0 (negative) per point; all positive when omitted.
        box: prompt box (x0, y0, x1, y1) in image pixels.
        panel_size: length in pixels of each panel's longer side.
        titles: one caption title per mask instead of "level i · IoU · share of image".

    Returns:
        The RGB figure.
    """
    _check_image(image)
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
        raise ValueError(f"masks must be [K, H, W] with H, W = {image.shape[:2]}, got shape {masks.shape}")
    count = masks.shape[0]
    if count == 0:
        raise ValueError("granularity_panels needs at least one mask")
    if len(scores) != count or (labels is not None and len(labels) != count) or (titles and len(titles) != count):
        raise ValueError(f"got {count} masks but {len(scores)} scores, {len(labels or [])} labels and "
                         f"{len(titles or [])} titles; pass one of each per mask (labels and titles may be None)")
    points = list(points or [])
    point_labels = [1] * len(points) if point_labels is None else list(point_labels)
    if len(point_labels) != len(points):
        raise ValueError(f"got {len(points)} points but {len(point_labels)} point labels; pass one label per point")

    scale = panel_size / max(image.shape[:2])
    width, height = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))
    base = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))
    font_size = max(12, panel_size // 30)
    font = ImageFont.load_default(size=font_size)
    columns = count if count <= 3 else math.ceil(count / 2)
    rows = math.ceil(count / columns)
    caption = round(font_size * 1.4) * (1 if labels is None else 2) + round(font_size * 0.8)
    size = (columns * width + (columns + 1) * GUTTER, rows * (height + caption + GUTTER) + GUTTER)
    figure = Image.new("RGB", size, BACKGROUND)
    for level in range(count):
        colour = LEVEL_COLOURS[level % len(LEVEL_COLOURS)]
        small = np.asarray(Image.fromarray(masks[level]).resize((width, height), Image.Resampling.NEAREST))
        panel = Image.fromarray(mask_overlay(base, small, colour, alpha=0.5, outline=max(1, panel_size // 200)))
        _draw_prompts(panel, points, point_labels, box, scale)
        lines = [titles[level] if titles else _level_title(level, count, float(scores[level]),
                                                           float(masks[level].mean()))]
        if labels is not None:
            lines.append(_label_text(labels[level]))
        row, column = divmod(level, columns)
        x, y = GUTTER + column * (width + GUTTER), GUTTER + row * (height + caption + GUTTER)
        figure.paste(panel, (x, y))
        _draw_caption(ImageDraw.Draw(figure), (x, y + height), width, lines, colour, font, font_size)
    return figure


def _level_title(level: int, count: int, score: float, fraction: float) -> str:
    name = "finest" if level == 0 else "coarsest" if level == count - 1 else ""
    title = f"level {level + 1}" + (f" ({name})" if name else "")
    share = "<1%" if 0 < fraction < 0.005 else f"{fraction:.0%}"
    return f"{title} · IoU {score:.2f} · {share} of image"


def _label_text(label: MaskLabel) -> str:
    return f"object: {label.object} {label.object_score:.2f} / part: {label.part} {label.part_score:.2f}"


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        if isinstance(image, np.ndarray):
            described = f"{image.dtype} array of shape {image.shape}"
        else:
            described = type(image).__name__
        raise ValueError(f"image must be an HxWx3 uint8 RGB array, got {described}; use semsam.image.read_image")


def _boundary(mask: np.ndarray, thickness: int) -> np.ndarray:
    """Pixels of the mask within `thickness` of its edge (the image border counts as outside)."""
    inner = mask.copy()
    for _ in range(thickness):
        padded = np.pad(inner, 1, constant_values=False)
        inner = inner & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def _draw_prompts(
    panel: Image.Image,
    points: list[tuple[float, float]],
    point_labels: list[int],
    box: Sequence[float] | None,
    scale: float,
) -> None:
    draw = ImageDraw.Draw(panel)
    line = max(2, round(max(panel.size) / 170))
    if box is not None:
        x0, y0, x1, y1 = (float(v) * scale for v in box)
        draw.rectangle((x0, y0, x1, y1), outline=(0, 0, 0), width=line + 2)
        draw.rectangle((x0, y0, x1, y1), outline=BOX, width=line)
    radius = max(4, round(max(panel.size) / 70))
    for (x, y), positive in zip(points, point_labels):
        x, y = x * scale, y * scale
        fill = POSITIVE if positive else NEGATIVE
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill, outline=DOT_RIM, width=line - 1)


def _draw_caption(
    draw: ImageDraw.ImageDraw,
    origin: tuple[int, int],
    width: int,
    lines: list[str],
    colour: Colour,
    font: Font,
    size: int,
) -> None:
    """Writes the caption under a panel, led by a swatch of the level's colour; long lines end in an ellipsis."""
    x, y = origin
    pad = round(size * 0.4)
    swatch = round(size * 0.9)
    draw.rectangle((x + pad, y + pad + 2, x + pad + swatch, y + pad + 2 + swatch), fill=colour)
    for index, text in enumerate(lines):
        left = x + pad + (swatch + pad if index == 0 else 0)
        fitted = _fit(draw, text, width - (left - x) - pad, font)
        draw.text((left, y + pad + index * round(size * 1.4)), fitted, fill=TEXT, font=font)


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int, font: Font) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def label_map_overlay(image: np.ndarray, label_map: np.ndarray, *, alpha: float = 0.55) -> np.ndarray:
    """Colours each segment of a label map in its own colour over an image and traces segment boundaries.

    Args:
        image: HxWx3 uint8 RGB.
        label_map: HxW integers, 0 = no segment; the same id always gets the same colour.
        alpha: opacity of the fill.

    Returns:
        A new HxWx3 uint8 image.
    """
    label_map = _checked_label_map(image, label_map)
    ids = np.unique(label_map)
    ids = ids[ids != 0]
    colours = np.zeros((int(label_map.max(initial=0)) + 1, 3), np.float32)
    if len(ids):
        # Golden-ratio hue steps keep neighbouring ids far apart in colour.
        hsv = np.stack([(ids * 0.618034 % 1.0) * 255, np.full(len(ids), 200), np.full(len(ids), 235)], -1)
        colours[ids] = np.asarray(Image.fromarray(hsv[None].astype(np.uint8), "HSV").convert("RGB"))[0]
    covered = label_map > 0
    out = image.astype(np.float32)
    out[covered] = out[covered] * (1.0 - alpha) + colours[label_map[covered]] * alpha
    out[_edges(label_map)] = DOT_RIM
    return out.round().clip(0, 255).astype(np.uint8)


def _checked_label_map(image: np.ndarray, label_map: np.ndarray) -> np.ndarray:
    """The label map as an array, once it and the image it goes with are known to fit together."""
    _check_image(image)
    label_map = np.asarray(label_map)
    if label_map.shape != image.shape[:2]:
        raise ValueError(f"label map shape {label_map.shape} does not match image size {image.shape[:2]}")
    return label_map


def _edges(label_map: np.ndarray) -> np.ndarray:
    """Pixels whose left or upper neighbour belongs to another segment."""
    edges = np.zeros(label_map.shape, bool)
    edges[:, 1:] |= label_map[:, 1:] != label_map[:, :-1]
    edges[1:, :] |= label_map[1:, :] != label_map[:-1, :]
    return edges


def name_segments(overlay: np.ndarray, label_map: np.ndarray, names: Mapping[int, str]) -> np.ndarray:
    """Writes segment names on an overlay, each inside its segment, where it stays legible.

    A name goes at its segment's centroid, or at its most interior pixel where the centroid is outside the segment
    or near its edge. The widest segments are named first; a name is left out where its segment is thinner than the text is tall,
    or where it would cover a name already written, so that every name drawn stays legible.

    Args:
        overlay: HxWx3 uint8 RGB, e.g. from `label_map_overlay`.
        label_map: HxW integers, 0 = no segment.
        names: the name of each segment id to write; other segments stay unnamed.

    Returns:
        A new HxWx3 uint8 image.
    """
    label_map = _checked_label_map(overlay, label_map)
    ids = [int(i) for i in np.unique(label_map) if i != 0 and int(i) in names]
    if not ids:
        return overlay.copy()
    # Distance to the nearest segment edge or image border: the farthest pixel of a segment is its most interior.
    distance = ndimage.distance_transform_edt(np.pad(~_edges(label_map), 1))[1:-1, 1:-1]
    radii = ndimage.maximum(distance, label_map, ids)
    interiors = ndimage.maximum_position(distance, label_map, ids)
    centroids = ndimage.center_of_mass(label_map > 0, label_map, ids)
    size = _font_size(overlay.shape[1])
    font = ImageFont.load_default(size=size)
    figure = Image.fromarray(overlay)
    draw = ImageDraw.Draw(figure)
    stroke = max(1, size // 8)
    taken: list[tuple[float, float, float, float]] = []
    for radius, segment, interior, centroid in sorted(zip(radii, ids, interiors, centroids), reverse=True):
        if radius < size * 0.6:
            break
        y, x = (round(v) for v in centroid)
        if label_map[y, x] != segment or distance[y, x] < size * 0.6:
            y, x = interior
        # Moved in from the image's sides, so that a name is never cut.
        half = draw.textlength(names[segment], font=font) / 2 + stroke
        x = min(max(x, half), overlay.shape[1] - half)
        box = draw.textbbox((x, y), names[segment], font=font, anchor="mm", stroke_width=stroke)
        if any(box[0] < right and left < box[2] and box[1] < bottom and top < box[3]
               for left, top, right, bottom in taken):
            continue
        draw.text((x, y), names[segment], font=font, anchor="mm", fill=TEXT, stroke_width=stroke,
                  stroke_fill=BACKGROUND)
        taken.append(box)
    return np.asarray(figure)


def _font_size(width: int) -> int:
    """Text size for writing on an image `width` pixels wide: readable when the image is shown whole."""
    return max(10, min(22, width // 30))


def level_legend(overlay: np.ndarray, *, level: int, levels: Sequence[int], count: int) -> np.ndarray:
    """Adds a legend band under an automatic-mask overlay: which level it shows among those produced.

    Args:
        overlay: HxWx3 uint8 RGB, e.g. from `label_map_overlay`.
        level: the level drawn (1 = finest).
        levels: every level produced for the image, e.g. (1, 3, 6); drawn as a row of boxes, this one filled.
        count: how many masks the overlay shows.

    Returns:
        A new (H + band)xWx3 uint8 image.
    """
    _check_image(overlay)
    levels = sorted(set(levels) | {level})
    width = overlay.shape[1]
    size = _font_size(width)
    font = ImageFont.load_default(size=size)
    band = round(size * 2.2)
    figure = Image.new("RGB", (width, overlay.shape[0] + band), BACKGROUND)
    figure.paste(Image.fromarray(overlay), (0, 0))
    draw = ImageDraw.Draw(figure)
    top = overlay.shape[0] + round(size * 0.5)
    box = round(size * 1.2)
    ladder = len(levels) * (box + 2)
    left = width - ladder - round(size * 0.5)
    for index, value in enumerate(levels):
        x = left + index * (box + 2)
        current = value == level
        draw.rectangle((x, top, x + box, top + box), fill=TEXT if current else None, outline=TEXT)
        text = str(value)
        draw.text((x + (box - draw.textlength(text, font=font)) / 2, top), text, font=font,
                  fill=BACKGROUND if current else TEXT)
    caption = f"level {level} (1 = finest) · {count} mask{'s' * (count != 1)}, one colour each"
    draw.text((round(size * 0.5), top), _fit(draw, caption, left - size, font), font=font, fill=TEXT)
    return np.asarray(figure)

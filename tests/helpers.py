"""Fixture writers shared by several test files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

HEIGHT, WIDTH = 48, 64


def write_bsds(root: Path, split: str, name: str, label_maps: list[np.ndarray]) -> None:
    """Writes one image and a ground-truth .mat laid out like BSDS500's (a 1xA cell array of structs)."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "groundTruth" / split).mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, size=(*label_maps[0].shape, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "images" / split / f"{name}.jpg")
    cell = np.empty((1, len(label_maps)), dtype=object)
    for i, labels in enumerate(label_maps):
        boundaries = np.zeros(labels.shape, dtype=np.uint8)
        cell[0, i] = {"Segmentation": labels.astype(np.uint16), "Boundaries": boundaries}
    scipy.io.savemat(root / "groundTruth" / split / f"{name}.mat", {"groundTruth": cell})


def halves_annotations() -> list[np.ndarray]:
    """Three annotators: left/right halves; left, right-top, right-bottom; halves off by one column plus a speck."""
    coarse = np.where(np.arange(WIDTH) < WIDTH // 2, 1, 2)[None].repeat(HEIGHT, 0)
    fine = coarse.copy()
    fine[HEIGHT // 2 :, WIDTH // 2 :] = 3
    shifted = np.where(np.arange(WIDTH) < WIDTH // 2 - 1, 1, 2)[None].repeat(HEIGHT, 0)
    shifted[:2, -2:] = 3
    return [coarse, fine, shifted]

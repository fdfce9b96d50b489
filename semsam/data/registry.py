"""Datasets by name, so configs can say `kind = "bsds500"`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol

from semsam.data.bsds500 import Bsds500Dataset
from semsam.data.coco import CocoInstancesDataset
from semsam.data.coco_panoptic import CocoPanopticDataset
from semsam.data.coco_parts import CocoPartsDataset
from semsam.data.records import SegmentationDataset
from semsam.data.sa1b import Sa1bDataset
from semsam.data.synthetic import SyntheticPartsDataset


class DatasetSource(Protocol):
    """What `build_dataset` needs to know (e.g. a training config's dataset entry)."""

    kind: str
    root: str | Path
    split: str
    options: dict[str, Any]  # extra keyword arguments of the dataset's constructor


DATASETS: dict[str, Callable[..., SegmentationDataset]] = {
    "bsds500": Bsds500Dataset,
    "sa1b": Sa1bDataset,
    "coco": CocoInstancesDataset,
    "coco_panoptic": CocoPanopticDataset,
    "coco_parts": CocoPartsDataset,
    "synthetic_parts": SyntheticPartsDataset,
}


def build_dataset(source: DatasetSource) -> SegmentationDataset:
    """Opens the dataset a source names.

    Raises:
        ValueError: an unknown kind, or the dataset's own errors (missing root or split).
    """
    if source.kind not in DATASETS:
        raise ValueError(f"unknown dataset kind {source.kind!r}; known kinds: {', '.join(sorted(DATASETS))}")
    return DATASETS[source.kind](root=source.root, split=source.split, **source.options)

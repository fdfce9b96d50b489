"""Datasets by name, so configs can say `kind = "bsds500"`."""

from __future__ import annotations

import os
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


DATA_ROOT_ENV = "SEMSAM_DATA_ROOT"

DATASETS: dict[str, Callable[..., SegmentationDataset]] = {
    "bsds500": Bsds500Dataset,
    "sa1b": Sa1bDataset,
    "coco": CocoInstancesDataset,
    "coco_panoptic": CocoPanopticDataset,
    "coco_parts": CocoPartsDataset,
    "synthetic_parts": SyntheticPartsDataset,
}

# Where to get the data each kind reads and what to put at its root, for the error a missing root gives.
DOWNLOADS: dict[str, str] = {
    "bsds500": "Get BSDS500 from https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/resources.html "
               "(BSR_bsds500.tgz) and put its BSR/BSDS500/data folder, holding images/ and groundTruth/, there",
    "sa1b": "Get SA-1B from https://ai.meta.com/datasets/segment-anything/ and unpack its tar files there "
            "(sa_*.jpg beside sa_*.json, optionally in split sub-folders), or make such a folder with "
            "`semsam everything FOLDER --out FOLDER`",
    "coco": "Get COCO 2017 from https://cocodataset.org/#download and put there the image folders (train2017/, "
            "val2017/) and annotations/instances_{train,val}2017.json; other data sets in COCO instances JSON work "
            "the same way",
    "coco_panoptic": "Get COCO 2017 images and the panoptic annotations from https://cocodataset.org/#download and "
                     "put there the image folders and annotations/panoptic_{split}.json with its PNG folder "
                     "annotations/panoptic_{split}/",
    "coco_parts": "Put there a part data set in COCO JSON with \"object:part\" category names, as "
                  "annotations/{split}.json with its images (PACO, https://github.com/facebookresearch/paco, "
                  "names its categories this way)",
}


def resolve_data_root(explicit: str | Path | None = None) -> Path:
    """The folder that relative dataset roots lie under: `explicit` (--data-root), else $SEMSAM_DATA_ROOT, else ./data.

    Args:
        explicit: a folder given on the command line or in code; None to fall back to the environment.

    Returns:
        The data root as given (relative paths stay relative to the current directory); it need not exist yet.
    """
    if explicit is not None and str(explicit).strip():
        return Path(explicit).expanduser()
    from_env = os.environ.get(DATA_ROOT_ENV, "").strip()
    return Path(from_env).expanduser() if from_env else Path("data")


def build_dataset(source: DatasetSource) -> SegmentationDataset:
    """Opens the dataset a source names.

    Raises:
        ValueError: an unknown kind, a missing root (naming where to download the data), or the dataset's own
            errors (missing split or annotation file).
    """
    if source.kind not in DATASETS:
        raise ValueError(f"unknown dataset kind {source.kind!r}; known kinds: {', '.join(sorted(DATASETS))}")
    if source.kind in DOWNLOADS and not Path(source.root).is_dir():
        raise ValueError(
            f"{source.kind} data not found: {Path(source.root).absolute()} is not a folder. "
            f"{DOWNLOADS[source.kind]}. A config's relative root lies under the data root: --data-root DIR, else "
            f"${DATA_ROOT_ENV}, else ./data")
    return DATASETS[source.kind](root=source.root, split=source.split, **source.options)

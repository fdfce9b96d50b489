"""Training data: one record type, dataset readers and prompt simulation."""

from semsam.data.bsds500 import Bsds500Dataset
from semsam.data.records import SegmentationDataset, SegmentationRecord, mask_boxes, merge_duplicates
from semsam.data.registry import DATASETS, build_dataset

__all__ = [
    "DATASETS",
    "Bsds500Dataset",
    "SegmentationDataset",
    "SegmentationRecord",
    "build_dataset",
    "mask_boxes",
    "merge_duplicates",
]

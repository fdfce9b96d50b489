"""Training data: one record type, dataset readers and prompt simulation."""

from semsam.data.bsds500 import Bsds500Dataset
from semsam.data.coco import CocoInstancesDataset
from semsam.data.coco_panoptic import CocoPanopticDataset
from semsam.data.coco_parts import CocoPartsDataset
from semsam.data.records import SegmentationDataset, SegmentationRecord, mask_boxes, merge_duplicates
from semsam.data.registry import DATA_ROOT_ENV, DATASETS, build_dataset, resolve_data_root
from semsam.data.sa1b import Sa1bDataset

__all__ = [
    "DATASETS",
    "DATA_ROOT_ENV",
    "Bsds500Dataset",
    "CocoInstancesDataset",
    "CocoPanopticDataset",
    "CocoPartsDataset",
    "Sa1bDataset",
    "SegmentationDataset",
    "SegmentationRecord",
    "build_dataset",
    "mask_boxes",
    "merge_duplicates",
    "resolve_data_root",
]

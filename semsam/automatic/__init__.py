"""Automatic mask generation ("segment everything") at chosen granularity levels, with a whole/part tree."""

from semsam.automatic.generator import MaskGenerator
from semsam.automatic.hierarchy import (
    CONTAINMENT_THRESHOLD, GeneratedMask, MaskName, level_label_maps, link_tree, mask_names,
)

__all__ = ["CONTAINMENT_THRESHOLD", "GeneratedMask", "MaskGenerator", "MaskName", "level_label_maps", "link_tree",
           "mask_names"]

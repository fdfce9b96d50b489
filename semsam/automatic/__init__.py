"""Automatic mask generation ("segment everything") at chosen granularity levels, with a whole/part tree."""

from semsam.automatic.generator import MaskGenerator
from semsam.automatic.hierarchy import CONTAINMENT_THRESHOLD, GeneratedMask, level_label_maps, link_tree

__all__ = ["CONTAINMENT_THRESHOLD", "GeneratedMask", "MaskGenerator", "level_label_maps", "link_tree"]

"""Automatic mask generation ("segment everything") at chosen granularity levels, with a whole/part tree, and
text prompts over its masks."""

from semsam.automatic.generator import MaskGenerator
from semsam.automatic.hierarchy import (
    CONTAINMENT_THRESHOLD, GeneratedMask, MaskName, level_label_maps, link_tree, mask_names,
)
from semsam.automatic.text_prompt import TextMatch, TextPrompter, TextResult, parse_text_prompt

__all__ = [
    "CONTAINMENT_THRESHOLD", "GeneratedMask", "MaskGenerator", "MaskName", "TextMatch", "TextPrompter", "TextResult",
    "level_label_maps", "link_tree", "mask_names", "parse_text_prompt",
]

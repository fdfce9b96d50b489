"""The joint object/part vocabulary of several training datasets, and records remapped onto it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from semsam.data.records import SegmentationDataset, SegmentationRecord
from semsam.text import TextEncoder


@dataclass(frozen=True)
class Vocabulary:
    """Object and part names over all training datasets; a name shared by two datasets is one class."""

    objects: tuple[str, ...]
    parts: tuple[str, ...]
    object_maps: tuple[tuple[int, ...] | None, ...]  # per dataset: its object id -> joint id
    part_maps: tuple[tuple[int, ...] | None, ...]  # per dataset: its part id -> joint id

    @classmethod
    def from_datasets(cls, datasets: Sequence[SegmentationDataset]) -> "Vocabulary":
        """Joins the datasets' `object_names` and `part_names` in order of first appearance."""
        objects, object_maps = _join([d.object_names for d in datasets])
        parts, part_maps = _join([d.part_names for d in datasets])
        return cls(objects=objects, parts=parts, object_maps=object_maps, part_maps=part_maps)

    @property
    def labelled(self) -> bool:
        """Whether any dataset names its classes, i.e. whether the classification heads get trained."""
        return bool(self.objects or self.parts)

    def remap(self, record: SegmentationRecord, dataset_index: int) -> SegmentationRecord:
        """The record with its class ids translated into joint ids.

        Raises:
            ValueError: the record carries class ids but its dataset names no classes, or an id has no name.
        """
        object_classes = _translate(record.object_classes, self.object_maps[dataset_index], record, "object")
        part_classes = _translate(record.part_classes, self.part_maps[dataset_index], record, "part")
        return replace(record, object_classes=object_classes, part_classes=part_classes)

    def embed(self, encoder: TextEncoder, device: torch.device) -> tuple[Tensor | None, Tensor | None]:
        """Text embeddings [V, text_dim] of the object and part names (None for an empty list)."""
        return (
            encoder.encode(self.objects).to(device) if self.objects else None,
            encoder.encode(self.parts).to(device) if self.parts else None,
        )


def _join(name_lists: list[tuple[str, ...] | None]) -> tuple[tuple[str, ...], tuple[tuple[int, ...] | None, ...]]:
    joint: dict[str, int] = {}
    maps = []
    for names in name_lists:
        if names is None:
            maps.append(None)
            continue
        maps.append(tuple(joint.setdefault(name, len(joint)) for name in names))
    return tuple(joint), tuple(maps)


def _translate(
    classes: list[int | None] | None, mapping: tuple[int, ...] | None, record: SegmentationRecord, kind: str
) -> list[int | None] | None:
    if classes is None or all(c is None for c in classes):
        return classes
    if mapping is None:
        raise ValueError(
            f"record {record.image_id!r} has {kind} class ids but its dataset has no {kind}_names to name them; "
            f"set the dataset's {kind}_names"
        )
    try:
        return [None if c is None else mapping[c] for c in classes]
    except IndexError:
        raise ValueError(
            f"record {record.image_id!r} has a {kind} class id outside its dataset's {len(mapping)} {kind}_names"
        ) from None

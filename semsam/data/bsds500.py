"""BSDS500: natural images segmented by several annotators at different granularities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from semsam.data.records import SegmentationDataset, SegmentationRecord, merge_duplicates


class Bsds500Dataset(SegmentationDataset):
    """Reads `root/images/{split}/*.jpg` with `root/groundTruth/{split}/*.mat`.

    Every segment of every annotator becomes a mask: annotators split the same image coarsely or finely, which is
    exactly the multi-granularity supervision the model needs. Near-duplicate segments (IoU above
    `duplicate_iou`) are merged and segments smaller than `min_area` pixels (annotation slivers) dropped.
    """

    def __init__(self, *, root: str | Path, split: str, min_area: int = 16, duplicate_iou: float = 0.95) -> None:
        """Indexes the split.

        Args:
            root: the BSDS500 folder holding `images/` and `groundTruth/`.
            split: a sub-folder of both, e.g. "train", "val" or "test".
            min_area: segments with fewer pixels are dropped.
            duplicate_iou: segments overlapping a kept one above this IoU are merged into it.
        """
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"BSDS500 root {root} does not exist; pass the folder holding images/ and groundTruth/")
        image_dir, truth_dir = root / "images" / split, root / "groundTruth" / split
        for folder in (image_dir, truth_dir):
            if not folder.is_dir():
                available = sorted(p.name for p in (root / "groundTruth").glob("*") if p.is_dir())
                raise ValueError(f"BSDS500 split {split!r} not found: {folder} is missing (splits here: {available})")
        truths = {p.stem: p for p in truth_dir.glob("*.mat")}
        self.items = [(p, truths[p.stem]) for p in sorted(image_dir.glob("*.jpg")) if p.stem in truths]
        if not self.items:
            raise ValueError(f"no image of {image_dir} has a ground-truth .mat in {truth_dir}")
        self.min_area = min_area
        self.duplicate_iou = duplicate_iou

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> SegmentationRecord:
        image_path, truth_path = self.items[index]
        image = np.asarray(Image.open(image_path).convert("RGB"))
        masks = self._segments(read_annotations(truth_path), image.shape[:2], truth_path)
        record = SegmentationRecord(
            image=image, masks=masks, object_classes=None, part_classes=None, image_id=image_path.stem
        )
        return merge_duplicates(record, iou_threshold=self.duplicate_iou)

    def _segments(self, label_maps: list[np.ndarray], size: tuple[int, ...], path: Path) -> np.ndarray:
        masks = []
        for labels in label_maps:
            if labels.shape != size:
                raise ValueError(f"{path}: a segmentation is {labels.shape} but its image is {size}")
            counts = np.bincount(labels.ravel())
            counts[0] = 0  # labels are 1-based; 0 marks unlabelled pixels
            ids = np.flatnonzero(counts >= max(self.min_area, 1))
            masks.append(labels[None] == ids[:, None, None])
        if not masks:
            return np.zeros((0, *size), dtype=bool)
        return np.concatenate(masks)


def read_annotations(path: Path) -> list[np.ndarray]:
    """The label map (1-based segment ids) of each annotator in a BSDS500 ground-truth file.

    Raises:
        ValueError: the file is unreadable or not in the BSDS500 layout.
    """
    label_maps = []
    for annotator in np.asarray(read_mat_variable(path, "groundTruth", "BSDS500 ground-truth")).ravel():
        try:
            labels = np.asarray(annotator["Segmentation"]).ravel()[0]
        except (IndexError, KeyError, ValueError, TypeError) as error:
            raise ValueError(f"{path}: an annotator entry has no 'Segmentation' label map") from error
        if labels.ndim != 2:
            raise ValueError(f"{path}: a 'Segmentation' label map has shape {labels.shape}, expected [H, W]")
        label_maps.append(np.ascontiguousarray(labels, dtype=np.int64))
    return label_maps


def read_mat_variable(path: Path, name: str, kind: str) -> np.ndarray:
    """One variable of a MATLAB file, e.g. BSDS500's `groundTruth` or `ucm2`.

    Raises:
        ValueError: the file is unreadable or lacks the variable; `kind` names what the file should be.
    """
    # Imported here: scipy.io takes 0.3 s to import, and every `import semsam` reaches this module.
    import scipy.io

    try:
        content = scipy.io.loadmat(str(path))
    except Exception as error:  # scipy raises several unrelated types for corrupt files
        raise ValueError(f"cannot read {kind} file {path}: {error}") from error
    if name not in content:
        raise ValueError(f"{path} has no '{name}' variable; is it a {kind} file?")
    return content[name]

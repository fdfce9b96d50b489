"""Interactive-segmentation benchmarks: images with object masks, some with pixels left out of the score.

GrabCut, Berkeley and DAVIS ship as two folders, images and one object mask per image with the same file stem;
`FolderBenchmark` reads them as the RITM code does. `RecordBenchmark` reads any training dataset
(`semsam.data.build_dataset`) with each of its instance masks as one object.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semsam.data.records import SegmentationDataset
from semsam.image import read_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


@dataclass
class BenchmarkImage:
    """One image and the objects to segment in it.

    Args:
        image: [H, W, 3] uint8 RGB.
        masks: [M, H, W] bool, one object each.
        ignore: [M, H, W] bool, pixels left out of each object's IoU (e.g. GrabCut's uncertain boundary); None
            when every pixel counts.
        image_id: a name for the image, used in reports.
    """

    image: np.ndarray
    masks: np.ndarray
    ignore: np.ndarray | None
    image_id: str


@dataclass(frozen=True)
class FolderLayout:
    """Where a benchmark keeps its files and how its masks are coded.

    Args:
        image_dir: folder of images under the benchmark's root.
        mask_dir: folder of masks under the root, one per image with the same stem.
        object_above: mask values above this are the object (the brightest channel of colour masks counts).
        ignore_value: mask value of pixels left out of the IoU; None if there are none.
    """

    image_dir: str
    mask_dir: str
    object_above: int
    ignore_value: int | None = None


FOLDER_LAYOUTS: dict[str, FolderLayout] = {
    # GrabCut: 128 marks the uncertain band along the object's boundary. Berkeley is read with GrabCut's rule.
    "grabcut": FolderLayout(image_dir="data_GT", mask_dir="boundary_GT", object_above=128, ignore_value=128),
    "berkeley": FolderLayout(image_dir="images", mask_dir="masks", object_above=128, ignore_value=128),
    "davis": FolderLayout(image_dir="img", mask_dir="gt", object_above=0),
}


class FolderBenchmark:
    """Reads `root/{mask_dir}/*` with the image of the same stem in `root/{image_dir}` (or `image_dir`).

    Every mask needs its image; images without a mask are skipped, so `image_dir` may point at a larger
    collection (Berkeley's masks are for BSDS images kept elsewhere).
    """

    def __init__(self, *, root: str | Path, layout: FolderLayout, image_dir: str | Path | None = None) -> None:
        """Pairs masks with images.

        Args:
            root: the benchmark's folder.
            layout: its folder names and mask coding, e.g. `FOLDER_LAYOUTS["grabcut"]`.
            image_dir: the image folder, if not `root/{layout.image_dir}`.

        Raises:
            ValueError: a folder is missing, it holds no mask, or a mask has no image.
        """
        root = Path(root)
        images = Path(image_dir) if image_dir is not None else root / layout.image_dir
        masks = root / layout.mask_dir
        for folder, what in ((masks, "mask"), (images, "image")):
            if not folder.is_dir():
                raise ValueError(f"{what} folder {folder} does not exist; pass as root the benchmark folder that "
                                 f"holds {layout.mask_dir}/ and {layout.image_dir}/ (or the image folder as images)")
        by_stem = {path.stem: path for path in _image_files(images)}
        mask_paths = _image_files(masks)
        if not mask_paths:
            raise ValueError(f"no mask in {masks} (looked for {', '.join(IMAGE_SUFFIXES)} files)")
        missing = [path.name for path in mask_paths if path.stem not in by_stem]
        if missing:
            raise ValueError(f"{len(missing)} mask(s) of {masks} have no image of the same stem in {images}, e.g. "
                             f"{missing[0]}; point the image folder at the benchmark's images")
        self.items = [(by_stem[path.stem], path) for path in mask_paths]
        self.layout = layout

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> BenchmarkImage:
        image_path, mask_path = self.items[index]
        image = read_image(image_path)
        values = read_image(mask_path).max(2)
        if values.shape != image.shape[:2]:
            raise ValueError(f"mask {mask_path} is {values.shape[0]}x{values.shape[1]} but its image {image_path} "
                             f"is {image.shape[0]}x{image.shape[1]}")
        mask = values > self.layout.object_above
        ignore = None if self.layout.ignore_value is None else values == self.layout.ignore_value
        if not mask.any():
            raise ValueError(f"mask {mask_path} has no object pixel (values above {self.layout.object_above})")
        return BenchmarkImage(image=image, masks=mask[None], ignore=None if ignore is None else ignore[None],
                              image_id=mask_path.stem)


class RecordBenchmark:
    """A training dataset as a benchmark: every mask of a record is one object; every pixel counts."""

    def __init__(self, dataset: SegmentationDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> BenchmarkImage:
        record = self.dataset[index]
        return BenchmarkImage(image=record.image, masks=record.masks, ignore=None, image_id=record.image_id)


def _image_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)

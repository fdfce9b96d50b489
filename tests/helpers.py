"""Fixture writers shared by several test files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from semsam.config import (
    MODEL_CONFIGS, SMALL_DECODER, SMALL_PIXEL_DECODER, TEXT_DIM_MINILM, DecoderConfig, PixelDecoderConfig,
    RecognizerConfig, SemanticSamConfig, SwinConfig,
)
from semsam.io import mask_to_rle

HEIGHT, WIDTH = 48, 64


def write_bsds(root: Path, split: str, name: str, label_maps: list[np.ndarray]) -> None:
    """Writes one image and a ground-truth .mat laid out like BSDS500's (a 1xA cell array of structs)."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "groundTruth" / split).mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, size=(*label_maps[0].shape, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "images" / split / f"{name}.jpg")
    cell = np.empty((1, len(label_maps)), dtype=object)
    for i, labels in enumerate(label_maps):
        boundaries = np.zeros(labels.shape, dtype=np.uint8)
        cell[0, i] = {"Segmentation": labels.astype(np.uint16), "Boundaries": boundaries}
    scipy.io.savemat(root / "groundTruth" / split / f"{name}.mat", {"groundTruth": cell})


def halves_annotations() -> list[np.ndarray]:
    """Three annotators: left/right halves; left, right-top, right-bottom; halves off by one column plus a speck."""
    coarse = np.where(np.arange(WIDTH) < WIDTH // 2, 1, 2)[None].repeat(HEIGHT, 0)
    fine = coarse.copy()
    fine[HEIGHT // 2 :, WIDTH // 2 :] = 3
    shifted = np.where(np.arange(WIDTH) < WIDTH // 2 - 1, 1, 2)[None].repeat(HEIGHT, 0)
    shifted[:2, -2:] = 3
    return [coarse, fine, shifted]


def rect(top: int, left: int, bottom: int, right: int, size: tuple[int, int] = (HEIGHT, WIDTH)) -> np.ndarray:
    """A bool mask of `size` with the rectangle [top:bottom, left:right] set."""
    mask = np.zeros(size, dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def write_image(path: Path, size: tuple[int, int] = (HEIGHT, WIDTH)) -> None:
    """Writes a random RGB image (format from the suffix), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(len(path.name)).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def write_json(path: Path, content: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


def coco_file(images: list[str], annotations: list[dict], categories: list[dict]) -> dict:
    """A COCO-format dict: `images` are file names (ids 1, 2, ...; HEIGHT x WIDTH); annotations get ids 1, 2, ..."""
    entries = [{"id": i + 1, "file_name": name, "height": HEIGHT, "width": WIDTH} for i, name in enumerate(images)]
    numbered = [{"id": i + 1, **annotation} for i, annotation in enumerate(annotations)]
    return {"images": entries, "annotations": numbered, "categories": categories}


def write_coco_instances(root: Path, split: str = "train2017") -> None:
    """COCO instances, 3 images: a.jpg with a polygon person, an RLE dog and an uncompressed-RLE crowd of people
    plus a 2-pixel speck; b.jpg with a dog; c.jpg unannotated. Category ids 1 (person) and 18 (dog)."""
    crowd = np.asfortranarray(rect(30, 40, 46, 62).astype(np.uint8))
    crowd_counts = _uncompressed_counts(crowd)
    annotations = [
        {"image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [[4, 2, 20, 2, 20, 30, 4, 30]]},
        {"image_id": 1, "category_id": 18, "iscrowd": 0, "segmentation": mask_to_rle(rect(5, 30, 25, 60))},
        {"image_id": 1, "category_id": 1, "iscrowd": 1,
         "segmentation": {"size": [HEIGHT, WIDTH], "counts": crowd_counts}},
        {"image_id": 1, "category_id": 18, "iscrowd": 0, "segmentation": mask_to_rle(rect(0, 0, 1, 2))},
        {"image_id": 2, "category_id": 18, "iscrowd": 0, "segmentation": [[10, 10, 50, 10, 50, 40, 10, 40]]},
    ]
    categories = [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}]
    write_json(root / "annotations" / f"instances_{split}.json",
               coco_file(["a.jpg", "b.jpg", "c.jpg"], annotations, categories))
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        write_image(root / split / name)


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE counts (column-major run lengths, starting with a run of zeros)."""
    flat = mask.ravel(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    return counts if flat[0] == 0 else [0, *counts]


PANOPTIC_IDS = (1 + 256 * 2, 7 + 256**2 * 3, 40)  # segment ids that use the G, the B and only the R channel


def write_coco_panoptic(root: Path, split: str = "val2017") -> None:
    """COCO panoptic, one image: a person (thing, left third), a wall ("wall-other-merged" stuff, right two
    thirds, top half) and a 3-pixel speck; the rest is unlabelled (id 0)."""
    ids = np.zeros((HEIGHT, WIDTH), dtype=np.int64)
    ids[:, : WIDTH // 3] = PANOPTIC_IDS[0]
    ids[: HEIGHT // 2, WIDTH // 3 :] = PANOPTIC_IDS[1]
    ids[-1, -3:] = PANOPTIC_IDS[2]
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 256**2], axis=-1).astype(np.uint8)
    (root / "annotations" / f"panoptic_{split}").mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(root / "annotations" / f"panoptic_{split}" / "a.png")
    segments = [{"id": PANOPTIC_IDS[0], "category_id": 1, "iscrowd": 0},
                {"id": PANOPTIC_IDS[1], "category_id": 199, "iscrowd": 0},
                {"id": PANOPTIC_IDS[2], "category_id": 1, "iscrowd": 0}]
    categories = [{"id": 1, "name": "person", "isthing": 1}, {"id": 199, "name": "wall-other-merged", "isthing": 0}]
    content = coco_file(["a.jpg"], [{"image_id": 1, "file_name": "a.png", "segments_info": segments}], categories)
    write_json(root / "annotations" / f"panoptic_{split}.json", content)
    write_image(root / split / "a.jpg")


PART_SCENE = {  # name -> (category id, mask) of the part-dataset fixture's one image
    "dog A": (1, rect(2, 2, 30, 20)),
    "dog B": (1, rect(2, 30, 30, 50)),
    "dog A:head": (2, rect(2, 2, 10, 20)),
    "dog B:torso": (3, rect(10, 30, 30, 50)),
    "cat:head": (4, rect(34, 2, 40, 20)),
    "cat:tail": (5, rect(40, 2, 46, 40)),
}


def write_coco_parts(root: Path, split: str = "train") -> None:
    """A part dataset in COCO format, one image (images/{split}/a.png): two plain "dog" objects, "dog:head" linked to
    dog A by obj_ann_id, "dog:torso" inside dog B without a link, and "cat:head" and "cat:tail" of a cat that has no
    object annotation."""
    categories = [{"id": 1, "name": "dog"}, {"id": 2, "name": "dog:head"}, {"id": 3, "name": "dog:torso"},
                  {"id": 4, "name": "cat:head"}, {"id": 5, "name": "cat:tail"}]
    annotations = []
    for name, (category, mask) in PART_SCENE.items():
        annotation = {"image_id": 1, "category_id": category, "segmentation": mask_to_rle(mask)}
        if name == "dog A:head":
            annotation["obj_ann_id"] = 1  # annotation ids follow PART_SCENE's order: dog A is 1
        annotations.append(annotation)
    write_json(root / "annotations" / f"{split}.json", coco_file(["a.png"], annotations, categories))
    write_image(root / "images" / split / "a.png")


def write_sa1b(folder: Path, stem: str, masks: list[np.ndarray], suffix: str = ".jpg") -> None:
    """An image and its same-stem SA-1B JSON (file_name relative to the JSON, RLE masks with SA-1B's extra fields)."""
    write_image(folder / f"{stem}{suffix}")
    annotations = [
        {"id": i, "segmentation": mask_to_rle(mask), "area": int(mask.sum()), "bbox": [0, 0, 1, 1],
         "predicted_iou": 0.9, "stability_score": 0.95, "point_coords": [[0.5, 0.5]], "crop_box": [0, 0, WIDTH, HEIGHT]}
        for i, mask in enumerate(masks)
    ]
    image = {"image_id": 1, "file_name": f"{stem}{suffix}", "height": HEIGHT, "width": WIDTH}
    write_json(folder / f"{stem}.json", {"image": image, "annotations": annotations})


# The architecture of the previous default, semsam_tiny: a small Swin with the small models' decoders.
SMALL_SWIN = SemanticSamConfig(backbone=SwinConfig(embed_dim=48, depths=(2, 2, 4, 1), num_heads=(2, 4, 8, 16)),
                               pixel_decoder=SMALL_PIXEL_DECODER, decoder=SMALL_DECODER, image_size=128)


BENCHMARK_OBJECT = rect(12, 16, 36, 44)  # the one object of every benchmark fixture image


def scene_image(mask: np.ndarray, seed: int = 0) -> np.ndarray:
    """A dark noisy image with `mask` painted in a bright colour, easy for colour models such as GrabCut."""
    pixels = np.random.default_rng(seed).integers(0, 60, size=(*mask.shape, 3), dtype=np.uint8)
    pixels[mask] = (230, 200, 40)
    return pixels


def write_benchmark(root: Path, kind: str) -> Path:
    """Two images in a folder layout, each with `BENCHMARK_OBJECT` as its object mask; returns the image folder.

    grabcut: data_GT/{a.jpg, b.bmp}, boundary_GT/{a, b}.bmp with 255 inside and a 128 band along the boundary.
    berkeley: masks/{a, b}.png (0/255); the images lie in a separate folder, `root/../bsds`, with an extra c.jpg.
    davis: img/{a, b}.jpg, gt/{a, b}.png palette masks (index 1 is the object).
    """
    values = np.where(BENCHMARK_OBJECT, 255, 0).astype(np.uint8)
    if kind == "grabcut":
        band = BENCHMARK_OBJECT ^ rect(14, 18, 34, 42)
        values[band] = 128
        folders, suffixes = ("data_GT", "boundary_GT"), ((".jpg", ".bmp"), (".bmp", ".bmp"))
    elif kind == "berkeley":
        folders, suffixes = ("../bsds", "masks"), ((".jpg", ".png"), (".jpg", ".png"))
    else:
        folders, suffixes = ("img", "gt"), ((".jpg", ".png"), (".jpg", ".png"))
    image_dir, mask_dir = root / folders[0], root / folders[1]
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    for seed, (stem, (image_suffix, mask_suffix)) in enumerate(zip("ab", suffixes)):
        Image.fromarray(scene_image(BENCHMARK_OBJECT, seed)).save(image_dir / f"{stem}{image_suffix}")
        mask = Image.fromarray(values)
        if kind == "davis":
            mask = Image.fromarray((values > 0).astype(np.uint8), mode="P")
            mask.putpalette([0, 0, 0, 128, 0, 0])
        mask.save(mask_dir / f"{stem}{mask_suffix}")
    if kind == "berkeley":
        Image.fromarray(scene_image(BENCHMARK_OBJECT)).save(image_dir / "c.jpg")
    return image_dir


def synthetic_config(tmp_path: Path, *, steps: int, image_size: int = 64, length: int = 50, **extra: object) -> Path:
    """A config training semsam_mobilenet on `length` synthetic scenes; `extra` keys override the defaults."""
    settings = {
        "model": "semsam_mobilenet", "output_dir": str(tmp_path / "run"), "steps": steps, "batch_size": 2,
        "prompts_per_image": 8, "image_size": image_size, "num_points": 128, "warmup_steps": 2,
        "checkpoint_every": 100, "log_every": 1, "scale_range": [0.9, 1.1], **extra,
    }
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()] + [
        "[[datasets]]", 'kind = "synthetic_parts"', 'root = ""',
        f"options = {{ length = {length}, image_size = {image_size} }}",
    ]
    path = tmp_path / "train.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


MICRO = replace(
    MODEL_CONFIGS["semsam_mobilenet"],
    backbone=SwinConfig(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), window_size=4),
    pixel_decoder=PixelDecoderConfig(conv_dim=64, mask_dim=64, num_layers=1, num_heads=4, num_points=4, ffn_dim=128,
                                     num_groups=32),
    decoder=DecoderConfig(hidden_dim=64, num_layers=2, num_heads=4, num_points=4, ffn_dim=128, class_dim=64,
                          text_dim=TEXT_DIM_MINILM),
    recognizer=RecognizerConfig(input_size=64),
)


def check_panoptic(folder: Path, masks: list[dict]) -> dict:
    """Checks `folder`'s panoptic.json and PNGs as panopticapi's pq_compute does, and against the masks they came
    from (SA-1B annotations: id, level, segmentation): each PNG's ids are exactly its segments_info ids, every
    pixel holds one segment, areas and boxes are those of the PNG's pixels (by pycocotools), every category_id is
    a category, a segment lies inside its mask, and a level's segments cover all its masks."""
    from pycocotools import mask as mask_utils

    from semsam.data.coco_panoptic import read_segment_ids
    from semsam.io import rle_to_mask

    record = json.loads((folder / "panoptic.json").read_text())
    categories = {category["id"]: category for category in record["categories"]}
    assert len(categories) == len(record["categories"]), "category ids are unique"
    assert [image["id"] for image in record["images"]] == [a["image_id"] for a in record["annotations"]]
    levels = sorted({mask["level"] for mask in masks})
    assert [a["level"] for a in record["annotations"]] == levels
    by_id = {mask["id"]: mask for mask in masks}
    for image, annotation in zip(record["images"], record["annotations"]):
        ids = read_segment_ids(folder / annotation["file_name"])
        assert ids.shape == (image["height"], image["width"])
        segments = annotation["segments_info"]
        assert sorted(int(i) for i in np.unique(ids) if i != 0) == sorted(s["id"] for s in segments)
        for segment in segments:
            pixels = ids == segment["id"]
            rle = mask_utils.encode(np.asfortranarray(pixels.astype(np.uint8)))
            assert segment["area"] == int(mask_utils.area(rle)) > 0
            assert segment["bbox"] == mask_utils.toBbox(rle).tolist()
            assert segment["category_id"] in categories and segment["iscrowd"] == 0
            mask = by_id[segment["id"] - 1]
            assert mask["level"] == annotation["level"]
            assert not (pixels & ~rle_to_mask(mask["segmentation"])).any(), "a segment lies inside its mask"
        union = np.zeros(ids.shape, bool)
        for mask in masks:
            if mask["level"] == annotation["level"]:
                union |= rle_to_mask(mask["segmentation"])
        assert np.array_equal(ids > 0, union)
    return record
